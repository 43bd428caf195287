"""Extract: crawl files and URL lists -> one ImageRef per distinct image URL, every other reference and record
accounted (a URL list's row is a record).

Graph: file URLs -> Reshuffle (one file per element, spread over workers) -> ExtractFile (streams the
file; refs on the main output, rejects and dead letters on tagged outputs, counts per file) ->
CombinePerKey by URL key (cross-snapshot URL dedup: deterministic representative, occurrences, a few
alts) -> Parquet shards under OUT/refs, rejects under OUT/rejects, dead letters under OUT/failed, and
OUT/refs/_MANIFEST.json with the funnel. The driver then verifies the shards, checks that the counts add
up, and merges the funnel into OUT/stats.json.
"""

from __future__ import annotations

import dataclasses
import hashlib
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from curate import reasons as R
from curate import urllists
from curate.config import Config, ExtractConfig
from curate.crawl import CrawlFile, open_binary, snapshot_of
from curate.filters.extract import LIST_ROW, Context, RefMerge, extract_record, from_list_row, source_name
from curate.io import (
    ShardInfo,
)
from curate.pipelines.common import (
    COUNTS,
    FAILED,
    REJECTED,
    CollectShards,
    DriverList,
    Progress,
    WriteParquetShards,
    WriteRejectsAndFailures,
    dead_letter,
    sum_counts,
)
from curate.pipelines.stage import Stage, WriteManifest
from curate.records import Rejected
from curate.tables import REF_SCHEMA, ref_row
from curate.urls import url_key
from curate.warc import DamagedFile, NotAWarc, iter_records

STAGE = R.EXTRACT
EXTRACT_STAGE = Stage(STAGE, "refs", sections=("extract",), upstream=(),
                clears=("refs", f"rejects/{STAGE}-*", f"failed/{STAGE}-*"))

class ExtractFile(beam.DoFn):
    """One crawl file (or URL list) in, its references out. Nothing a file holds can stop the run."""

    def __init__(self, agent: str, config: ExtractConfig):
        self.agent, self.config = agent, config

    def process(self, file: CrawlFile) -> Iterator[Any]:
        counts: Counter[str] = Counter()
        ctx = Context(source_name(file.url), file.snapshot, self.agent)
        try:
            if file.kind == "urls":
                yield from self._list(ctx, file.url, counts)
            else:
                with open_binary(file.url) as stream:
                    for record in iter_records(stream):
                        if record.warc_type == "warcinfo" and not ctx.snapshot:
                            ctx.snapshot = snapshot_of(record.is_part_of) or record.is_part_of
                        yield from self._record(ctx, record, counts)
            counts["files.read"] += 1
        except DamagedFile as e:
            counts[f"files.{R.TRUNCATED_RECORD}"] += 1  # the name its dead letter carries
            yield self._failed(file, R.TRUNCATED_RECORD, str(e))
        except NotAWarc as e:
            counts["files.not_warc"] += 1
            yield self._failed(file, R.NOT_WARC, str(e))
        except FileNotFoundError as e:
            counts["files.missing_file"] += 1
            yield self._failed(file, R.MISSING_FILE, str(e))
        except Exception as e:  # noqa: BLE001 - any other I/O or library failure: dead-letter the file, go on
            counts["files.read_error"] += 1
            yield self._failed(file, f"{type(e).__name__}: {e}", traceback.format_exc(limit=5))
        for name, n in counts.items():
            Metrics.counter(STAGE, name).inc(n)
        yield pvalue.TaggedOutput(COUNTS, dict(counts))

    def _list(self, ctx: Context, url: str, counts: Counter[str]) -> Iterator[Any]:
        for number, raw, caption in urllists.read(url, self.config.url_column, self.config.caption_column):
            counts[f"records.{LIST_ROW}"] += 1
            yield from self._references(counts, [from_list_row(ctx, number, raw, caption)])

    def _record(self, ctx: Context, record: Any, counts: Counter[str]) -> Iterator[Any]:
        if not record.complete:
            counts["records.truncated_record"] += 1
            return  # the file is reported as damaged right after this
        try:
            kind, items = extract_record(ctx, record)
        except Exception as e:  # noqa: BLE001 - one bad record is a dead letter, not a failed run
            counts["records.failed"] += 1
            where = f"{ctx.source_file}#{record.offset}"
            yield dead_letter(STAGE, url_key(where), where, e)
            return
        counts[f"records.{kind}"] += 1
        yield from self._references(counts, items)

    @staticmethod
    def _references(counts: Counter[str], items: list[Any]) -> Iterator[Any]:
        for item in items:
            counts["references.input"] += 1
            if isinstance(item, Rejected):
                counts[f"references.{item.reason}"] += 1
                yield pvalue.TaggedOutput(REJECTED, item)
            else:
                yield item

    @staticmethod
    def _failed(file: CrawlFile, error: str, detail: str) -> pvalue.TaggedOutput:
        name = source_name(file.url)
        return dead_letter(STAGE, url_key(name), name, error, detail)


class MergeRefs(RefMerge, beam.CombineFn):
    """curate.filters.extract.RefMerge as a Beam combiner: one ImageRef per URL key, on any runner."""


def funnel(counts: dict[str, int], kept: int, n_files: int) -> dict[str, Any]:
    """stats.json's extract section: files, records and references, each input = kept + rejected + failed."""
    def group(prefix: str) -> dict[str, int]:
        return {k.split(".", 1)[1]: v for k, v in counts.items() if k.startswith(prefix + ".")}

    files, records, refs = group("files"), group("records"), group("references")
    read = files.pop("read", 0)
    record_failures = {k: records.pop(k) for k in ("failed", R.TRUNCATED_RECORD) if k in records}
    found = refs.pop("input", 0)
    rejected = dict(sorted(refs.items()))
    rejected[R.DUPLICATE_URL] = found - sum(rejected.values()) - kept
    return {
        "files": {"input": n_files, "kept": read, "rejected": {}, "failed": sum(files.values()), "failures": files},
        "records": {"input": sum(records.values()) + sum(record_failures.values()), "kept": sum(records.values()),
                    "rejected": {}, "failed": sum(record_failures.values()), "kinds": records,
                    "failures": record_failures},
        "references": {"input": found, "kept": kept, "rejected": rejected, "failed": 0},
    }


def inputs_summary(files: list[CrawlFile]) -> dict[str, Any]:
    """What the manifest and config.yaml record of the inputs: a whole crawl is ~90,000 files a snapshot,
    so the list itself is summarized (count, digest, first and last) rather than copied."""
    urls = [f.url for f in files]
    digest = hashlib.sha256("\n".join(urls).encode()).hexdigest()
    return {"files": len(urls), "sha256": digest, "first": urls[:1], "last": urls[-1:],
            "snapshots": sorted({f.snapshot for f in files if f.snapshot})}


def _describe(files: int) -> Any:
    def describe(shards: list[ShardInfo], counts: dict[str, int], kept: int) -> dict[str, Any]:
        return {"funnel": funnel(counts, kept, files)}
    return describe


def build(p: beam.Pipeline, files: list[CrawlFile], out: str, config: Config) -> None:
    shards = config.extract.shards
    results = (
        p
        | "Files" >> DriverList(files, out, STAGE, dataclasses.asdict, lambda row: CrawlFile(**row))
        | "Spread" >> beam.Reshuffle()
        | "Progress" >> beam.ParDo(Progress(STAGE, "crawl files", len(files), out))
        | "Extract" >> beam.ParDo(ExtractFile(config.download.user_agent_token, config.extract)).with_outputs(
            REJECTED, FAILED, COUNTS, main="refs")
    )
    refs = (
        results.refs
        | "ByUrl" >> beam.Map(lambda r: (r.key, r))
        | "DedupUrls" >> beam.CombinePerKey(MergeRefs())
        | "Refs" >> beam.Values()
    )
    ref_shards = refs | "WriteRefs" >> WriteParquetShards(out, "refs", "refs", REF_SCHEMA, ref_row,
                                                         lambda r: r.key, shards)
    other_shards = (results[REJECTED], results[FAILED]) | "WriteRejects" >> WriteRejectsAndFailures(out, STAGE, shards)
    counts = results[COUNTS] | "SumCounts" >> beam.CombineGlobally(sum_counts)
    kept = refs | "CountRefs" >> beam.combiners.Count.Globally()
    all_shards = (ref_shards, other_shards) | "Shards" >> CollectShards(out)
    _ = all_shards | "Manifest" >> beam.ParDo(
        WriteManifest(EXTRACT_STAGE, out, inputs_summary(files), EXTRACT_STAGE.digest(out, config),
                      _describe(len(files))),
        beam.pvalue.AsSingleton(counts), beam.pvalue.AsSingleton(kept))


def run(files: list[CrawlFile], out: str, config: Config, beam_args: Sequence[str] = (),
        force: bool = False) -> dict[str, Any]:
    """Run the stage (unless its outputs are complete for these inputs and config); return its manifest."""
    summary = inputs_summary(files)
    return EXTRACT_STAGE.run(out, config, beam_args, summary, lambda p: build(p, files, out, config), force,
                       config_facts={"inputs": summary})
