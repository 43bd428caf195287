"""Text: OUT/images + OUT/dedup -> OUT/text (one row per image that survived dedup: its TextScore, the light and
heavy verdicts, and the configured filter's decision), rejects for the filtered-out and the unreadable.

Graph: the dedup survivors' keys join the image rows (CoGroupByKey on key) -> grouped by pixel hash together
with the score cache (CoGroupByKey on pixel hash): a picture already scored by the same engine (an earlier
run, another output sharing the cache, or a second copy of the same pixels) is not scored again -> the rest
grouped by the OUT/images row group that holds their bytes and scored by `ScoreText`, which reads that row
group (the OCR engine loads once per worker, in setup) -> every key gets its group's score ->
filters/text.py's verdict -> OUT/text shards, rejects, dead letters, new cache entries, the manifest and the
funnel. The image bytes never go through a shuffle: the joins carry where a picture is (file, row group,
row), and a worker holds one row group of pictures at a time (pipelines/decode.py's IMAGE_ROW_GROUP).

The cache lives at `text.cache` (default OUT/cache/ocr), one folder per engine id (weights, settings and
algorithm version): scores from another engine are never mixed in. Thresholds are not part of the engine
id, so re-running with another filter or thresholds reuses every score.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
import fsspec
import pyarrow.parquet as pq
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from curate import reasons as R
from curate.config import Config, ImageConfig, TextConfig
from curate.errors import InputError
from curate.filters.text import is_heavy, is_light, verdict
from curate.io import (
    ShardInfo,
    atomic_write,
    join,
    parquet_bytes,
    parquet_files,
    remove,
    write_json,
)
from curate.ocr import cache_root
from curate.ocr import engine_id as make_engine_id
from curate.pipelines.common import (
    FAILED,
    REJECTED,
    ApplyFilter,
    CollectShards,
    DriverList,
    Progress,
    ReadImageRefs,
    TallyReasons,
    WriteParquetShards,
    WriteRejectsAndFailures,
    dead_letter,
    read_image_data,
)
from curate.pipelines.stage import Stage, WriteManifest
from curate.records import Rejected, TextScore
from curate.tables import CACHE_SCHEMA, TEXT_SCHEMA, score_columns, score_from_row

STAGE = R.TEXT
TEXT_STAGE = Stage(STAGE, "text", sections=("extract", "text"), upstream=("images", "dedup"),
             clears=("text", f"rejects/{STAGE}-*", f"failed/{STAGE}-*"), fed_by=("dedup",))


class TextOutcome(NamedTuple):
    """One image's outcome at this stage."""

    key: str
    url: str
    pixel_hash: str
    score: TextScore
    light: bool
    heavy: bool
    reason: str  # kept, or the filter's reason


def text_row(s: TextOutcome) -> dict[str, Any]:
    return {"key": s.key, "url": s.url, "pixel_hash": s.pixel_hash, **score_columns(s.score),
            "light": s.light, "heavy": s.heavy, "reason": s.reason}


class ReadKept(beam.DoFn):
    """(key, True) for every image dedup kept."""

    def process(self, url: str) -> Iterator[tuple[str, bool]]:
        with fsspec.open(url, "rb") as fh:
            for r in pq.read_table(fh, columns=["key", "reason"]).to_pylist():
                if r["reason"] == R.KEPT:
                    yield r["key"], True


class ReadCache(beam.DoFn):
    def process(self, url: str) -> Iterator[tuple[str, TextScore]]:
        with fsspec.open(url, "rb") as fh:
            for r in pq.read_table(fh).to_pylist():
                yield r["pixel_hash"], score_from_row(r)


def _survivors(element: tuple[str, dict[str, list[Any]]]) -> Iterator[Any]:
    """The image rows of the keys dedup kept; a kept key without its image row is a dead letter."""
    key, joined = element
    if not joined["kept"]:
        return
    rows = joined["image"]
    if not rows:
        yield dead_letter(STAGE, key, "", "IntegrityError: dedup kept a key that OUT/images does not hold")
        return
    row = rows[0]
    yield row["pixel_hash"], row


def _resolve(element: tuple[str, dict[str, list[Any]]]) -> Iterator[Any]:
    """A pixel hash with a cached score: every key gets it. Without: one picture goes to be scored."""
    pixel_hash, joined = element
    rows = sorted(joined["image"], key=lambda r: r["key"])
    if not rows:
        return
    cached = sorted(joined["cached"])
    if cached:
        yield pvalue.TaggedOutput("cached", (rows, cached[0]))
    else:
        yield rows


class ScoreText(beam.DoFn):
    """OCR for the pictures to score in one row group of one OUT/images file: the group's bytes are read here,
    once, and the pictures (each with the rows that share its pixels) are scored `text.batch` at a time
    (`TextEngine.score_many`). The engine loads once per worker; one picture's score does not depend on the
    others in its call. The group's new scores are committed to the cache as soon as the group is done (one
    file, named by its pictures): a run killed mid-stage keeps what it scored, and the rerun takes it from
    the cache. The file's ShardInfo leaves on "new"."""

    def __init__(self, config: TextConfig, image: ImageConfig, cache: str, engine_id: str):
        self.config, self.image, self.cache, self.engine_id = config, image, cache, engine_id

    def setup(self) -> None:
        from curate.ocr import TextEngine

        self.engine = TextEngine(self.config, image=self.image)

    def process(self, element: tuple[tuple[str, int], Iterable[list[dict[str, Any]]]]) -> Iterator[Any]:
        (url, group), todo = element
        pictures = sorted(todo, key=lambda rows: rows[0]["row"])
        try:
            data = read_image_data(url, group)
        except Exception as e:  # noqa: BLE001 - an unreadable file fails its pictures, not the run
            for rows in pictures:
                yield from self._outcome(rows, e)
            return
        new: dict[str, TextScore] = {}
        for start in range(0, len(pictures), self.config.batch):
            batch = pictures[start:start + self.config.batch]
            items = [data[rows[0]["row"]].as_py() for rows in batch]
            try:
                results: list[Any] = self.engine.score_many(items)
            except Exception:  # noqa: BLE001 - the batch as a whole failed (memory?): each picture on its own
                results = [self._one(item) for item in items]
            for rows, result in zip(batch, results, strict=True):
                if isinstance(result, TextScore):
                    new[rows[0]["pixel_hash"]] = result
                yield from self._outcome(rows, result)
        if new:
            yield pvalue.TaggedOutput("new", self._commit(new))

    def _commit(self, new: dict[str, TextScore]) -> ShardInfo:
        rows = [_cache_row(item) for item in sorted(new.items())]
        name = hashlib.sha256("\n".join(sorted(new)).encode()).hexdigest()[:16]
        rel = join(self.engine_id, f"scores-{name}.parquet")
        size, digest = atomic_write(join(self.cache, rel), parquet_bytes(rows, CACHE_SCHEMA))
        return ShardInfo(self.engine_id, rel, len(rows), size, digest)

    def _one(self, data: bytes) -> Any:
        try:
            return self.engine.score_bytes(data)
        except Exception as e:  # noqa: BLE001 - an unexpected error is a dead letter, never a failed run
            return e

    @staticmethod
    def _outcome(rows: list[dict[str, Any]], result: Any) -> Iterator[Any]:
        from curate.ocr import OcrFailure

        if isinstance(result, Exception):
            for row in rows:
                yield dead_letter(STAGE, row["key"], row["url"], result)
            return
        if isinstance(result, OcrFailure):
            Metrics.counter(STAGE, R.OCR_FAILED).inc(len(rows))
            for row in rows:
                yield pvalue.TaggedOutput(REJECTED, Rejected(row["key"], row["url"], STAGE, result.reason,
                                                             result.detail))
            return
        Metrics.distribution(STAGE, "ms").update(int(result.ms))
        yield rows, result


def _decide(config: TextConfig):
    def decide(element: tuple[list[dict[str, Any]], TextScore]) -> Iterator[TextOutcome]:
        rows, score = element
        light, heavy, reason = is_light(score, config), is_heavy(score, config), verdict(score, config)
        for row in rows:
            yield TextOutcome(row["key"], row["url"], row["pixel_hash"], score, light, heavy, reason)
    return decide


def _filtered(s: TextOutcome) -> TextOutcome | Rejected:
    """The configured filter, applied: the verdict `_decide` recorded (every score stays in OUT/text)."""
    if s.reason == R.KEPT:
        return s
    return Rejected(s.key, s.url, STAGE, s.reason, f"chars {s.score.chars}, lines {s.score.lines}")


def _cache_row(element: tuple[str, TextScore]) -> dict[str, Any]:
    pixel_hash, score = element
    return {"pixel_hash": pixel_hash, **score._asdict()}


def _describe(out: str, engine_id: str) -> Any:
    def describe(shards: list[Any], n_input: int, counts: dict[str, int], failed: int, work: dict[str, float],
                 new_cache: list[Any]) -> dict[str, Any]:
        # new_cache (the cache files this run added, checked) is a side input so that the manifest, which
        # marks the stage complete, is written only after them; they live outside the stage's tables.
        # The work done is a fact about this run, not about the data: it goes beside the manifest, first.
        write_json(join(out, "text", "_WORK.json"), work)
        rejected = {k: v for k, v in sorted(counts.items()) if k != R.KEPT}
        return {"engine": engine_id, "funnel": {
            "images": {"input": n_input, "kept": counts.get(R.KEPT, 0), "rejected": rejected, "failed": failed}}}
    return describe


def _check_writable(folder: str) -> None:
    probe = join(folder, f".probe-{uuid.uuid4().hex[:12]}")
    try:
        atomic_write(probe, b"")
        remove(probe)
    except OSError as e:
        raise InputError(f"the OCR cache {folder} is not writable ({type(e).__name__}: {e}); "
                         "set text.cache to a folder you can write") from None


def _work(pairs: list[tuple[str, float]]) -> dict[str, float]:
    scored = [ms for kind, ms in pairs if kind == "scored"]
    return {"scored": len(scored), "cached": sum(1 for kind, _ in pairs if kind == "cached"),
            "ocr_seconds": round(sum(scored) / 1000, 3),
            "ms_per_scored_image": round(sum(scored) / len(scored), 1) if scored else 0.0}


def worker_threads(threads: int, options: Any) -> int:
    """`text.threads` as each worker uses it. 0 (the default) is automatic: 1 where the runner runs several
    workers on a machine's cores (the DirectRunner's multi_processing or multi_threading modes, and every other
    runner: Dataflow, Flink, Spark, Dask and the portable runner start a worker per core), the library's default
    (a thread per core) in the one in-process worker of the plain DirectRunner. Oversubscribing N workers
    with N threads each slows every one of them."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    if threads:
        return threads
    runner = options.view_as(StandardOptions).runner
    mode = options.view_as(DirectOptions).direct_running_mode
    alone = runner in (None, "DirectRunner", "direct", "BundleBasedDirectRunner") and mode == "in_memory"
    return 0 if alone else 1


def build(p: beam.Pipeline, out: str, config: Config, images: list[str], decisions: list[str],
          cache_files: list[str], engine_id: str, inputs: list[str]) -> None:
    shards, tc = config.extract.shards, config.text
    _check_writable(join(cache_root(out, tc), engine_id))  # before any OCR, not after it all
    kept = (p | "DedupFiles" >> DriverList(decisions, out, f"{STAGE}/dedup") | "SpreadDedup" >> beam.Reshuffle()
            | "ReadKept" >> beam.ParDo(ReadKept()))
    rows = (p | "ImageFiles" >> DriverList(images, out, f"{STAGE}/images") | "SpreadImages" >> beam.Reshuffle()
            | "ReadImageRefs" >> beam.ParDo(ReadImageRefs(["key", "url", "pixel_hash"])))
    survivors = ({"kept": kept, "image": rows} | "JoinKept" >> beam.CoGroupByKey()
                 | "Survivors" >> beam.FlatMap(_survivors).with_outputs(FAILED, main="rows"))
    cached = p | "CacheFiles" >> DriverList(cache_files, out, f"{STAGE}/cache") | "ReadCache" >> beam.ParDo(ReadCache())
    resolved = ({"image": survivors.rows, "cached": cached} | "JoinCache" >> beam.CoGroupByKey()
                | "Resolve" >> beam.FlatMap(_resolve).with_outputs("cached", main="todo"))
    to_score = resolved.todo | "CountToScore" >> beam.combiners.Count.Globally()  # cached pictures need no OCR
    scored = (resolved.todo | "ByRowGroup" >> beam.Map(lambda rows: ((rows[0]["file"], rows[0]["group"]), rows))
              | "SpreadWork" >> beam.GroupByKey()
              | "Score" >> beam.ParDo(ScoreText(dataclasses.replace(tc, threads=worker_threads(tc.threads, p.options)),
                                                config.image, cache_root(out, tc), engine_id)).with_outputs(
                  "new", REJECTED, FAILED, main="scored"))
    progressed = scored.scored | "Progress" >> beam.ParDo(Progress(STAGE, "pictures scored", 0, out),
                                                          beam.pvalue.AsSingleton(to_score))
    outcomes = ((progressed, resolved.cached) | "AllScores" >> beam.Flatten()
                | "Decide" >> beam.FlatMap(_decide(tc)))
    written = outcomes | "WriteText" >> WriteParquetShards(out, "text", "text", TEXT_SCHEMA, text_row,
                                                           lambda s: s.key, shards)
    filtered = outcomes | "Filtered" >> beam.ParDo(ApplyFilter(STAGE, _filtered, lambda s: (s.key, s.url))).with_outputs(
        REJECTED, FAILED, main="kept")
    rejects = (filtered[REJECTED], scored[REJECTED]) | "AllRejects" >> beam.Flatten()
    failures = (survivors[FAILED], scored[FAILED], filtered[FAILED]) | "AllFailures" >> beam.Flatten()
    other = (rejects, failures) | "WriteRejects" >> WriteRejectsAndFailures(out, STAGE, shards)
    counts = (((outcomes | "Reasons" >> beam.Map(lambda s: s.reason)),
               (scored[REJECTED] | "FailReasons" >> beam.Map(lambda r: r.reason)))
              | "AllReasons" >> beam.Flatten() | "Tally" >> TallyReasons())
    n_failed = failures | "CountFailed" >> beam.combiners.Count.Globally()
    work = (((scored.scored | "ScoredMs" >> beam.Map(lambda e: ("scored", e[1].ms * len(e[0])))),
             (resolved.cached | "CachedMs" >> beam.Map(lambda e: ("cached", 0.0))))
            | "AllWork" >> beam.Flatten() | "WorkList" >> beam.combiners.ToList() | "Work" >> beam.Map(_work))
    n_input = kept | "CountInput" >> beam.combiners.Count.Globally()
    cache_shards = scored.new | "CacheShards" >> CollectShards(cache_root(out, tc))
    all_shards = (written, other) | "Shards" >> CollectShards(out)
    _ = all_shards | "Manifest" >> beam.ParDo(
        WriteManifest(TEXT_STAGE, out, inputs, TEXT_STAGE.digest(out, config), _describe(out, engine_id)),
        beam.pvalue.AsSingleton(n_input),
        beam.pvalue.AsSingleton(counts), beam.pvalue.AsSingleton(n_failed), beam.pvalue.AsSingleton(work),
        beam.pvalue.AsSingleton(cache_shards))


def run(out: str, config: Config, beam_args: Sequence[str] = (), force: bool = False) -> dict[str, Any]:
    """Score (or take from the cache) every image dedup kept, and apply the configured text filter."""

    images = parquet_files(out, "images", f"no images under {join(out, 'images')}: run `curate filter` first")
    decisions = parquet_files(out, "dedup", f"no dedup decisions under {join(out, 'dedup')}: run `curate filter` first")
    engine_id = make_engine_id(config.text)
    inputs = images + decisions
    fs, path = fsspec.core.url_to_fs(join(cache_root(out, config.text), engine_id))
    cache_files = [fs.unstrip_protocol(f) for f in sorted(fs.glob(f"{path}/*.parquet"))]
    return TEXT_STAGE.run(out, config, beam_args, inputs,
                    lambda p: build(p, out, config, images, decisions, cache_files, engine_id, inputs), force)
