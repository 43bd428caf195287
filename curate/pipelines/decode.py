"""Decode and validate: images from any source -> OUT/images (one row per valid image, with its hashes).

Graph: source URLs (tar shards, image files), cut on the driver into at most `extract.shards` contiguous
parts -> Reshuffle (parts, not bytes) -> DecodePart: reads each source of its part, decodes every image
with curate.imaging (refusals tagged with their reason, unexpected errors dead-lettered, the rest become
rows with width, height, format, SHA-256 of the bytes, hash of the normalized pixels and the 64-bit
perceptual hash) and streams the rows into the part's own Parquet file, IMAGE_ROW_GROUP rows at a time ->
rejects, dead letters, the manifest and the funnel. The original bytes travel on unchanged in the `data`
column, but never through a shuffle: a worker holds one picture of a source and one row group, whatever the job's size
(a shuffle of the bytes costs a distributed runner per GB, and Beam's local runners hand each worker its
whole share of a grouped step at once). Rows keep their sources' order, so every runner writes the same
files.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from curate import reasons as R
from curate.config import Config
from curate.filters.image import STAGE, decode_one
from curate.io import RowGroupWriter, ShardInfo, join, table_file
from curate.pipelines.common import (
    COUNTS,
    FAILED,
    REJECTED,
    ApplyFilter,
    CollectShards,
    DriverList,
    Progress,
    WriteRejectsAndFailures,
    dead_letter,
    sum_counts,
)
from curate.pipelines.stage import Stage, WriteManifest
from curate.readers import fetched_by, read_source
from curate.records import Failed, FetchedImage, ImageRecord
from curate.tables import IMAGE_SCHEMA, image_row
from curate.urls import url_key

DECODE_STAGE = Stage(STAGE, "images", sections=("extract", "image"), upstream=("fetched",),
               clears=("images", f"rejects/{STAGE}-*", f"failed/{STAGE}-*"))

# Rows per Parquet row group of OUT/images (~40 MB at ~150 kB a picture): decode buffers one row group, the
# text and write stages read picture bytes one row group at a time, so this bounds what their workers hold
# and how finely OCR spreads.
IMAGE_ROW_GROUP = 256
def split_parts(sources: Sequence[str], num_parts: int) -> list[tuple[int, list[str]]]:
    """The sources in min(num_parts, len(sources)) contiguous parts whose sizes differ by at most one."""
    n = min(num_parts, len(sources))
    if n == 0:
        return []
    return [(i, list(sources[i * len(sources) // n:(i + 1) * len(sources) // n])) for i in range(n)]


class DecodePart(beam.DoFn):
    """One part: every image of its sources decoded (`decode_one`, applied by ApplyFilter), the valid ones
    written to the part's own OUT/images file; yields that file's ShardInfo, the rejects and dead letters, and
    the part's counts. A source that cannot be read is one dead letter (its images so far stay counted)."""

    def __init__(self, out: str, config: Config, num_parts: int):
        self.out, self.num_parts = out, num_parts
        self.filter = ApplyFilter(STAGE, functools.partial(decode_one, config=config.image), _identify)

    def process(self, part: tuple[int, list[str]]) -> Iterator[Any]:
        index, sources = part
        rel = join("images", table_file("images", index, self.num_parts))
        sink = RowGroupWriter(join(self.out, rel), IMAGE_SCHEMA, IMAGE_ROW_GROUP)
        counts: Counter[str] = Counter()
        try:
            for source in sources:
                for result in self._source(source, counts):
                    if isinstance(result, ImageRecord):
                        sink.add(image_row(result))
                    else:
                        yield result
            written = sink.commit()
        except BaseException:
            sink.discard()
            raise
        if written:
            yield ShardInfo("images", rel, *written)
        yield pvalue.TaggedOutput(COUNTS, dict(counts))

    def _source(self, source: str, counts: Counter[str]) -> Iterator[Any]:
        try:
            for fetched in read_source(source, ours=fetched_by(self.out, source)):
                counts["input"] += 1
                if isinstance(fetched, Failed):  # one sample of the source could not be read
                    counts["failed"] += 1
                    yield pvalue.TaggedOutput(FAILED, fetched)
                    continue
                for outcome in self.filter.outcomes(fetched):
                    tag = outcome.tag if isinstance(outcome, pvalue.TaggedOutput) else R.KEPT
                    counts[outcome.value.reason if tag == REJECTED else tag] += 1
                    yield outcome
        except Exception as e:  # noqa: BLE001 - an unreadable source is a dead letter, not a failed run
            counts["unreadable_sources"] += 1
            Metrics.counter(STAGE, "unreadable_sources").inc()
            yield dead_letter(STAGE, url_key(source), source, e)


def _identify(fetched: FetchedImage) -> tuple[str, str]:
    return fetched.ref.key, fetched.ref.url


def _describe(sources: int, skipped: dict[str, int]) -> Any:
    """The funnel; files of an input folder skipped by name (not an image or .tar suffix) are sources rejected
    as `unsupported_format`, their suffixes in `skipped_by_name`."""
    by_name = sum(skipped.values())

    def describe(shards: list[Any], counts: dict[str, int]) -> dict[str, Any]:
        others = ("input", R.KEPT, "failed", "unreadable_sources")
        rejected = {k: v for k, v in sorted(counts.items()) if k not in others}
        unreadable = counts.get("unreadable_sources", 0)
        return {"funnel": {
            "images": {"input": counts.get("input", 0), "kept": counts.get(R.KEPT, 0), "rejected": rejected,
                       "failed": counts.get("failed", 0)},
            "sources": {"input": sources + by_name, "kept": sources - unreadable,
                        "rejected": {R.UNSUPPORTED_FORMAT: by_name} if by_name else {}, "failed": unreadable}},
            **({"skipped_by_name": dict(sorted(skipped.items()))} if skipped else {})}
    return describe


def build(p: beam.Pipeline, sources: list[str], out: str, config: Config, skipped: dict[str, int] | None = None) -> None:
    parts = split_parts(sources, config.extract.shards)
    results = (p | "Parts" >> DriverList(parts, out, STAGE, from_json=tuple) | "Spread" >> beam.Reshuffle()
               | "Progress" >> beam.ParDo(Progress(STAGE, "parts", len(parts), out))
               | "Decode" >> beam.ParDo(DecodePart(out, config, len(parts))).with_outputs(
                   REJECTED, FAILED, COUNTS, main="images"))
    other = ((results[REJECTED], results[FAILED])
             | "WriteRejects" >> WriteRejectsAndFailures(out, STAGE, config.extract.shards))
    counts = results[COUNTS] | "SumCounts" >> beam.CombineGlobally(sum_counts)
    all_shards = (results.images, other) | "Shards" >> CollectShards(out)
    _ = all_shards | "Manifest" >> beam.ParDo(
        WriteManifest(DECODE_STAGE, out, _inputs(sources, skipped), DECODE_STAGE.digest(out, config),
                      _describe(len(sources), skipped or {})),
        beam.pvalue.AsSingleton(counts))


def _inputs(sources: list[str], skipped: dict[str, int] | None) -> list[str]:
    """What the manifest records of the inputs: the sources, and the skipped files' count by suffix."""
    return sources + [f"skipped {suffix}: {n}" for suffix, n in sorted((skipped or {}).items())]


def run(sources: list[str], out: str, config: Config, beam_args: Sequence[str] = (), force: bool = False,
        skipped: dict[str, int] | None = None) -> dict:
    """Decode `sources`; `skipped` (suffix -> files, from `list_sources`) is counted in the sources funnel."""
    return DECODE_STAGE.run(out, config, beam_args, _inputs(sources, skipped),
                            lambda p: build(p, sources, out, config, skipped), force)
