"""Dedup: OUT/images -> OUT/dedup (one decision per image: kept, duplicate or near_duplicate, with its
cluster, the cluster's size and the survivor it duplicates), rejects for the dropped, the manifest and the
funnel. The rules live in curate/filters/dedup.py; the distributed clustering (`Deduplicate`) is here."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import fsspec
import pyarrow.parquet as pq

from curate import keypoints
from curate import reasons as R
from curate.config import Config
from curate.errors import InputError
from curate.filters.dedup import (
    Decision,
    ExclusionIndex,
    Label,
    Node,
    bucket_pairs,
    check_exclusions,
    decide,
    label,
    load_exclusions,
    star,
)
from curate.hashing import band_keys
from curate.io import MANIFEST, atomic_write, join, parquet_files, read_json, remove
from curate.pipelines.common import (
    CollectShards,
    DriverList,
    TallyReasons,
    WriteParquetShards,
    WriteRejectsAndFailures,
)
from curate.pipelines.stage import Stage, WriteManifest
from curate.records import Rejected
from curate.tables import DECISION_SCHEMA

STAGE = R.DEDUP
DEDUP_STAGE = Stage(STAGE, "dedup", sections=("extract", "dedup"), upstream=("images",),
                    clears=("dedup", f"rejects/{STAGE}-*"), fed_by=("images",))
COLUMNS = ["key", "url", "sha256", "pixel_hash", "phash", "width", "height", "crawl_date"]


def image_files(out: str) -> list[str]:
    return parquet_files(out, "images", f"no images under {join(out, 'images')}: run `curate filter --output {out}` first")


class ReadNodes(beam.DoFn):
    """Only the columns dedup needs: the image bytes stay on disk. Elements: (index of the file in
    `image_files` order, its URL). With `partitions` (keypoint matching on), each picture's visual words also
    go out, tagged "words", one element per partition they fall in, with its place (`place`), tagged
    "places" as (place, key), and its thumbnail, tagged "thumbnails", except for a picture that
    decontamination will drop (`exclude`: it must join no cluster)."""

    def __init__(self, partitions: int = 0, exclude: tuple[list[int], int, int] = ([], 0, 0)):
        self.partitions, self.exclude = partitions, exclude

    def setup(self) -> None:
        self.index = ExclusionIndex(*self.exclude)

    def process(self, element: tuple[int, str]) -> Iterator[Any]:
        index, url = element
        with fsspec.open(url, "rb") as fh:
            table = pq.ParquetFile(fh)
            words = self.partitions and {"features", "thumbnail"} <= set(table.schema_arrow.names)
            rows = table.read(columns=COLUMNS + (["features", "thumbnail"] if words else [])).to_pylist()
            for row, r in enumerate(rows):
                node = Node(r["key"], r["sha256"], r["pixel_hash"], r["phash"], r["width"] * r["height"],
                            r["crawl_date"] or "")
                yield node, r["url"]
                if words and r["features"] and r["thumbnail"] and self.index.nearest(node.phash) is None:
                    where = place(index, row)
                    for part in keypoints.by_partition(r["key"], r["features"], self.partitions, where):
                        yield beam.pvalue.TaggedOutput("words", part)
                    yield beam.pvalue.TaggedOutput("places", (where, r["key"]))
                    yield beam.pvalue.TaggedOutput("thumbnails", (r["key"], r["thumbnail"]))


def place(file_index: int, row: int) -> int:
    """A picture's place, a 64-bit number that names it among its partners: its OUT/images file (the index in
    `image_files` order) and its row there."""
    return file_index << 32 | row


def _both_ways(edge: tuple[str, str]) -> Iterator[tuple[str, str]]:
    a, b = edge
    yield a, b
    yield b, a


def _geometry(element: tuple[str, Iterable]) -> Iterator[tuple[int, tuple[str, tuple]]]:
    """The candidate pairs of a picture (with the pictures after it) that pass the geometric check:
    (partner's place, (key, fit))."""
    key, parts = element
    for partner, found in keypoints.pairs_of(parts):
        if keypoints.accepts(found):
            yield partner, (key, found.fit)


def _named(element: tuple[int, dict[str, Iterable]]) -> Iterator[tuple[str, tuple]]:
    """A partner's key for its place: each checked pair once for each end, (key, ((key, partner key), fit))."""
    _, joined = element
    for partner in joined["key"]:  # one key a place
        for key, fit in joined["pair"]:
            pair = (key, partner)
            yield key, (pair, fit)
            yield partner, (pair, fit)


def _to_pairs(element: tuple[str, dict[str, Iterable]]) -> Iterator[tuple[tuple[str, str], tuple]]:
    key, joined = element
    thumbnail = next(iter(joined["thumbnail"]), b"")
    for pair, fit in joined["pair"]:
        yield pair, (key, thumbnail, fit)


def _looks_same(element: tuple[tuple[str, str], Iterable]) -> Iterator[tuple[str, str]]:
    """The photometric check of a pair that passed the geometric one, given both ends' thumbnails."""
    (a, b), ends = element
    seen = {key: (thumbnail, fit) for key, thumbnail, fit in ends}  # the fit is the pair's, the same at both
    if a in seen and b in seen and seen[a][0] and seen[b][0] and keypoints.different(
            seen[a][0], seen[b][0], seen[a][1]) <= keypoints.MAX_DIFFERENT:
        yield a, b


def _messages(element: tuple[str, dict[str, Iterable]]) -> Iterator[tuple[str, Label]]:
    key, joined = element
    best = min(joined["label"])
    yield key, best
    for neighbour in joined["edges"]:
        yield neighbour, best


def _propagate(labels: beam.PCollection, edges: beam.PCollection, round_: int) -> beam.PCollection:
    return (
        {"label": labels, "edges": edges}
        | f"Join{round_}" >> beam.CoGroupByKey()
        | f"Send{round_}" >> beam.FlatMap(_messages)
        | f"Min{round_}" >> beam.CombinePerKey(min)
    )


def _unsettled(element: tuple[str, dict[str, Iterable]]) -> Iterator[str]:
    """Keys whose neighbours' labels differ from theirs (after the last round)."""
    key, joined = element
    mine = min(joined["label"])
    for theirs in joined["neighbour_labels"]:
        if theirs != mine:
            yield key


class _Decide(beam.DoFn):
    def process(self, element: tuple[tuple, dict[str, Iterable]]) -> Iterator[Decision]:
        _, joined = element
        yield from decide(list(joined["members"]))


class Deduplicate(beam.PTransform):
    """Clusters as keyed Beam steps (edges by GroupByKey on SHA-256, pixel hash and each band key, and, given
    the pictures' `words`, `places` and `thumbnails` (ReadNodes), keypoint pairs checked by curate.keypoints,
    first geometrically, then, the partners' keys joined by place, on the thumbnails joined by key; connected
    components by min-label propagation, unrolled for `rounds` rounds, each a CoGroupByKey and a CombinePerKey,
    then checked: an edge whose ends still disagree means the rounds were too few, and the stage fails loudly
    rather than guess).

    PCollection[Node] -> (PCollection[Decision] for every node, PCollection[str] unsettled keys).

    The second output must be empty: if not, the components needed more than `rounds` rounds."""

    def __init__(self, radius: int, rounds: int = 12, spare: int = 1, near: bool = True,
                 words: beam.PCollection | None = None, places: beam.PCollection | None = None,
                 thumbnails: beam.PCollection | None = None):
        super().__init__()
        self.radius, self.rounds, self.spare, self.near, self.words = radius, rounds, spare, near, words
        self.places, self.thumbnails = places, thumbnails

    def expand(self, nodes: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        by_bytes = (nodes | "BySha" >> beam.Map(lambda n: (n.sha256, n)) | "GroupSha" >> beam.GroupByKey()
                    | "StarSha" >> beam.FlatMap(lambda kv: star(kv[1])))
        by_pixels = (nodes | "ByPixels" >> beam.Map(lambda n: (n.pixel_hash, n)) | "GroupPixels" >> beam.GroupByKey()
                     | "StarPixels" >> beam.FlatMap(lambda kv: star(kv[1])))
        edge_sets = [by_bytes, by_pixels]
        if self.near:
            radius, spare = self.radius, self.spare
            near = (nodes
                    | "Bands" >> beam.FlatMap(lambda n: [(band, n) for band in band_keys(n.phash, radius, spare)])
                    | "Buckets" >> beam.GroupByKey()
                    | "Pairs" >> beam.FlatMap(lambda kv, r: bucket_pairs(kv[1], r), radius))
            edge_sets.append(near)
        if self.near and self.words is not None and self.places is not None and self.thumbnails is not None:
            fitted = (self.words  # curate.keypoints
                      | "WordPartitions" >> beam.GroupByKey()
                      | "WordMatches" >> beam.FlatMap(lambda kv: keypoints.partition_partners(kv[1]))
                      | "PictureMatches" >> beam.GroupByKey()
                      | "Geometry" >> beam.FlatMap(_geometry))
            named = ({"key": self.places, "pair": fitted} | "NamePartners" >> beam.CoGroupByKey()
                     | "Named" >> beam.FlatMap(_named))
            matched = ({"thumbnail": self.thumbnails, "pair": named} | "JoinThumbnails" >> beam.CoGroupByKey()
                       | "ToPairs" >> beam.FlatMap(_to_pairs) | "PairThumbnails" >> beam.GroupByKey()
                       | "SamePicture" >> beam.FlatMap(_looks_same))
            edge_sets.append(matched)
        edges = (edge_sets | "AllEdges" >> beam.Flatten() | "BothWays" >> beam.FlatMap(_both_ways)
                 | "DistinctEdges" >> beam.Distinct())
        labels = nodes | "Labels" >> beam.Map(lambda n: (n.key, label(n)))
        for round_ in range(self.rounds):
            labels = _propagate(labels, edges, round_)
        neighbour_labels = (
            {"label": labels, "edges": edges} | "JoinLast" >> beam.CoGroupByKey()
            | "SendLast" >> beam.FlatMap(lambda kv: [(n, min(kv[1]["label"])) for n in kv[1]["edges"]])
        )
        unsettled = ({"label": labels, "neighbour_labels": neighbour_labels} | "Check" >> beam.CoGroupByKey()
                     | "Unsettled" >> beam.FlatMap(_unsettled))
        keyed_nodes = nodes | "NodeByKey" >> beam.Map(lambda n: (n.key, n))
        members = (
            {"label": labels, "node": keyed_nodes} | "Attach" >> beam.CoGroupByKey()
            | "ByCluster" >> beam.Map(lambda kv: (min(kv[1]["label"])[0], (kv[0], min(kv[1]["label"]),
                                                                           next(iter(kv[1]["node"])))))
            | "Clusters" >> beam.GroupByKey()
            | "Sorted" >> beam.Map(lambda kv: (kv[0], {"members": sorted(kv[1], key=lambda m: m[2].rank)}))
        )
        decisions = members | "Decide" >> beam.ParDo(_Decide())
        return decisions, unsettled


def _reject(element: tuple[str, dict[str, Any]]) -> Iterator[Rejected]:
    key, joined = element
    decision = next(iter(joined["decision"]))
    if decision.reason != R.KEPT:
        url = next(iter(joined["url"]), "")
        what = "near-duplicate of excluded hash" if decision.reason == R.EVAL_OVERLAP else "duplicate of"
        yield Rejected(key, url, STAGE, decision.reason, f"{what} {decision.dup_of}")


def _describe(rounds: int) -> Any:
    def describe(shards: list[Any], counts: dict[str, int], unsettled: int) -> dict[str, Any]:
        funnel = {"images": {"input": sum(counts.values()), "kept": counts.get(R.KEPT, 0),
                             "rejected": {k: v for k, v in counts.items() if k != R.KEPT}, "failed": 0}}
        facts: dict[str, Any] = {"complete": unsettled == 0, "unsettled": unsettled, "funnel": funnel}
        if unsettled:
            facts["error"] = (f"dedup: {unsettled} images still disagree with a neighbour after {rounds} rounds; "
                              "raise dedup.rounds")
        return facts
    return describe


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
    partitions = word_partitions(out) if dd.near else 0
    numbered = list(enumerate(files))
    parts = (p | "ImageFiles" >> DriverList(numbered, out, f"{STAGE}/images", list, tuple) | "Spread" >> beam.Reshuffle()
             | "Read" >> beam.ParDo(ReadNodes(partitions, (exclude or [], dd.hamming_radius, dd.band_spare)))
             .with_outputs("words", "places", "thumbnails", main="read"))
    read = parts.read
    nodes = read | "Nodes" >> beam.Map(lambda nu: nu[0])
    checked = nodes | "Exclude" >> beam.ParDo(_Exclude(exclude or [], dd.hamming_radius, dd.band_spare)).with_outputs(
        "excluded", main="nodes")
    keypoint_inputs = (parts.words, parts.places, parts.thumbnails) if partitions else (None, None, None)
    clustered, unsettled = checked.nodes | "Dedup" >> Deduplicate(
        dd.hamming_radius, dd.rounds, dd.band_spare, dd.near, *keypoint_inputs)
    decisions = (clustered, checked.excluded) | "AllDecisions" >> beam.Flatten()
    written = decisions | "WriteDecisions" >> WriteParquetShards(
        out, "dedup", "dedup", DECISION_SCHEMA, Decision._asdict, lambda d: d.key, shards)
    urls = read | "Urls" >> beam.Map(lambda nu: (nu[0].key, nu[1]))
    rejects = ({"decision": decisions | "ByKey" >> beam.Map(lambda d: (d.key, d)), "url": urls}
               | "JoinUrls" >> beam.CoGroupByKey() | "Rejects" >> beam.FlatMap(_reject))
    no_dead_letters = p | "NoDeadLetters" >> beam.Create([])
    other = (rejects, no_dead_letters) | "WriteRejects" >> WriteRejectsAndFailures(out, STAGE, shards)
    counts = decisions | "Reasons" >> beam.Map(lambda d: d.reason) | "Tally" >> TallyReasons()
    n_unsettled = unsettled | "CountUnsettled" >> beam.combiners.Count.Globally()
    all_shards = (written, other) | "Shards" >> CollectShards(out)
    _ = all_shards | "Manifest" >> beam.ParDo(
        WriteManifest(DEDUP_STAGE, out, inputs or files, DEDUP_STAGE.digest(out, config), _describe(dd.rounds)),
        beam.pvalue.AsSingleton(counts), beam.pvalue.AsSingleton(n_unsettled))


# Keypoint words meet in groups of about this many pictures' words (~1.6 million, ~13 MB in numpy): fewer
# groups, fewer elements per candidate pair; one group for a small run, where pairs below the check's
# minimum never leave it.
PICTURES_PER_PARTITION = 500


def word_partitions(out: str) -> int:
    """How many groups the visual words are spread over: grows with the pictures decode kept, so that one
    group holds about PICTURES_PER_PARTITION pictures' words on any scale; a function of the input alone, so
    every runner makes the same groups."""
    funnel = (read_json(join(out, "images", MANIFEST)) or {}).get("funnel", {}).get("images", {})
    return max(1, int(funnel.get("kept", 0)) // PICTURES_PER_PARTITION)


def run(out: str, config: Config, beam_args: Sequence[str] = (), force: bool = False) -> dict[str, Any]:
    """Decide every image of OUT/images, dropping the near-duplicates of the evaluation sets in
    `dedup.exclude_near` as eval_overlap."""
    files = image_files(out)
    exclude = load_exclusions(config.dedup.exclude_near, cache=join(out, "cache", "exclude"))
    _keeps_decontamination(out, exclude, force)
    inputs = files
    if exclude:  # the hashes' count and digest: a changed evaluation set reruns dedup
        digest = hashlib.sha256(",".join(f"{h:016x}" for h in exclude).encode()).hexdigest()[:16]
        recorded = f"{len(exclude)} hashes:{digest}"
        inputs = files + [f"{EXCLUDED}{recorded}"]
        # the record outlives the stage's own clearing of OUT/dedup: a run killed from here on still refuses a
        # later run without the evaluation sets
        atomic_write(join(out, DECONTAMINATION), json.dumps(
            {"excluded": recorded, "sets": list(config.dedup.exclude_near)}, indent=1).encode())
    elif force:
        remove(join(out, DECONTAMINATION))  # rebuilt without the evaluation sets on purpose
    return DEDUP_STAGE.run(out, config, beam_args, inputs, lambda p: build(p, files, out, config, exclude, inputs),
                           force)


EXCLUDED = "exclude:"  # the manifest input that records a decontamination: "exclude:<n> hashes:<digest>"
# OUT's record that it was decontaminated, written before dedup runs and cleared by no stage
DECONTAMINATION = "decontamination.json"


def check_settings(out: str, config: Config, force: bool = False) -> None:
    """Dedup's user errors, for the commands to raise before any long work: an evaluation set that cannot be
    found or read, and a run that would drop the decontamination OUT/dedup was built with."""
    check_exclusions(config.dedup.exclude_near)
    if not config.dedup.exclude_near:
        _keeps_decontamination(out, [], force)


def _keeps_decontamination(out: str, exclude: list[int], force: bool) -> None:
    """Refuse, unless `force`, to replace a decontaminated OUT/dedup by one without exclusion: a rerun that
    forgot the flag would put the evaluation images back into the shards."""
    before = read_json(DEDUP_STAGE.manifest_url(out)) or {}
    recorded = [i[len(EXCLUDED):] for i in before.get("inputs") or [] if isinstance(i, str) and i.startswith(EXCLUDED)]
    record = read_json(join(out, DECONTAMINATION)) or {}
    if record.get("excluded"):
        recorded.append(record["excluded"])
    if recorded and not exclude and not force:
        raise InputError(f"{join(out, 'dedup')} was decontaminated ({recorded[0]}) and this run "
                         "excludes no evaluation set: give the same dedup.exclude_near (--exclude-near) again, or "
                         f"use --force to rebuild it without on purpose (that removes {DECONTAMINATION})")
