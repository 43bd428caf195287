"""Dedup: OUT/images -> OUT/dedup (one decision per image: kept, duplicate or near_duplicate, with its
cluster, the cluster's size and the survivor it duplicates), rejects for the dropped, the manifest and the
funnel. The rules and the distributed clustering live in filters/dedup.py."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
import fsspec
import pyarrow.parquet as pq

from curate import __version__
from curate import reasons as R
from curate.config import Config
from curate.filters.dedup import Decision, Deduplicate, ExclusionIndex, Node, load_exclusions
from curate.io import MANIFEST, WriteParquetShards, join, manifest_tables, parquet_files, read_json, remove, write_json
from curate.pipelines.common import CollectShards, WriteRejectsAndFailures, finish_stage, pipeline_options, stage_digest
from curate.records import Rejected
from curate.tables import DECISION_SCHEMA

STAGE = R.DEDUP
COLUMNS = ["key", "url", "sha256", "pixel_hash", "phash", "width", "height", "crawl_date"]


def image_files(out: str) -> list[str]:
    return parquet_files(out, "images", f"no images under {join(out, 'images')}: run `curate filter --output {out}` first")


class ReadNodes(beam.DoFn):
    """Only the columns dedup needs: the image bytes stay on disk."""

    def process(self, url: str) -> Iterator[tuple[Node, str]]:
        with fsspec.open(url, "rb") as fh:
            for r in pq.read_table(fh, columns=COLUMNS).to_pylist():
                node = Node(r["key"], r["sha256"], r["pixel_hash"], r["phash"], r["width"] * r["height"],
                            r["crawl_date"] or "")
                yield node, r["url"]


def _reject(element: tuple[str, dict[str, Any]]) -> Iterator[Rejected]:
    key, joined = element
    decision = next(iter(joined["decision"]))
    if decision.reason != R.KEPT:
        url = next(iter(joined["url"]), "")
        what = "near-duplicate of excluded hash" if decision.reason == R.EVAL_OVERLAP else "duplicate of"
        yield Rejected(key, url, STAGE, decision.reason, f"{what} {decision.dup_of}")


class _WriteManifest(beam.DoFn):
    def __init__(self, out: str, inputs: list[str], digest: str):
        self.out, self.inputs, self.digest = out, inputs, digest

    def process(self, shards: list[Any], counts: dict[str, int], unsettled: int) -> Iterator[None]:
        tables = manifest_tables(shards)
        funnel = {"images": {"input": sum(counts.values()), "kept": counts.get(R.KEPT, 0),
                             "rejected": {k: v for k, v in counts.items() if k != R.KEPT}, "failed": 0}}
        write_json(join(self.out, "dedup", MANIFEST), {
            "stage": STAGE, "complete": unsettled == 0, "unsettled": unsettled, "curate_version": __version__,
            "config_digest": self.digest, "inputs": self.inputs, "tables": tables, "funnel": funnel})
        yield None


class _Exclude(beam.DoFn):
    """Decontamination: near-duplicates of the evaluation set leave here, before clustering."""

    def __init__(self, hashes: list[int], radius: int, spare: int):
        self.hashes, self.radius, self.spare = hashes, radius, spare

    def setup(self) -> None:
        self.index = ExclusionIndex(self.hashes, self.radius, self.spare)

    def process(self, node: Node) -> Iterator[Any]:
        match = self.index.nearest(node.phash)
        if match is None:
            yield node
        else:
            yield beam.pvalue.TaggedOutput("excluded", Decision(node.key, R.EVAL_OVERLAP, node.key, 1, f"{match:016x}"))


def build(p: beam.Pipeline, files: list[str], out: str, config: Config, exclude: list[int] | None = None,
          inputs: list[str] | None = None) -> None:
    dd, shards = config.dedup, config.extract.shards
    read = p | "ImageFiles" >> beam.Create(files) | "Spread" >> beam.Reshuffle() | "Read" >> beam.ParDo(ReadNodes())
    nodes = read | "Nodes" >> beam.Map(lambda nu: nu[0])
    checked = nodes | "Exclude" >> beam.ParDo(_Exclude(exclude or [], dd.hamming_radius, dd.band_spare)).with_outputs(
        "excluded", main="nodes")
    clustered, unsettled = checked.nodes | "Dedup" >> Deduplicate(dd.hamming_radius, dd.rounds, dd.band_spare, dd.near)
    decisions = (clustered, checked.excluded) | "AllDecisions" >> beam.Flatten()
    written = decisions | "WriteDecisions" >> WriteParquetShards(
        out, "dedup", "dedup", DECISION_SCHEMA, Decision._asdict, lambda d: d.key, shards)
    urls = read | "Urls" >> beam.Map(lambda nu: (nu[0].key, nu[1]))
    rejects = ({"decision": decisions | "ByKey" >> beam.Map(lambda d: (d.key, d)), "url": urls}
               | "JoinUrls" >> beam.CoGroupByKey() | "Rejects" >> beam.FlatMap(_reject))
    no_dead_letters = p | "NoDeadLetters" >> beam.Create([])
    other = (rejects, no_dead_letters) | "WriteRejects" >> WriteRejectsAndFailures(out, STAGE, shards)
    counts = (decisions | "Reasons" >> beam.Map(lambda d: d.reason) | "PerReason" >> beam.combiners.Count.PerElement()
              | "Pairs" >> beam.combiners.ToList() | "Tally" >> beam.Map(lambda pairs: dict(sorted(pairs))))
    n_unsettled = unsettled | "CountUnsettled" >> beam.combiners.Count.Globally()
    all_shards = (written, other) | "Shards" >> CollectShards(out)
    _ = all_shards | "Manifest" >> beam.ParDo(_WriteManifest(out, inputs or files, stage_digest(out, config, STAGE)),
                                              beam.pvalue.AsSingleton(counts), beam.pvalue.AsSingleton(n_unsettled))


def run(out: str, config: Config, beam_args: Sequence[str] = (), force: bool = False,
        exclude_near: str | None = None) -> dict[str, Any]:
    """Decide every image of OUT/images; `exclude_near` (a folder of images or a hash list) drops the
    near-duplicates of an evaluation set as eval_overlap."""
    files = image_files(out)
    exclude = load_exclusions(exclude_near, config.dedup.hamming_radius) if exclude_near else []
    digest = hashlib.sha256(",".join(f"{h:016x}" for h in exclude).encode()).hexdigest()[:16]
    inputs = files + ([f"exclude:{len(exclude)} hashes:{digest}"] if exclude else [])
    manifest = read_json(join(out, "dedup", MANIFEST))
    if (not force and manifest and manifest.get("complete") and manifest.get("inputs") == inputs
            and manifest.get("config_digest") == stage_digest(out, config, STAGE)):
        return {**manifest, "skipped": True}
    for stale in (join(out, "dedup"), join(out, "rejects", f"{STAGE}-*")):
        remove(stale)
    with beam.Pipeline(options=pipeline_options(beam_args)) as p:
        build(p, files, out, config, exclude, inputs)
    written = read_json(join(out, "dedup", MANIFEST)) or {}
    if written.get("unsettled"):
        from curate.errors import IntegrityError

        raise IntegrityError(f"dedup: {written['unsettled']} images still disagree with a neighbour after "
                             f"{config.dedup.rounds} rounds; raise dedup.rounds")
    return finish_stage(out, STAGE, "dedup", config)
