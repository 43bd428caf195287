"""Exact and near-duplicate removal, as keyed Beam steps that work when the data does not fit one machine.

Edges: images sharing the SHA-256 of their bytes or the hash of their normalized pixels (exact), and pairs
whose 64-bit perceptual hashes differ in at most `radius` bits (near), found by pigeonhole banding: every
hash is emitted under its band keys (curate.hashing.band_keys), each bucket is a GroupByKey, and only pairs
inside a bucket are compared; no pair within the radius is missed. Clusters are the connected components
of those edges, computed by min-label propagation, unrolled for a fixed number of rounds (each a
CoGroupByKey and a CombinePerKey), then checked: an edge whose ends still disagree means the rounds were
too few, and the stage fails loudly rather than guess. A node's label is its survivor rank (largest
resolution, then earliest crawl date, then key), so the minimum label of a component is its survivor.
The same input gives the same survivors on any runner and in any bundle order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam

from curate import reasons as R
from curate.hashing import band_keys, hamming


class Node(NamedTuple):
    key: str
    sha256: str
    pixel_hash: str
    phash: int
    area: int
    crawl_date: str

    @property
    def rank(self) -> tuple:
        """Survivor order: largest resolution, then earliest crawl date, then key."""
        return (-self.area, self.crawl_date, self.key)


# A label: the rank of the best member seen so far, with that member's hashes (to tell exact from near).
Label = tuple[tuple, str, str]


class Decision(NamedTuple):
    key: str
    reason: str  # kept | duplicate | near_duplicate
    cluster: str  # survivor's key
    cluster_size: int
    dup_of: str | None


def _label(node: Node) -> Label:
    return node.rank, node.sha256, node.pixel_hash


def _star(nodes: Iterable[Node]) -> Iterator[tuple[str, str]]:
    """Edges from the best member of a group to each other member (enough to connect the group)."""
    members = sorted(nodes, key=lambda n: n.rank)
    for other in members[1:]:
        yield members[0].key, other.key


def _bucket_pairs(element: tuple[tuple[int, int], Iterable[Node]], radius: int) -> Iterator[tuple[str, str]]:
    _, nodes = element
    members = sorted(nodes, key=lambda n: n.key)
    for a, b in itertools.combinations(members, 2):
        if hamming(a.phash, b.phash) <= radius:
            yield a.key, b.key


def _both_ways(edge: tuple[str, str]) -> Iterator[tuple[str, str]]:
    a, b = edge
    yield a, b
    yield b, a


def _messages(element: tuple[str, dict[str, Iterable]]) -> Iterator[tuple[str, Label]]:
    key, joined = element
    label = min(joined["label"])
    yield key, label
    for neighbour in joined["edges"]:
        yield neighbour, label


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
        members = list(joined["members"])
        survivor_label = members[0][1]
        survivor_key = survivor_label[0][2]
        for key, label, node in members:
            if key == survivor_key:
                yield Decision(key, R.KEPT, survivor_key, len(members), None)
            else:
                exact = node.sha256 == label[1] or node.pixel_hash == label[2]
                yield Decision(key, R.DUPLICATE if exact else R.NEAR_DUPLICATE, survivor_key, len(members),
                               survivor_key)


def load_exclusions(path: str, radius: int) -> list[int]:
    """Perceptual hashes of an evaluation set to keep out of the data: a folder (or glob, or tar) of images,
    hashed here, or a text file of 16-hex-digit hashes, one a line ('#' comments)."""
    from curate.hashing import phash64
    from curate.imaging import Decoded, decode
    from curate.readers import list_sources, read_source

    if path.endswith((".txt", ".hashes")):
        import fsspec

        with fsspec.open(path, "r") as fh:
            lines = [line.split("#")[0].strip() for line in fh]
        return sorted({int(line, 16) for line in lines if line})
    hashes = set()
    for source in list_sources([path]):
        for image in read_source(source):
            result = decode(image.data)
            if isinstance(result, Decoded):
                hashes.add(phash64(result.view))
    return sorted(hashes)


class ExclusionIndex:
    """Band index of the exclusion hashes: a node is checked only against hashes sharing one of its bands."""

    def __init__(self, hashes: list[int], radius: int, spare: int):
        self.radius, self.spare = radius, spare
        self.buckets: dict[tuple[int, int], list[int]] = {}
        for h in hashes:
            for band in band_keys(h, radius, spare):
                self.buckets.setdefault(band, []).append(h)

    def nearest(self, h: int) -> int | None:
        """An excluded hash within the radius of h, or None."""
        for band in band_keys(h, self.radius, self.spare):
            for other in self.buckets.get(band, ()):
                if hamming(h, other) <= self.radius:
                    return other
        return None


class Deduplicate(beam.PTransform):
    """PCollection[Node] -> (PCollection[Decision] for every node, PCollection[str] unsettled keys).

    The second output must be empty: if not, the components needed more than `rounds` rounds."""

    def __init__(self, radius: int, rounds: int = 12, spare: int = 1, near: bool = True):
        super().__init__()
        self.radius, self.rounds, self.spare, self.near = radius, rounds, spare, near

    def expand(self, nodes: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        by_bytes = (nodes | "BySha" >> beam.Map(lambda n: (n.sha256, n)) | "GroupSha" >> beam.GroupByKey()
                    | "StarSha" >> beam.FlatMap(lambda kv: _star(kv[1])))
        by_pixels = (nodes | "ByPixels" >> beam.Map(lambda n: (n.pixel_hash, n)) | "GroupPixels" >> beam.GroupByKey()
                     | "StarPixels" >> beam.FlatMap(lambda kv: _star(kv[1])))
        edge_sets = [by_bytes, by_pixels]
        if self.near:
            radius, spare = self.radius, self.spare
            near = (nodes
                    | "Bands" >> beam.FlatMap(lambda n: [(band, n) for band in band_keys(n.phash, radius, spare)])
                    | "Buckets" >> beam.GroupByKey()
                    | "Pairs" >> beam.FlatMap(_bucket_pairs, radius))
            edge_sets.append(near)
        edges = (edge_sets | "AllEdges" >> beam.Flatten() | "BothWays" >> beam.FlatMap(_both_ways)
                 | "DistinctEdges" >> beam.Distinct())
        labels = nodes | "Labels" >> beam.Map(lambda n: (n.key, _label(n)))
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
