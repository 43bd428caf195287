"""Write: the images that survived every filter -> OUT/shards (WebDataset tar + Parquet per shard, curate/shards.py).

Graph: dedup's survivors, the text stage's kept rows (when the text stage ran) and the image rows join on key
(CoGroupByKey; an image row carries where its bytes are, not the bytes) -> every final key gets its global
rank in key order without one worker holding the key list: keys are counted per 3-hex-digit prefix (4096
buckets; the counts are a small side input), each bucket is sorted on its own and offset by the counts of
the buckets before it -> ranks join the rows -> shard index = rank // samples_per_shard, so shards are
numbered without gaps and each holds exactly samples_per_shard samples but the last -> the placed samples
are grouped by the OUT/images row group that holds their bytes, which is read once to attach them (the
bytes' only shuffle is the next one) -> each shard's tar and Parquet are written whole under a temporary
name, renamed, and checked; the manifest lists every shard with its samples, bytes and SHA-256.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate
from typing import Any

import apache_beam as beam
import fsspec
import pyarrow.parquet as pq

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
    Progress,
    ReadImageRefs,
    WriteRejectsAndFailures,
    dead_letter,
    read_image_data,
)
from curate.pipelines.stage import Stage, WriteManifest
from curate.shards import DATASET_CARD, parquet_shard, picture_member, shard_stats, tar_bytes

STAGE = R.WRITE
WRITE_STAGE = Stage(STAGE, "shards", sections=("extract", "shards"), upstream=("images", "dedup", "text"),
              clears=("shards", f"failed/{STAGE}-*"), fed_by=("text", "dedup"))
PREFIX = 3  # hex digits: 4096 rank buckets


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


def _offsets(counts: list[tuple[str, int]]) -> dict[str, int]:
    """Each prefix bucket's first global rank: the keys of the buckets before it."""
    ordered = sorted(counts)
    starts = [0, *accumulate(n for _, n in ordered)]
    return {prefix: start for (prefix, _), start in zip(ordered, starts[:-1], strict=True)}


def _ranks(element: tuple[str, Iterable[str]], offsets: dict[str, int]) -> Iterator[tuple[str, int]]:
    prefix, keys = element
    for i, key in enumerate(sorted(keys)):
        yield key, offsets[prefix] + i


def _place(samples_per_shard: int):
    def place(element: tuple[str, dict[str, list[Any]]]) -> Iterator[tuple[int, tuple[int, dict[str, Any]]]]:
        _, joined = element
        rank, row = joined["rank"][0], joined["row"][0]
        yield rank // samples_per_shard, (rank, row)
    return place


class AttachBytes(beam.DoFn):
    """The placed samples of one OUT/images row group, with their picture bytes read from it (once)."""

    def process(self, element: tuple[tuple[str, int], Iterable[tuple[int, tuple[int, dict[str, Any]]]]]
                ) -> Iterator[tuple[int, tuple[int, dict[str, Any]]]]:
        (url, group), placed = element
        data = read_image_data(url, group)
        for index, (rank, row) in placed:
            sample = {k: v for k, v in row.items() if k not in REF_FIELDS}
            yield index, (rank, {**sample, "data": data[row["row"]].as_py()})


class WriteShard(beam.DoFn):
    """One final shard: its tar, its Parquet file and its img2dataset-style `_stats.json`."""

    def __init__(self, out: str, config: ShardConfig):
        self.out, self.config = out, config

    def process(self, element: tuple[int, Iterable[tuple[int, dict[str, Any]]]]) -> Iterator[ShardInfo]:
        index, ranked = element
        samples = [picture_member(row, self.config.image_member, shown_jpeg)
                   for _, row in sorted(ranked, key=lambda rr: rr[0])]
        name = shard_name(index)
        for file, data in ((f"{name}.tar", tar_bytes(samples)),
                           (f"{name}.parquet", parquet_shard(samples, self.config.parquet_images)),
                           (f"{name}_stats.json", shard_stats(samples))):
            rel = join("shards", file)
            size, digest = atomic_write(join(self.out, rel), data)
            yield ShardInfo("shards", rel, len(samples), size, digest)


def _write_card(out: str) -> Iterator[ShardInfo]:
    rel = join("shards", "README.md")
    size, digest = atomic_write(join(out, rel), DATASET_CARD.encode())
    yield ShardInfo("shards", rel, 0, size, digest)


def _describe(samples_per_shard: int) -> Any:
    def describe(shards: list[ShardInfo], n_input: int, n_failed: int) -> dict[str, Any]:
        tars = [s for s in shards if s.path.endswith(".tar")]
        written = sum(s.rows for s in tars)
        return {"samples": written, "samples_per_shard": samples_per_shard, "shards": len(tars),
                "funnel": {"images": {"input": n_input, "kept": written, "rejected": {}, "failed": n_failed}}}
    return describe


def build(p: beam.Pipeline, out: str, config: Config, images: list[str], dedup: list[str], text: list[str],
          inputs: list[str]) -> None:
    per_shard, scored = config.shards.samples_per_shard, bool(text)
    upstream = read_json(join(out, "text" if text else "dedup", MANIFEST)) or {}
    total = -(-upstream.get("funnel", {}).get("images", {}).get("kept", 0) // per_shard)  # for progress only
    kept = (p | "DedupFiles" >> beam.Create(dedup) | "ReadDedup" >> beam.ParDo(
        ReadRows(["key", "reason", "cluster", "cluster_size"], kept_only=True))
        | "DupInfo" >> beam.Map(lambda kr: (kr[0], {"cluster": kr[1]["cluster"], "cluster_size": kr[1]["cluster_size"]})))
    text_rows = p | "TextFiles" >> beam.Create(text) | "ReadText" >> beam.ParDo(ReadRows())
    text_kept = text_rows | "TextKept" >> beam.Filter(lambda kr: kr[1]["reason"] == R.KEPT)
    text_seen = text_rows | "TextSeen" >> beam.Map(lambda kr: (kr[0], True))
    rows = (p | "ImageFiles" >> beam.Create(images) | "SpreadImages" >> beam.Reshuffle()
            | "ReadImageRefs" >> beam.ParDo(ReadImageRefs()))
    final = ({"dedup": kept, "text": text_kept, "text_seen": text_seen, "image": rows} | "Join" >> beam.CoGroupByKey()
             | "Final" >> beam.FlatMap(_final(scored)).with_outputs(FAILED, main="rows"))
    keys = final.rows | "Keys" >> beam.Keys()
    counts = (keys | "Prefix" >> beam.Map(lambda k: (k[:PREFIX], 1)) | "PerPrefix" >> beam.CombinePerKey(sum)
              | "AllPrefixes" >> beam.combiners.ToList() | "Offsets" >> beam.Map(_offsets))
    ranks = (keys | "ByPrefix" >> beam.Map(lambda k: (k[:PREFIX], k)) | "Buckets" >> beam.GroupByKey()
             | "Rank" >> beam.FlatMap(_ranks, beam.pvalue.AsSingleton(counts)))
    placed = ({"rank": ranks, "row": final.rows} | "JoinRanks" >> beam.CoGroupByKey()
              | "Place" >> beam.FlatMap(_place(per_shard))
              | "ByRowGroup" >> beam.Map(lambda e: ((e[1][1]["file"], e[1][1]["group"]), e))
              | "RowGroups" >> beam.GroupByKey() | "AttachBytes" >> beam.ParDo(AttachBytes()))
    written = (placed | "ByShard" >> beam.GroupByKey()
               | "Progress" >> beam.ParDo(Progress(STAGE, "shards", total))
               | "Write" >> beam.ParDo(WriteShard(out, config.shards)))
    card = p | "CardOnce" >> beam.Create([out]) | "Card" >> beam.FlatMap(_write_card)
    no_rejects = p | "NoRejects" >> beam.Create([])
    other = (no_rejects, final[FAILED]) | "WriteFailures" >> WriteRejectsAndFailures(out, STAGE, config.extract.shards)
    n_input = ((final.rows, final[FAILED]) | "Candidates" >> beam.Flatten()
               | "CountInput" >> beam.combiners.Count.Globally())
    n_failed = final[FAILED] | "CountFailed" >> beam.combiners.Count.Globally()
    all_shards = (written, card, other) | "Shards" >> CollectShards(out)
    _ = all_shards | "Manifest" >> beam.ParDo(
        WriteManifest(WRITE_STAGE, out, inputs, WRITE_STAGE.digest(out, config), _describe(per_shard)),
        beam.pvalue.AsSingleton(n_input), beam.pvalue.AsSingleton(n_failed))


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
