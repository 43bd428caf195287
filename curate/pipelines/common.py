"""The Beam steps stages share: runner flags, applying a filter, progress, driver-made lists, the reject and
dead-letter tables, the committed shards checked and collected for the manifest, and picture rows read
without their bytes. The run of a stage itself (skip, clear, manifest, funnel) is curate.pipelines.stage."""

from __future__ import annotations

import json
import logging
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam import pvalue
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from curate import progress
from curate import reasons as R
from curate.errors import UserError
from curate.io import (
    ShardInfo,
    atomic_write,
    join,
    read_json,
    shard_of,
    verify_shard,
    write_table_shard,
)
from curate.records import Failed, Rejected
from curate.tables import FAILED_SCHEMA, REJECT_SCHEMA

# Tagged outputs: a filter step's rejects and dead letters, and a step's counts for its stage's funnel.
REJECTED, FAILED, COUNTS = "rejected", "failed", "counts"


def dead_letter(stage: str, key: str, url: str, error: BaseException | str, detail: str = "") -> pvalue.TaggedOutput:
    """A `Failed` on the FAILED output: an exception (its type and message; its traceback as the detail) or
    an error stated in words."""
    if isinstance(error, BaseException):
        return pvalue.TaggedOutput(FAILED, Failed(key, url, stage, f"{type(error).__name__}: {error}",
                                                  detail or "".join(traceback.format_exception(error, limit=5))))
    return pvalue.TaggedOutput(FAILED, Failed(key, url, stage, error, detail))


class ApplyFilter(beam.DoFn):
    """A filter's rule on each element (datatrove's contract): `rule(x)` returns the kept record, or a `Rejected`
    that leaves on the REJECTED output; an exception becomes a dead letter (`Failed`, named by `identify(x)` ->
    (key, url)) on FAILED, never a failed run. Each outcome adds one to the Beam counter <stage>:<outcome>
    (kept, failed or the reject reason)."""

    def __init__(self, stage: str, rule: Callable[[Any], Any], identify: Callable[[Any], tuple[str, str]]):
        self.stage, self.rule, self.identify = stage, rule, identify

    def process(self, element: Any) -> Iterator[Any]:
        yield from self.outcomes(element)

    def outcomes(self, element: Any) -> Iterator[Any]:
        """The element's outcome; for steps that apply a filter inside their own DoFn (decode writes the kept)."""
        try:
            result = self.rule(element)
        except Exception as e:  # noqa: BLE001 - a rule that raises fails its element only
            Metrics.counter(self.stage, "failed").inc()
            yield dead_letter(self.stage, *self.identify(element), e)
            return
        if isinstance(result, Rejected):
            Metrics.counter(self.stage, result.reason).inc()
            yield pvalue.TaggedOutput(REJECTED, result)
        else:
            Metrics.counter(self.stage, R.KEPT).inc()
            yield result


def sum_counts(dicts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Counters summed (a CombineGlobally over the per-worker counts of a stage)."""
    total: Counter[str] = Counter()
    for d in dicts:
        total.update(d)
    return dict(total)


class TallyReasons(beam.PTransform):
    """PCollection[reason] -> one {reason: n}, sorted: a stage's funnel of outcomes."""

    def expand(self, reasons: beam.PCollection) -> beam.PCollection:
        return (reasons | "PerReason" >> beam.combiners.Count.PerElement() | "Pairs" >> beam.combiners.ToList()
                | "Sorted" >> beam.Map(lambda pairs: dict(sorted(pairs))))


class Progress(beam.DoFn):
    """Passes elements through and counts them for the driver's progress display (curate.progress): each
    instance reports its count, at most every REPORT_EVERY seconds and at the end of each bundle, under
    OUT/_progress/<stage>/, and the driver shows the sum over every worker. The total is `total`, or a side
    input when only the pipeline knows it (`beam.pvalue.AsSingleton(...)`)."""

    def __init__(self, stage: str, unit: str, total: int, out: str):
        self.stage, self.unit, self.total, self.out = stage, unit, total, out

    def setup(self) -> None:
        self.reporter = uuid.uuid4().hex
        self.done, self.first, self.reported, self.known = 0, 0.0, 0.0, self.total

    def process(self, element: Any, total: int | None = None) -> Iterator[Any]:
        self.known = self.total if total is None else total
        now = time.time()
        self.first = self.first or now
        self.done += 1
        if now - self.reported >= progress.REPORT_EVERY:
            self._report(now)
        yield element

    def finish_bundle(self) -> None:
        if self.done:
            self._report(time.time())

    def _report(self, now: float) -> None:
        self.reported = now
        progress.report(self.out, self.stage, self.reporter, self.done, self.known, self.first, self.unit, now)


class _Discarded(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "Discarding" in record.getMessage():
            self.messages.append(record.getMessage())


def pipeline_options(beam_args: Sequence[str]) -> PipelineOptions:
    """Beam's options from the flags our parser did not know; a flag Beam does not know either is a user error."""
    if any(arg.startswith("--dask_") or "DaskRunner" in arg for arg in beam_args):
        import apache_beam.runners.dask.dask_runner  # noqa: F401  (its --dask_* options exist once imported)
    options = PipelineOptions(list(beam_args))
    handler = _Discarded()
    logger = logging.getLogger("apache_beam.options.pipeline_options")
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False  # our one-line error replaces Beam's warning
    try:
        options.get_all_options()
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    if handler.messages:
        raise UserError(f"unknown flags (neither curate's nor Beam's): {handler.messages[0].split(': ', 1)[-1]}")
    return options


INLINE_LIMIT = 10_000  # driver-made list items that may travel inside the job graph


class DriverList(beam.PTransform):
    """A list the driver made (crawl files, tar shards, the OUT files a stage reads) as a PCollection.

    beam.Create pickles its values into the job graph: fine for the sample's dozen files, not for a real
    job (16 crawls x ~90,000 WARC files is ~1.4 million URLs, ~200 MB, where Dataflow refuses a graph over
    10 MB and every worker would unpickle it). Up to INLINE_LIMIT items go through Create; a longer list is
    written by the driver to OUT/_inputs/<name>/ as JSON chunks of INLINE_LIMIT items, and the workers read
    the chunks. The elements are the same either way. `name`: the stage's name, then the list's
    (`dedup/images`): the stage removes OUT/_inputs/<stage> after its run."""

    def __init__(self, items: Sequence[Any], out: str, name: str,
                 to_json: Callable[[Any], Any] = lambda x: x, from_json: Callable[[Any], Any] = lambda x: x):
        super().__init__()
        self.items, self.out, self.name, self.to_json, self.from_json = list(items), out, name, to_json, from_json

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        if len(self.items) <= INLINE_LIMIT:
            return pbegin | "Inline" >> beam.Create(self.items)
        chunks = []
        for start in range(0, len(self.items), INLINE_LIMIT):
            url = join(self.out, "_inputs", self.name, f"chunk-{start // INLINE_LIMIT:05d}.json")
            rows = [self.to_json(item) for item in self.items[start:start + INLINE_LIMIT]]
            atomic_write(url, json.dumps(rows).encode())
            chunks.append(url)
        return (pbegin | "Chunks" >> beam.Create(chunks) | "SpreadChunks" >> beam.Reshuffle()
                | "ReadChunk" >> beam.FlatMap(_read_chunk, self.from_json))


def _read_chunk(url: str, from_json: Callable[[Any], Any]) -> Iterator[Any]:
    for row in read_json(url) or []:
        yield from_json(row)


class WriteParquetShards(beam.PTransform):
    """Write records as `OUT/<folder>/<table>-NNNNN-of-MMMMM.parquet` (curate.io.write_table_shard), each record
    in the shard its key hashes to; outputs one ShardInfo per shard."""

    def __init__(self, out: str, folder: str, table: str, schema: pa.Schema,
                 to_row: Callable[[Any], dict], key: Callable[[Any], str], num_shards: int):
        super().__init__()
        self.out, self.folder, self.table, self.schema = out, folder, table, schema
        self.to_row, self.key, self.num_shards = to_row, key, num_shards

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        key, to_row, n = self.key, self.to_row, self.num_shards
        return (
            pcoll
            | "Keyed" >> beam.Map(lambda r: (shard_of(key(r), n), (key(r), to_row(r))))
            | "ByShard" >> beam.GroupByKey()
            | "Write" >> beam.Map(_write_table_shard, self.out, self.folder, self.table, self.schema, n)
        )


def _write_table_shard(element: tuple[int, Iterable[tuple[str, dict]]], out: str, folder: str, table: str,
                       schema: pa.Schema, num_shards: int) -> ShardInfo:
    index, keyed = element
    return write_table_shard(out, folder, table, index, num_shards, schema, keyed)


class WriteRejectsAndFailures(beam.PTransform):
    """OUT/rejects/<stage>-*.parquet and OUT/failed/<stage>-*.parquet; outputs ShardInfo per shard."""

    def __init__(self, out: str, stage: str, num_shards: int):
        super().__init__()
        self.out, self.stage, self.num_shards = out, stage, num_shards

    def expand(self, pcolls: tuple[beam.PCollection, beam.PCollection]) -> beam.PCollection:
        rejected, failed = pcolls
        merged = (
            rejected
            | "KeyRejects" >> beam.Map(lambda r: ((r.key, r.reason), r))
            | "MergeRejects" >> beam.CombinePerKey(_merge_rejects)
            | "Rejects" >> beam.Values()
        )
        rej = merged | "WriteRejects" >> WriteParquetShards(
            self.out, "rejects", self.stage, REJECT_SCHEMA, Rejected._asdict, lambda r: r.key, self.num_shards)
        fail = failed | "WriteFailed" >> WriteParquetShards(
            self.out, "failed", self.stage, FAILED_SCHEMA, Failed._asdict, lambda r: r.key, self.num_shards)
        return (rej, fail) | "AllShards" >> beam.Flatten()


def _merge_rejects(rejects: Any) -> Rejected:
    """One row per (key, reason): the first by detail (deterministic), with the occurrences summed."""
    items = list(rejects)
    first = min(items, key=lambda r: (r.detail, r.url))
    return first._replace(occurrences=sum(r.occurrences for r in items))


class CollectShards(beam.PTransform):
    """A stage's committed shards (ShardInfo PCollections) as one list for its manifest, each shard re-read
    and checked against its recorded size and SHA-256 by the worker that holds its ShardInfo: the contents
    are checked in parallel, and the driver afterwards only lists the folders (`verify_listed`)."""

    def __init__(self, out: str):
        super().__init__()
        self.out = out

    def expand(self, pcolls: beam.PCollection | Sequence[beam.PCollection]) -> beam.PCollection:
        shards = pcolls if isinstance(pcolls, beam.PCollection) else pcolls | "Flatten" >> beam.Flatten()
        return shards | "Verify" >> beam.Map(_verified, self.out) | "List" >> beam.combiners.ToList()


def _verified(shard: ShardInfo, out: str) -> ShardInfo:
    verify_shard(out, shard.path, shard.bytes, shard.sha256)
    return shard


REF_FIELDS = ("file", "group", "row")


class ReadImageRefs(beam.DoFn):
    """(key, row) for every row of an OUT/images file, without the picture bytes but with where they are:
    `file`, `group` (Parquet row group) and `row` (index in it). Stages join and spread these, ~100 bytes a
    picture, and read the bytes (`read_image_data`) one row group at a time where they use them, so image
    bytes go through as few shuffles as possible."""

    def __init__(self, columns: list[str] | None = None):
        self.columns = columns  # None: every column but the bytes

    def process(self, url: str) -> Iterator[tuple[str, dict[str, Any]]]:
        with fsspec.open(url, "rb") as fh:
            parquet = pq.ParquetFile(fh)
            columns = self.columns or [name for name in parquet.schema_arrow.names if name != "data"]
            for group in range(parquet.num_row_groups):
                for index, row in enumerate(parquet.read_row_group(group, columns=columns).to_pylist()):
                    yield row["key"], {**row, "file": url, "group": group, "row": index}


def read_image_data(url: str, group: int) -> pa.ChunkedArray:
    """The picture bytes (`data` column) of one row group of an OUT/images file."""
    with fsspec.open(url, "rb") as fh:
        return pq.ParquetFile(fh).read_row_group(group, columns=["data"]).column("data")
