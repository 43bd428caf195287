"""Write: the images that survived every filter -> OUT/shards (WebDataset tar + Parquet per shard, curate/shards.py).

Graph: dedup's survivors, the text stage's kept rows (when the text stage ran) and the image rows join on key
(CoGroupByKey; an image row carries where its bytes are, not the bytes) -> the survivors are grouped by the
OUT/images file that holds them (references only, ~1 kB a picture) and put in that file's order (row group,
row); each file's survivor count goes to a small side input, which gives each file the position of its first
survivor among all the files' survivors (files in URL order) -> a survivor's position // samples_per_shard
is its shard, so a shard is a run of consecutive survivors of one or a few consecutive files, shards are
numbered without gaps and each holds exactly samples_per_shard samples but the last -> the references are
grouped by shard, and each shard's writer reads the picture bytes itself, one OUT/images row group at a
time, for its own samples only: image bytes never go through a shuffle, and a worker holds one shard's
pictures at most, however big the job. Inside a shard, samples are in key order. The same inputs give the
same shards, byte for byte, on every runner.

Shards are not in global key order (that takes a shuffle of every survivor's bytes): each shard's first and
last key are in the manifest (`key_ranges`), and OUT/index/keys-*.parquet maps every written key to its
shard and place in it, the key's file being `curate.io.shard_of(key, n)` as for every stage table, so a
lookup by key reads one index file and one shard (`curate.shards.locate`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate
from typing import Any

import apache_beam as beam
import fsspec
import pyarrow.parquet as pq
from apache_beam import pvalue

from curate import reasons as R
from curate.config import Config, ShardConfig
from curate.imaging import shown_jpeg
from curate.io import (
    MANIFEST,
    ShardInfo,
    atomic_write,
    join,
    parquet_files,
    read_json,
    shard_name,
)
from curate.pipelines.common import (
    FAILED,
    REF_FIELDS,
    CollectShards,
    DriverList,
    Progress,
    ReadImageRefs,
    WriteParquetShards,
    WriteRejectsAndFailures,
    dead_letter,
    read_image_data,
)
from curate.pipelines.stage import Stage, WriteManifest
from curate.shards import DATASET_CARD, parquet_shard, picture_member, shard_stats, tar_bytes
from curate.tables import KEY_INDEX_SCHEMA, PICTURE, PROVENANCE

STAGE = R.WRITE
WRITE_STAGE = Stage(STAGE, "shards", sections=("extract", "shards"), upstream=("images", "dedup", "text"),
              clears=("shards", "index", f"failed/{STAGE}-*"), fed_by=("text", "dedup"))
KEY_RANGE, PLACES = "key_range", "places"  # WriteShard's tagged outputs
# What a sample takes from its OUT/images row (not the keypoints nor the thumbnail, ~30 kB a picture that
# would otherwise ride through the joins and the grouping by shard).
SAMPLE_COLUMNS = ["key", "url", *PICTURE, *PROVENANCE]


class ReadRows(beam.DoFn):
    """(key, row) of a Parquet file; with `kept_only`, only rows whose reason is kept."""

    def __init__(self, columns: list[str] | None = None, kept_only: bool = False):
        self.columns, self.kept_only = columns, kept_only

    def process(self, url: str) -> Iterator[tuple[str, dict[str, Any]]]:
        with fsspec.open(url, "rb") as fh:
            for row in pq.read_table(fh, columns=self.columns).to_pylist():
                if not self.kept_only or row["reason"] == R.KEPT:
                    yield row["key"], row


def _final(scored: bool):
    def final(element: tuple[str, dict[str, list[dict[str, Any]]]]) -> Iterator[Any]:
        """A survivor's joined row; a key dedup or the text filter dropped yields nothing (counted there)."""
        key, joined = element
        survived = bool(joined["dedup"]) and (not scored or bool(joined["text"]))
        if joined["dedup"] and scored and not joined["text_seen"]:
            yield dead_letter(STAGE, key, "", "IntegrityError: no text score for a dedup survivor")
        elif survived and not joined["image"]:
            yield dead_letter(STAGE, key, "", "IntegrityError: no image row for a survivor")
        elif survived:
            row = {**joined["image"][0], **joined["dedup"][0]}
            if scored:
                text = joined["text"][0]
                row.update({k: v for k, v in text.items() if k.startswith("text_") or k in ("light", "heavy")})
            yield key, row
    return final


def _by_file(element: tuple[str, dict[str, Any]]) -> tuple[str, tuple[int, int, str, dict[str, Any]]]:
    key, row = element
    return row["file"], (row["group"], row["row"], key, row)


def _in_file_order(element: tuple[str, Iterable[tuple[int, int, str, dict[str, Any]]]]
                   ) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """One OUT/images file's survivors in the file's own order (row group, then row)."""
    file, rows = element
    return file, [(key, row) for _, _, key, row in sorted(rows, key=lambda r: (r[0], r[1]))]


def _starts(counts: list[tuple[str, int]]) -> dict[str, int]:
    """Each OUT/images file's first survivor's position among all the survivors, files in URL order."""
    ordered = sorted(counts)
    firsts = [0, *accumulate(n for _, n in ordered)]
    return {file: first for (file, _), first in zip(ordered, firsts[:-1], strict=True)}


def _place(samples_per_shard: int):
    def place(element: tuple[str, list[tuple[str, dict[str, Any]]]], starts: dict[str, int]
              ) -> Iterator[tuple[int, tuple[str, dict[str, Any]]]]:
        file, rows = element
        for i, (key, row) in enumerate(rows):
            yield (starts[file] + i) // samples_per_shard, (key, row)
    return place


class WriteShard(beam.DoFn):
    """One final shard: its tar, its Parquet file and its img2dataset-style `_stats.json`, with the picture
    bytes read here, one OUT/images row group at a time; its key range (tagged KEY_RANGE) and each sample's
    place in it (tagged PLACES)."""

    def __init__(self, out: str, config: ShardConfig):
        self.out, self.config = out, config

    def process(self, element: tuple[int, Iterable[tuple[str, dict[str, Any]]]]) -> Iterator[Any]:
        index, placed = element
        rows = sorted(placed, key=lambda kr: kr[0])
        by_group: dict[tuple[str, int], list[int]] = {}
        for i, (_, row) in enumerate(rows):
            by_group.setdefault((row["file"], row["group"]), []).append(i)
        samples: list[dict[str, Any]] = [{} for _ in rows]
        for (url, group), members in sorted(by_group.items()):
            data = read_image_data(url, group)
            for i in members:
                row = rows[i][1]
                sample = {k: v for k, v in row.items() if k not in REF_FIELDS}
                samples[i] = picture_member({**sample, "data": data[row["row"]].as_py()}, self.config.image_member,
                                            shown_jpeg)
            del data
        name = shard_name(index)
        for file, data in ((f"{name}.tar", tar_bytes(samples)),
                           (f"{name}.parquet", parquet_shard(samples, self.config.parquet_images)),
                           (f"{name}_stats.json", shard_stats(samples))):
            rel = join("shards", file)
            size, digest = atomic_write(join(self.out, rel), data)
            yield ShardInfo("shards", rel, len(samples), size, digest)
        yield pvalue.TaggedOutput(KEY_RANGE, (name, rows[0][0], rows[-1][0]))
        for place, (key, _) in enumerate(rows):
            yield pvalue.TaggedOutput(PLACES, {"key": key, "shard": name, "place": place})


def _write_card(out: str) -> Iterator[ShardInfo]:
    rel = join("shards", "README.md")
    size, digest = atomic_write(join(out, rel), DATASET_CARD.encode())
    yield ShardInfo("shards", rel, 0, size, digest)


def _describe(samples_per_shard: int) -> Any:
    def describe(shards: list[ShardInfo], n_input: int, n_failed: int, ranges: list[tuple[str, str, str]]
                 ) -> dict[str, Any]:
        tars = [s for s in shards if s.path.endswith(".tar")]
        written = sum(s.rows for s in tars)
        return {"samples": written, "samples_per_shard": samples_per_shard, "shards": len(tars),
                "index_files": len([s for s in shards if s.table == "index"]),
                "key_ranges": {name: [first, last] for name, first, last in sorted(ranges)},
                "funnel": {"images": {"input": n_input, "kept": written, "rejected": {}, "failed": n_failed}}}
    return describe


def build(p: beam.Pipeline, out: str, config: Config, images: list[str], dedup: list[str], text: list[str],
          inputs: list[str]) -> None:
    per_shard, scored = config.shards.samples_per_shard, bool(text)
    upstream = read_json(join(out, "text" if text else "dedup", MANIFEST)) or {}
    total = -(-upstream.get("funnel", {}).get("images", {}).get("kept", 0) // per_shard)  # for progress only
    kept = (p | "DedupFiles" >> DriverList(dedup, out, f"{STAGE}/dedup") | "ReadDedup" >> beam.ParDo(
        ReadRows(["key", "reason", "cluster", "cluster_size"], kept_only=True))
        | "DupInfo" >> beam.Map(lambda kr: (kr[0], {"cluster": kr[1]["cluster"], "cluster_size": kr[1]["cluster_size"]})))
    text_rows = p | "TextFiles" >> DriverList(text, out, f"{STAGE}/text") | "ReadText" >> beam.ParDo(ReadRows())
    text_kept = text_rows | "TextKept" >> beam.Filter(lambda kr: kr[1]["reason"] == R.KEPT)
    text_seen = text_rows | "TextSeen" >> beam.Map(lambda kr: (kr[0], True))
    rows = (p | "ImageFiles" >> DriverList(images, out, f"{STAGE}/images") | "SpreadImages" >> beam.Reshuffle()
            | "ReadImageRefs" >> beam.ParDo(ReadImageRefs(SAMPLE_COLUMNS)))
    final = ({"dedup": kept, "text": text_kept, "text_seen": text_seen, "image": rows} | "Join" >> beam.CoGroupByKey()
             | "Final" >> beam.FlatMap(_final(scored)).with_outputs(FAILED, main="rows"))
    files = (final.rows | "ByFile" >> beam.Map(_by_file) | "Files" >> beam.GroupByKey()
             | "InFileOrder" >> beam.Map(_in_file_order))
    starts = (files | "Count" >> beam.Map(lambda fr: (fr[0], len(fr[1]))) | "AllFiles" >> beam.combiners.ToList()
              | "Starts" >> beam.Map(_starts))
    written = (files | "Place" >> beam.FlatMap(_place(per_shard), beam.pvalue.AsSingleton(starts))
               | "ByShard" >> beam.GroupByKey()
               | "Progress" >> beam.ParDo(Progress(STAGE, "shards", total, out))
               | "Write" >> beam.ParDo(WriteShard(out, config.shards)).with_outputs(KEY_RANGE, PLACES, main="shards"))
    index = written[PLACES] | "WriteIndex" >> WriteParquetShards(
        out, "index", "keys", KEY_INDEX_SCHEMA, lambda place: place, lambda place: place["key"],
        config.extract.shards)
    ranges = written[KEY_RANGE] | "KeyRanges" >> beam.combiners.ToList()
    card = p | "CardOnce" >> beam.Create([out]) | "Card" >> beam.FlatMap(_write_card)
    no_rejects = p | "NoRejects" >> beam.Create([])
    other = (no_rejects, final[FAILED]) | "WriteFailures" >> WriteRejectsAndFailures(out, STAGE, config.extract.shards)
    n_input = ((final.rows, final[FAILED]) | "Candidates" >> beam.Flatten()
               | "CountInput" >> beam.combiners.Count.Globally())
    n_failed = final[FAILED] | "CountFailed" >> beam.combiners.Count.Globally()
    all_shards = (written.shards, index, card, other) | "Shards" >> CollectShards(out)
    _ = all_shards | "Manifest" >> beam.ParDo(
        WriteManifest(WRITE_STAGE, out, inputs, WRITE_STAGE.digest(out, config), _describe(per_shard)),
        beam.pvalue.AsSingleton(n_input), beam.pvalue.AsSingleton(n_failed), beam.pvalue.AsSingleton(ranges))


def _optional_files(out: str, folder: str) -> list[str]:
    fs, path = fsspec.core.url_to_fs(join(out, folder))
    return [fs.unstrip_protocol(f) for f in sorted(fs.glob(f"{path}/*.parquet"))]


def run(out: str, config: Config, beam_args: Sequence[str] = (), force: bool = False) -> dict[str, Any]:
    """Write the final shards from OUT/images, OUT/dedup and (when the text stage ran) OUT/text."""
    images = parquet_files(out, "images", f"no images under {join(out, 'images')}: run `curate filter` first")
    dedup = parquet_files(out, "dedup", f"no dedup decisions under {join(out, 'dedup')}: run `curate filter` first")
    text = _optional_files(out, "text") if read_json(join(out, "text", MANIFEST)) else []
    inputs = images + dedup + text
    return WRITE_STAGE.run(out, config, beam_args, inputs,
                           lambda p: build(p, out, config, images, dedup, text, inputs), force)
