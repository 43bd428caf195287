"""Dedup: OUT/images -> OUT/dedup (one decision per image: kept, duplicate or near_duplicate, with its
cluster, the cluster's size and the survivor it duplicates), rejects for the dropped, the manifest and the
funnel. The rules live in curate/filters/dedup.py; the distributed clustering (`Deduplicate`) is here."""

from __future__ import annotations

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
    EVALUATION_KEY,
    Decision,
    ExclusionIndex,
    Exclusions,
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
    `image_files` order, its URL). With `partitions` (keypoint matching on), each picture's candidate keys
    also go out, tagged "keys", one element per partition they fall in, named by its place (`place`), and the
    picture itself, tagged "pictures" as (place, (key, features, thumbnail)), except for a picture that
    decontamination will drop (`exclude`: it must join no cluster)."""

    def __init__(self, partitions: int = 0, exclude: tuple[list[int], int, int] = ([], 0, 0)):
        self.partitions, self.exclude = partitions, exclude

    def setup(self) -> None:
        self.index = ExclusionIndex(*self.exclude)

    def process(self, element: tuple[int, str]) -> Iterator[Any]:
        index, url = element
        with fsspec.open(url, "rb") as fh:
            table = pq.ParquetFile(fh)
            matching = self.partitions and {"features", "thumbnail"} <= set(table.schema_arrow.names)
            rows = table.read(columns=COLUMNS + (["features", "thumbnail"] if matching else [])).to_pylist()
            for row, r in enumerate(rows):
                node = Node(r["key"], r["sha256"], r["pixel_hash"], r["phash"], r["width"] * r["height"],
                            r["crawl_date"] or "")
                yield node, r["url"]
                if matching and r["features"] and r["thumbnail"] and self.index.nearest(node.phash) is None:
                    where = place(index, row)
                    for part in keypoints.by_partition(r["features"], self.partitions, where):
                        yield beam.pvalue.TaggedOutput("keys", part)
                    yield beam.pvalue.TaggedOutput("pictures", (where, (r["key"], r["features"], r["thumbnail"])))


def place(file_index: int, row: int) -> int:
    """A picture's place, a 64-bit number that names it among its partners: its OUT/images file (the index in
    `image_files` order) and its row there."""
    return file_index << 32 | row


class ReadEvaluation(beam.DoFn):
    """The pictures of an evaluation set's index (curate.filters.dedup.load_exclusions), for the keypoint steps
    as ReadNodes gives a training picture's: candidate keys (tagged "keys") and (place, (key, features,
    thumbnail)) ("pictures"). Keyed EVALUATION_KEY + the picture's source; places carry keypoints.EVALUATION.
    Elements: (index of the index file, its URL)."""

    def __init__(self, partitions: int):
        self.partitions = partitions

    def process(self, element: tuple[int, str]) -> Iterator[Any]:
        number, url = element
        with fsspec.open(url, "rb") as fh:
            row = 0
            for batch in pq.ParquetFile(fh).iter_batches(batch_size=256, columns=["source", "features", "thumbnail"]):
                for r in batch.to_pylist():
                    key, where = EVALUATION_KEY + r["source"], keypoints.EVALUATION | place(number, row)
                    row += 1
                    if not r["features"]:
                        continue
                    for part in keypoints.by_partition(r["features"], self.partitions, where):
                        yield beam.pvalue.TaggedOutput("keys", part)
                    yield beam.pvalue.TaggedOutput("pictures", (where, (key, r["features"], r["thumbnail"])))


def _overlaps(edge: tuple[str, str]) -> Iterator[Any]:
    """A checked pair with an evaluation picture at one end is an overlap, (training key, evaluation key),
    tagged "overlap"; a pair of training pictures goes on as an edge."""
    a, b = edge
    if b.startswith(EVALUATION_KEY):
        a, b = b, a
    if a.startswith(EVALUATION_KEY):
        if not b.startswith(EVALUATION_KEY):
            yield beam.pvalue.TaggedOutput("overlap", (b, a))
    else:
        yield edge


def _unless_overlapping(element: tuple[str, dict[str, Iterable]]) -> Iterator[Any]:
    """What is keyed by a training picture, unless that picture overlaps an evaluation set."""
    key, joined = element
    if next(iter(joined["overlap"]), None) is None:
        for value in joined["value"]:
            yield key, value


def _without(keyed: beam.PCollection, overlaps: beam.PCollection, name: str) -> beam.PCollection:
    """The (key, value) elements whose key is no overlapping picture's."""
    return ({"value": keyed, "overlap": overlaps} | f"Join{name}" >> beam.CoGroupByKey()
            | f"Unless{name}" >> beam.FlatMap(_unless_overlapping))


def _overlap_decision(element: tuple[str, str]) -> Decision:
    key, evaluation = element
    return Decision(key, R.EVAL_OVERLAP, key, 1, evaluation[len(EVALUATION_KEY):])


def _both_ways(edge: tuple[str, str]) -> Iterator[tuple[str, str]]:
    a, b = edge
    yield a, b
    yield b, a


def _to_first(element: tuple[int, dict[str, Iterable]]) -> Iterator[tuple[int, tuple]]:
    """A candidate pair's second picture, sent to its first: (first's place, (key, features, thumbnail))."""
    _, joined = element
    for picture in joined["picture"]:  # one a place
        for first in joined["first"]:
            yield first, picture


def _same_pictures(element: tuple[int, dict[str, Iterable]]) -> Iterator[tuple[str, str]]:
    """A picture's candidate partners that pass both checks (curate.keypoints.same_picture): (key, partner key).
    The partners stream past; only the picture's own words are held."""
    _, joined = element
    for key, features, thumbnail in joined["picture"]:  # one a place
        mine = keypoints.words(features)
        for partner, their_features, their_thumbnail in joined["partner"]:
            if keypoints.same_picture(mine, thumbnail, keypoints.words(their_features), their_thumbnail):
                yield key, partner


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


def _to_neighbours(element: tuple[str, dict[str, Iterable]]) -> Iterator[tuple[str, Label]]:
    """A key's label to each of its neighbours, streamed: a hub of 10^6 copies sends as many, holding none."""
    key, joined = element
    mine = min(joined["label"])
    for neighbour in joined["edges"]:
        yield neighbour, mine


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
        yield from decide(joined["members"])


class Deduplicate(beam.PTransform):
    """Clusters as keyed Beam steps (edges by GroupByKey on SHA-256, pixel hash and each band key, and, given
    the pictures' candidate `keys` and the `pictures` (ReadNodes), keypoint pairs: pictures sharing keys
    (curate.keypoints.partition_pairs, summed over the partitions) are candidates; each candidate's second
    picture is joined by place and sent to its first, which checks them (curate.keypoints.same_picture); connected
    components by min-label propagation, unrolled for `rounds` rounds, each a CoGroupByKey and a CombinePerKey,
    then checked: an edge whose ends still disagree means the rounds were too few, and the stage fails loudly
    rather than guess).

    With `evaluation`, the keypoint inputs also hold evaluation pictures (keys EVALUATION_KEY + their source,
    ReadEvaluation): a training picture that passes both checks against one is decided eval_overlap, naming
    it, and is left out of the clusters with its edges (it takes no other picture along).

    PCollection[Node] -> (PCollection[Decision] for every node, PCollection[str] unsettled keys).

    The second output must be empty: if not, the components needed more than `rounds` rounds."""

    def __init__(self, radius: int, rounds: int = 12, spare: int = 1, near: bool = True,
                 keys: beam.PCollection | None = None, pictures: beam.PCollection | None = None,
                 evaluation: bool = False):
        super().__init__()
        self.radius, self.rounds, self.spare, self.near = radius, rounds, spare, near
        self.keys, self.pictures, self.evaluation = keys, pictures, evaluation

    def _keypoint_pairs(self) -> tuple[beam.PCollection | None, beam.PCollection | None]:
        """(pairs of training pictures that are one picture, overlaps: (training key, evaluation key), one for
        each training picture that matches an evaluation picture, or None without evaluation pictures)."""
        if not (self.near and self.keys is not None and self.pictures is not None):
            return None, None
        candidates = (self.keys  # curate.keypoints
                      | "KeyPartitions" >> beam.GroupByKey()
                      | "SharedKeys" >> beam.FlatMap(lambda kv: keypoints.partition_pairs(kv[1]))
                      | "SumShared" >> beam.CombinePerKey(sum)
                      | "Candidates" >> beam.FlatMap(
                          lambda kv: [(kv[0][1], kv[0][0])] if kv[1] >= keypoints.MIN_SHARED else []))
        partners = ({"picture": self.pictures, "first": candidates} | "JoinSecond" >> beam.CoGroupByKey()
                    | "ToFirst" >> beam.FlatMap(_to_first))
        matched = ({"picture": self.pictures, "partner": partners} | "JoinFirst" >> beam.CoGroupByKey()
                   | "SamePicture" >> beam.FlatMap(_same_pictures))
        if not self.evaluation:
            return matched, None
        split = matched | "Overlaps" >> beam.FlatMap(_overlaps).with_outputs("overlap", main="edges")
        return split.edges, split.overlap | "FirstOverlap" >> beam.CombinePerKey(min)

    def expand(self, nodes: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        keypoint_edges, overlaps = self._keypoint_pairs()
        if overlaps is not None and keypoint_edges is not None:
            # decontamination: a training picture that matches an evaluation picture joins no cluster
            nodes = _without(nodes | "NodeKeys" >> beam.Map(lambda n: (n.key, n)), overlaps, "Nodes") | "Remaining" >> beam.Values()
            keypoint_edges = _without(_without(keypoint_edges, overlaps, "Ends") | "Flip" >> beam.KvSwap(),
                                      overlaps, "OtherEnds")
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
        if keypoint_edges is not None:
            edge_sets.append(keypoint_edges)
        edges = (edge_sets | "AllEdges" >> beam.Flatten() | "BothWays" >> beam.FlatMap(_both_ways)
                 | "DistinctEdges" >> beam.Distinct())
        labels = nodes | "Labels" >> beam.Map(lambda n: (n.key, label(n)))
        for round_ in range(self.rounds):
            labels = _propagate(labels, edges, round_)
        neighbour_labels = (
            {"label": labels, "edges": edges} | "JoinLast" >> beam.CoGroupByKey()
            | "SendLast" >> beam.FlatMap(_to_neighbours)
        )
        unsettled = ({"label": labels, "neighbour_labels": neighbour_labels} | "Check" >> beam.CoGroupByKey()
                     | "Unsettled" >> beam.FlatMap(_unsettled))
        keyed_nodes = nodes | "NodeByKey" >> beam.Map(lambda n: (n.key, n))
        members = (
            {"label": labels, "node": keyed_nodes} | "Attach" >> beam.CoGroupByKey()
            | "ByCluster" >> beam.Map(lambda kv: (min(kv[1]["label"])[0], (kv[0], min(kv[1]["label"]),
                                                                           next(iter(kv[1]["node"])))))
            | "Clusters" >> beam.GroupByKey()
            | "Members" >> beam.Map(lambda kv: (kv[0], {"members": kv[1]}))
        )
        decisions = members | "Decide" >> beam.ParDo(_Decide())
        if overlaps is not None:
            decisions = (decisions, overlaps | "OverlapDecisions" >> beam.Map(_overlap_decision)) | (
                "WithOverlaps" >> beam.Flatten())
        return decisions, unsettled


def _reject(element: tuple[str, dict[str, Any]]) -> Iterator[Rejected]:
    key, joined = element
    decision = next(iter(joined["decision"]))
    if decision.reason != R.KEPT:
        url = next(iter(joined["url"]), "")
        what = "duplicate of"
        if decision.reason == R.EVAL_OVERLAP:  # dup_of: the evaluation picture, or the pHash it was within reach of
            hashed = len(decision.dup_of or "") == 16 and all(c in "0123456789abcdef" for c in decision.dup_of or "")
            what = "near-duplicate of excluded hash" if hashed else "near-duplicate of evaluation picture"
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


def build(p: beam.Pipeline, files: list[str], out: str, config: Config, exclusions: Exclusions | None = None,
          inputs: list[str] | None = None) -> None:
    dd, shards = config.dedup, config.extract.shards
    partitions = word_partitions(out) if dd.near else 0
    exclude = exclusions.hashes if exclusions else []
    numbered = list(enumerate(files))
    parts = (p | "ImageFiles" >> DriverList(numbered, out, f"{STAGE}/images", list, tuple) | "Spread" >> beam.Reshuffle()
             | "Read" >> beam.ParDo(ReadNodes(partitions, (exclude, dd.hamming_radius, dd.band_spare)))
             .with_outputs("keys", "pictures", main="read"))
    read = parts.read
    nodes = read | "Nodes" >> beam.Map(lambda nu: nu[0])
    checked = nodes | "Exclude" >> beam.ParDo(_Exclude(exclude, dd.hamming_radius, dd.band_spare)).with_outputs(
        "excluded", main="nodes")
    keypoint_inputs = (parts.keys, parts.pictures) if partitions else (None, None)
    evaluation = bool(partitions and exclusions and exclusions.indexes)
    if evaluation and exclusions:  # the evaluation pictures meet the training pictures in the keypoint steps
        indexes = list(enumerate(dict.fromkeys(exclusions.indexes)))
        theirs = (p | "EvaluationIndexes" >> beam.Create(indexes) | "SpreadEvaluation" >> beam.Reshuffle()
                  | "ReadEvaluation" >> beam.ParDo(ReadEvaluation(partitions)).with_outputs(
                      "keys", "pictures", main="none"))
        keypoint_inputs = tuple((ours, getattr(theirs, tag)) | f"With{tag.title()}" >> beam.Flatten()
                                for ours, tag in zip(keypoint_inputs, ("keys", "pictures"), strict=True))
    keys, pictures = keypoint_inputs
    clustered, unsettled = checked.nodes | "Dedup" >> Deduplicate(
        dd.hamming_radius, dd.rounds, dd.band_spare, dd.near, keys, pictures, evaluation)
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


# Candidate keys meet in groups of about this many pictures' keys (~5.8 million, ~46 MB in numpy): fewer
# groups, fewer elements per candidate pair; one group for a small run.
PICTURES_PER_PARTITION = 250


def word_partitions(out: str) -> int:
    """How many groups the candidate keys are spread over: grows with the pictures decode kept, so that one
    group holds about PICTURES_PER_PARTITION pictures' keys on any scale; a function of the input alone, so
    every runner makes the same groups."""
    funnel = (read_json(join(out, "images", MANIFEST)) or {}).get("funnel", {}).get("images", {})
    return max(1, int(funnel.get("kept", 0)) // PICTURES_PER_PARTITION)


def run(out: str, config: Config, beam_args: Sequence[str] = (), force: bool = False) -> dict[str, Any]:
    """Decide every image of OUT/images, dropping the near-duplicates of the evaluation sets in
    `dedup.exclude_near` as eval_overlap."""
    files = image_files(out)
    exclusions = (load_exclusions(config.dedup.exclude_near, cache=join(out, "cache", "exclude"))
                  if config.dedup.exclude_near else None)
    _keeps_decontamination(out, exclusions is not None, force)
    inputs = files
    if exclusions:  # what is excluded, counted and digested: a changed evaluation set reruns dedup
        recorded = exclusions.record
        inputs = files + [f"{EXCLUDED}{recorded}"]
        # the record outlives the stage's own clearing of OUT/dedup: a run killed from here on still refuses a
        # later run without the evaluation sets
        atomic_write(join(out, DECONTAMINATION), json.dumps(
            {"excluded": recorded, "sets": list(config.dedup.exclude_near)}, indent=1).encode())
    elif force:
        remove(join(out, DECONTAMINATION))  # rebuilt without the evaluation sets on purpose
    return DEDUP_STAGE.run(out, config, beam_args, inputs, lambda p: build(p, files, out, config, exclusions, inputs),
                           force)


EXCLUDED = "exclude:"  # the manifest input that records a decontamination: "exclude:<n> pictures, <m> hashes:<digest>"
# OUT's record that it was decontaminated, written before dedup runs and cleared by no stage
DECONTAMINATION = "decontamination.json"


def check_settings(out: str, config: Config, force: bool = False) -> None:
    """Dedup's user errors, for the commands to raise before any long work: an evaluation set that cannot be
    found or read, and a run that would drop the decontamination OUT/dedup was built with."""
    check_exclusions(config.dedup.exclude_near)
    if not config.dedup.exclude_near:
        _keeps_decontamination(out, False, force)


def _keeps_decontamination(out: str, exclude: bool, force: bool) -> None:
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
