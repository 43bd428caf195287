"""Download: OUT/refs -> OUT/fetched (img2dataset layout) + a ledger with one status per ref.

Graph: refs -> robots.txt, fetched once per origin (distinct origins -> FetchRobots, cached per worker) and
joined back by origin (CoGroupByKey): disallowed refs are rejected and never requested -> the allowed
refs get a rank inside their origin, and shard = (rank + origin hash) mod n, so one host's URLs spread
over every shard instead of hammering from one -> per shard, img2dataset fetches in-process through
curate's opener (curate.downloader) and the shard is committed -> ledger rows (every ref, ok or its error
class) -> OUT/ledger/download-*.parquet, OUT/rejects/download-*.parquet, OUT/fetched/_MANIFEST.json.
Inline images (bytes from the crawl) are written as shards of their own by img2dataset's writer and
never fetched. `retry_failed` fetches again only the refs whose last status is retryable, into new shards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import fsspec
import pyarrow.parquet as pq
from apache_beam import pvalue

from curate import reasons as R
from curate.config import Config, DownloadConfig
from curate.downloader import (
    committed,
    download_shard,
    interleaved_shard,
    origin_hash,
    policy_of,
    read_committed_ledger,
    shard_count,
    write_inline_shard,
)
from curate.errors import InputError
from curate.fetch import RETRYABLE, ROBOTS
from curate.io import MANIFEST, join, parquet_files, read_json, remove, write_json
from curate.pipelines.common import (
    REJECTED,
    CollectShards,
    DriverList,
    Progress,
    TallyReasons,
    WriteParquetShards,
    WriteRejectsAndFailures,
    pipeline_options,
)
from curate.pipelines.stage import Stage, WriteManifest
from curate.records import ImageRef, LedgerRow, Rejected
from curate.robots import RobotsRules, origin_of, refusal, robots_url
from curate.tables import LEDGER_SCHEMA, ref_from_row

STAGE = R.DOWNLOAD
# OUT/fetched itself is not cleared: a rerun keeps the shards a killed run committed (see `_start`).
DOWNLOAD_STAGE = Stage(STAGE, "fetched", sections=("extract", "download"), upstream=("refs",),
                 clears=("ledger", f"rejects/{STAGE}-*", "fetched/_MANIFEST.json"), fed_by=("refs",))


def read_refs(out: str) -> list[str]:
    return parquet_files(out, "refs", f"no refs under {join(out, 'refs')}: run `curate extract --output {out}` first")


class ReadRefs(beam.DoFn):
    def process(self, url: str) -> Iterator[ImageRef]:
        with fsspec.open(url, "rb") as fh:
            for row in pq.read_table(fh).to_pylist():
                yield ref_from_row(row)


class FetchRobots(beam.DoFn):
    """robots.txt of one origin, through the process's cache (curate.fetch.ROBOTS), which the opener's redirect
    check shares: in one process an origin is asked once."""

    def __init__(self, config: DownloadConfig):
        self.config = config

    def setup(self) -> None:
        self.policy = policy_of(self.config)

    def process(self, origin: str) -> Iterator[tuple[str, RobotsRules]]:
        yield origin, ROBOTS.rules(origin, self.policy)


def _origin(ref: ImageRef) -> str:
    try:
        return origin_of(ref.url)
    except ValueError:
        return ""


class ApplyRobots(beam.DoFn):
    """Per origin: refs robots.txt disallows are rejected; the rest get their rank inside the origin."""

    def process(self, element: tuple[str, dict[str, Iterable[Any]]]) -> Iterator[Any]:
        origin, joined = element
        rules = next(iter(joined["rules"]), None)
        refs = sorted(joined["refs"], key=lambda r: r.key)
        for rank, ref in enumerate(refs):
            if rules is not None and not rules.allowed(ref.url):
                detail = f"{robots_url(origin)} ({rules.status}{': ' + rules.detail if rules.detail else ''})"
                yield pvalue.TaggedOutput(REJECTED, Rejected(ref.key, ref.url, STAGE, refusal(rules), detail))
            else:
                yield rank, origin_hash(origin), ref


def _remote_shard(item: tuple[int, int, ImageRef], total: int, per_shard: int) -> tuple[int, tuple]:
    rank, origin_hashed, _ = item
    return interleaved_shard(rank, origin_hashed, shard_count(total, per_shard)), item


class DownloadShards(beam.DoFn):
    def __init__(self, out: str, config: DownloadConfig, first_shard: int):
        self.out, self.config, self.first_shard = out, config, first_shard

    def process(self, element: tuple[int, Iterable[tuple[int, int, ImageRef]]]) -> Iterator[LedgerRow]:
        shard, items = element
        refs = [ref for _, _, ref in sorted(items, key=lambda t: (t[0], t[1], t[2].key))]  # hosts alternate
        yield from download_shard(refs, self.first_shard + shard, self.out, self.config)


class WriteInlineShards(beam.DoFn):
    """Images whose bytes came with the crawl: img2dataset's layout, never fetched; numbered after the
    remote shards (whose count is known only at run time)."""

    def __init__(self, out: str, first_shard: int):
        self.out, self.first_shard = out, first_shard

    def process(self, element: tuple[int, Iterable[ImageRef]], remote_total: int, per_shard: int) -> Iterator[LedgerRow]:
        shard, refs = element
        shard_id = self.first_shard + shard_count(remote_total, per_shard) + shard
        if committed(self.out, shard_id):
            yield from read_committed_ledger(self.out, shard_id)
        else:
            yield from write_inline_shard(self.out, shard_id, sorted(refs, key=lambda r: r.key))


def _robots_ledger(rejected: Rejected) -> LedgerRow:
    return LedgerRow(rejected.key, rejected.url, rejected.reason, rejected.detail, rejected.reason in RETRYABLE, "", "")


def _newest(rows: Iterable[LedgerRow]) -> LedgerRow:
    """A ref's latest attempt: the highest shard wins (retries go to new shards; robots rejects have none)."""
    return max(rows, key=lambda row: (row.shard, row.reason == R.KEPT))


class ReadLedger(beam.DoFn):
    def process(self, url: str) -> Iterator[LedgerRow]:
        with fsspec.open(url, "rb") as fh:
            for row in pq.read_table(fh).to_pylist():
                yield LedgerRow(**row)


def _ledger_to_reject(row: LedgerRow) -> Rejected:
    return Rejected(row.key, row.url, STAGE, row.reason, row.detail[:500])


def _describe(shards: list[Any], counts: dict[str, int], retried: int | None = None) -> dict[str, Any]:
    """The funnel; with `retried` (a retry), how many refs were fetched again."""
    described: dict[str, Any] = {"retried": retried} if retried is not None else {}
    described["funnel"] = {"references": {"input": sum(counts.values()), "kept": counts.get(R.KEPT, 0),
                                          "rejected": {k: v for k, v in counts.items() if k != R.KEPT},
                                          "failed": 0}}
    return described


def _retried(joined: tuple[str, dict[str, list[Any]]]) -> list[ImageRef]:
    _, sides = joined
    return sides["ref"] if sides["retry"] else []


def build(p: beam.Pipeline, ref_files: list[str], out: str, config: Config, first_shard: int = 0,
          old_ledger: Sequence[str] = ()) -> None:
    """The stage graph; with `old_ledger` (a retry), fetch just the refs whose row there is retryable (joined
    by key in the pipeline: the key set never travels in the job graph) and merge the new rows into it."""
    dl, per_shard = config.download, config.download.samples_per_shard
    refs = p | "RefFiles" >> DriverList(ref_files, out, f"{STAGE}/refs") | "ReadRefs" >> beam.ParDo(ReadRefs())
    sides = []
    if old_ledger:
        previous = (p | "OldLedgerFiles" >> DriverList(old_ledger, out, f"{STAGE}/ledger")
                    | "ReadLedger" >> beam.ParDo(ReadLedger()))
        retry = previous | "Retryable" >> beam.Filter(lambda row: row.retryable) | "RetryKeys" >> beam.Map(
            lambda row: (row.key, None))
        refs = ({"ref": refs | "RefByKey" >> beam.Map(lambda r: (r.key, r)), "retry": retry}
                | "OnlyRetry" >> beam.CoGroupByKey() | "Retried" >> beam.FlatMap(_retried))
        sides = [beam.pvalue.AsSingleton(refs | "CountRetried" >> beam.combiners.Count.Globally())]
    inline = refs | "Inline" >> beam.Filter(lambda r: r.content is not None)
    by_origin = refs | "Remote" >> beam.Filter(lambda r: r.content is None) | "ByOrigin" >> beam.Map(
        lambda r: (_origin(r), r))
    rules = (by_origin | "Origins" >> beam.Keys() | "Distinct" >> beam.Distinct()
             | "SpreadOrigins" >> beam.Reshuffle() | "Robots" >> beam.ParDo(FetchRobots(dl)))
    checked = (({"refs": by_origin, "rules": rules}) | "Join" >> beam.CoGroupByKey()
               | "ApplyRobots" >> beam.ParDo(ApplyRobots()).with_outputs(REJECTED, main="allowed"))
    total = checked.allowed | "CountAllowed" >> beam.combiners.Count.Globally()
    fetched = (checked.allowed
               | "AssignShard" >> beam.Map(_remote_shard, beam.pvalue.AsSingleton(total), per_shard)
               | "ByShard" >> beam.GroupByKey()
               | "Download" >> beam.ParDo(DownloadShards(out, dl, first_shard))
               | "Progress" >> beam.ParDo(Progress(STAGE, "URLs fetched", 0, out), beam.pvalue.AsSingleton(total)))
    inline_total = inline | "CountInline" >> beam.combiners.Count.Globally()
    inline_rows = (inline
                   | "InlineShard" >> beam.Map(lambda r, n: (int(r.key[:8], 16) % shard_count(n, per_shard), r),
                                               beam.pvalue.AsSingleton(inline_total))
                   | "ByInlineShard" >> beam.GroupByKey()
                   | "WriteInline" >> beam.ParDo(WriteInlineShards(out, first_shard),
                                                 beam.pvalue.AsSingleton(total), per_shard))
    robots_rows = checked[REJECTED] | "RobotsLedger" >> beam.Map(_robots_ledger)
    ledger = (fetched, inline_rows, robots_rows) | "Ledger" >> beam.Flatten()
    if old_ledger:
        ledger = ((ledger, previous) | "AllAttempts" >> beam.Flatten()
                  | "ByRef" >> beam.Map(lambda row: (row.key, row)) | "Newest" >> beam.CombinePerKey(_newest)
                  | "Rows" >> beam.Values())
    ledger_shards = ledger | "WriteLedger" >> WriteParquetShards(
        out, "ledger", STAGE, LEDGER_SCHEMA, dataclasses.asdict, lambda row: row.key, config.extract.shards)
    rejects = ledger | "Failures" >> beam.Filter(lambda row: row.reason != R.KEPT) | "AsRejects" >> beam.Map(
        _ledger_to_reject)
    no_dead_letters = p | "NoDeadLetters" >> beam.Create([])
    other = (rejects, no_dead_letters) | "WriteRejects" >> WriteRejectsAndFailures(out, STAGE, config.extract.shards)
    counts = ledger | "Reasons" >> beam.Map(lambda row: row.reason) | "Tally" >> TallyReasons()
    shards = (ledger_shards, other) | "Shards" >> CollectShards(out)
    _ = shards | "Manifest" >> beam.ParDo(
        WriteManifest(DOWNLOAD_STAGE, out, ref_files, DOWNLOAD_STAGE.digest(out, config), _describe),
        beam.pvalue.AsSingleton(counts), *sides)


def _ledger_files(out: str) -> list[str]:
    fs, path = fsspec.core.url_to_fs(join(out, "ledger"))
    return [fs.unstrip_protocol(f) for f in sorted(fs.glob(f"{path}/*.parquet"))]


def _next_shard(out: str) -> int:
    fs, path = fsspec.core.url_to_fs(join(out, "fetched"))
    ids = [int(f.rsplit("/", 1)[-1].split("_")[0]) for f in fs.glob(f"{path}/*_stats.json")]
    return max(ids, default=-1) + 1


def _refs_identity(out: str, config: Config) -> dict[str, Any]:
    refs = read_json(join(out, "refs", MANIFEST)) or {}
    settings = json.dumps(dataclasses.asdict(config.download), sort_keys=True, default=list)
    return {"refs": [s["sha256"] for s in refs.get("tables", {}).get("refs", [])],
            "download_settings": hashlib.sha256(settings.encode()).hexdigest()[:16]}


def _start(out: str, config: Config) -> None:
    """Committed shards are reused only by a rerun over the same refs and config (a resume); anything else
    starts OUT/fetched afresh, so no shard of an older extract can pass for one of this."""
    plan_url = join(out, "fetched", "_PLAN.json")
    identity = _refs_identity(out, config)
    if read_json(plan_url) != identity:
        remove(join(out, "fetched"))
        write_json(plan_url, identity)


def run(out: str, config: Config, beam_args: Sequence[str] = (), retry_failed: bool = False,
        force: bool = False) -> dict[str, Any]:
    """Fetch every ref of OUT/refs. Shards committed by an earlier, killed run are kept, not fetched again;
    with `retry_failed`, only refs whose last status is retryable are fetched again, into new shards."""
    ref_files = read_refs(out)
    pipeline_options(beam_args)  # a flag Beam does not know is one line before the ledger is touched
    staged, first = [], 0
    if retry_failed:
        old = _ledger_files(out)
        if not old:
            raise InputError(f"no ledger under {join(out, 'ledger')}: run `curate download` first")
        staged = [_copy_aside(url) for url in old]  # the ledger is rewritten from these
        first = _next_shard(out)
    elif not force and (done := DOWNLOAD_STAGE.up_to_date(out, config, ref_files)):
        return {**done, "skipped": True}
    else:
        _start(out, config)
    ROBOTS.clear()  # this run asks every origin again
    manifest = DOWNLOAD_STAGE.run(out, config, beam_args, ref_files, force=True, build=lambda p: build(
        p, ref_files, out, config, first_shard=first, old_ledger=staged))
    if staged:
        remove(join(out, "ledger-previous"))
    return manifest


def _copy_aside(url: str) -> str:
    """Move a ledger file out of the way (the new ledger replaces the folder) and return its new URL."""
    fs, path = fsspec.core.url_to_fs(url)
    aside = path.replace("/ledger/", "/ledger-previous/")
    fs.makedirs(aside.rsplit("/", 1)[0], exist_ok=True)
    fs.mv(path, aside)
    return fs.unstrip_protocol(aside)
