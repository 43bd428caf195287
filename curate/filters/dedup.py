"""Exact and near-duplicate removal: the rules, without Beam (curate.pipelines.dedup wires them into the
keyed steps that work when the data does not fit one machine).

Edges: images sharing the SHA-256 of their bytes or the hash of their normalized pixels (exact, `star`), and
pairs whose 64-bit perceptual hashes differ in at most `radius` bits (near, `bucket_pairs` inside one band
bucket of curate.hashing.band_keys: no pair within the radius is missed). Clusters are the connected
components of those edges. A node's `label` is its survivor rank (largest resolution, then earliest crawl
date, then key), so the minimum label of a component is its survivor, and `decide` names the others'
reason. The same input gives the same survivors on any runner and in any bundle order.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import pyarrow as pa

from curate import reasons as R
from curate.errors import InputError
from curate.hashing import band_keys, hamming
from curate.records import Failed


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


def label(node: Node) -> Label:
    return node.rank, node.sha256, node.pixel_hash


def star(nodes: Iterable[Node]) -> Iterator[tuple[str, str]]:
    """Edges from the first member of a group to each other member: enough to connect the group (the survivor
    is the component's best label, wherever the edges run), in one pass and constant memory whatever the
    group's size (a picture copied 10^6 times across the web is one group)."""
    hub = None
    for node in nodes:
        if hub is None:
            hub = node.key
        else:
            yield hub, node.key


def bucket_pairs(nodes: Iterable[Node], radius: int) -> Iterator[tuple[str, str]]:
    """Edges that connect the members of one band bucket whose perceptual hashes are within `radius` bits: each
    member to the first with its very hash (copies of one picture share it: a star, not all their pairs), and
    the first of each hash to the first of every other hash within the radius. Memory and comparisons grow
    with the distinct hashes in the bucket, not with its members."""
    first: dict[int, str] = {}
    for node in nodes:
        hub = first.setdefault(node.phash, node.key)
        if hub != node.key:
            yield hub, node.key
    for (a, key_a), (b, key_b) in itertools.combinations(sorted(first.items(), key=lambda kv: kv[1]), 2):
        if hamming(a, b) <= radius:
            yield key_a, key_b


class Exclusions(NamedTuple):
    """What dedup keeps out of the data (decontamination): the evaluation pictures' perceptual hashes (hash lists'
    and image sets'), sorted, no repeats; the Parquet indexes of the image sets' pictures (EVALUATION_SCHEMA:
    keypoints and thumbnails, for the same keypoint matching as dedup's); and `record`, the count and digest
    of what is excluded (by content: a set touched but unchanged records the same)."""

    hashes: list[int]
    indexes: list[str]
    record: str


# The key of an evaluation picture among the training pictures' keys (32 hex digits) in dedup's keypoint steps.
EVALUATION_KEY = "eval:"


def load_exclusions(paths: Iterable[str], cache: str) -> Exclusions:
    """The evaluation sets to keep out of the data: each path a folder (or glob, or tar) of images, indexed here
    (pHash, keypoints, thumbnail), or a text file of 16-hex-digit hashes, one a line ('#' comments). InputError
    (one line) for a set that cannot be read or yields nothing; the pictures of a set that cannot be read are
    named in one warning line. An image set's index is kept in `cache` (a folder URL) under a key of its
    listing (every file's name, size and modification time) and the reading settings: a set that has not
    changed is not read again."""
    import hashlib

    import pyarrow.parquet as pq

    hashes: set[int] = set()
    indexes, digests = [], []
    for path in paths:
        if _is_hash_list(path):
            found = _hash_list(path)
            digests += [f"{h:016x}" for h in found]
        else:
            index = _indexed(path, cache)
            found = set()
            if index:
                table = pq.read_table(index, columns=["phash", "sha256"])
                found = set(table.column("phash").to_pylist())
                indexes.append(index)
                digests += table.column("sha256").to_pylist()
        if not found:
            raise InputError(f"dedup.exclude_near {path}: no {'hash' if _is_hash_list(path) else 'picture'} in it: "
                             "an evaluation set that excludes nothing would decontaminate nothing")
        hashes.update(found)
    digest = hashlib.sha256(",".join(sorted(set(digests))).encode()).hexdigest()[:16]
    pictures = sum(pq.ParquetFile(i).metadata.num_rows for i in indexes)
    return Exclusions(sorted(hashes), indexes, f"{pictures} pictures, {len(hashes)} hashes:{digest}")


def check_exclusions(paths: Iterable[str]) -> None:
    """What can be checked of the evaluation sets before a run's long work, cheaply: hash lists read whole,
    image sets found (their images are read when dedup starts)."""
    for path in paths:
        if _is_hash_list(path):
            if not _hash_list(path):
                raise InputError(f"dedup.exclude_near {path}: no hash in it: an evaluation set that excludes "
                                 "nothing would decontaminate nothing")
        elif not _image_sources(path):
            raise InputError(f"dedup.exclude_near {path}: no picture in it")


def _is_hash_list(path: str) -> bool:
    return path.endswith((".txt", ".hashes"))


def _hash_list(path: str) -> set[int]:
    import fsspec

    try:
        with fsspec.open(path, "r") as fh:
            lines = [line.split("#")[0].strip() for line in fh]
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError) as e:
        raise InputError(f"dedup.exclude_near {path}: cannot read it ({type(e).__name__})") from None
    hashes = set()
    for number, line in enumerate(lines, 1):
        if line and not re.fullmatch(r"[0-9a-fA-F]{1,16}", line):
            raise InputError(f"dedup.exclude_near {path}, line {number}: not a 64-bit hex hash: {line[:40]!r}")
        if line:
            hashes.add(int(line, 16))
    return hashes


# Evaluation pictures are read on their own terms, not the training data's: every format curate decodes, any size
# from EVAL_MIN_SIDE pixels, any aspect ratio (a 56x56 PNG, a TIFF, a 1467x179 table are evaluation pictures too).
EVAL_MIN_SIDE = 8
EVAL_CACHE_VERSION = 2  # bump when what _index_images computes changes: older indexes are ignored
EVALUATION_SCHEMA = pa.schema([pa.field("source", pa.string()), pa.field("sha256", pa.string()),
                               pa.field("phash", pa.uint64()), pa.field("features", pa.binary()),
                               pa.field("thumbnail", pa.binary())])


def _indexed(path: str, cache: str) -> str | None:
    """The URL of the index of image set `path` (EVALUATION_SCHEMA) in `cache`, made unless one for the same
    listing and settings is there; None when no picture of it can be read."""
    import hashlib
    import json

    import fsspec

    from curate import keypoints
    from curate.io import join

    sources, listing = _image_sources(path), []
    for source in sources:
        fs, local = fsspec.core.url_to_fs(source)
        info = fs.info(local)
        listing.append([source, info.get("size"), str(info.get("mtime") or info.get("LastModified") or "")])
    settings = {"version": EVAL_CACHE_VERSION, "min_side": EVAL_MIN_SIDE, "keypoints": [
        keypoints.SIDE, keypoints.DETECT, keypoints.KEEP, keypoints.SPREAD_GRID, keypoints.THUMB]}
    key = hashlib.sha256(json.dumps({**settings, "listing": listing}).encode()).hexdigest()[:32]
    url, empty = join(cache, f"{key}.parquet"), join(cache, f"{key}.empty")
    fs, local = fsspec.core.url_to_fs(url)
    if fs.exists(local):
        return url
    if fs.exists(fsspec.core.url_to_fs(empty)[1]):
        return None
    return url if _index_images(path, sources, url) else None


def _index_images(path: str, sources: list[str], url: str) -> int:
    """Index the pictures in `sources` (the listing of evaluation set `path`) into Parquet file `url`, streamed a
    row group at a time, on every core; returns how many pictures it holds (0: no file)."""
    import hashlib
    import logging
    import math
    import os
    from concurrent.futures import ThreadPoolExecutor

    from curate import keypoints
    from curate.config import IMAGE_FORMATS, ImageConfig
    from curate.hashing import phash64
    from curate.imaging import Decoded, decode
    from curate.io import RowGroupWriter, atomic_write
    from curate.readers import read_source

    settings = ImageConfig(formats=(*IMAGE_FORMATS, "bmp", "tiff"), min_side=EVAL_MIN_SIDE, max_aspect_ratio=math.inf)
    unread = []

    def pictures() -> Iterator[tuple[str, bytes]]:
        for source in sources:
            for image in read_source(source):
                if isinstance(image, Failed):
                    unread.append(f"{image.url} ({image.error})")
                else:
                    yield image.ref.url, image.data

    def index(picture: tuple[str, bytes]) -> dict[str, Any] | None:
        name, data = picture
        result = decode(data, settings)
        if not isinstance(result, Decoded):
            unread.append(f"{name} ({result.reason}: {result.detail})")
            return None
        described = keypoints.describe(result.view)
        return {"source": name, "sha256": hashlib.sha256(data).hexdigest(), "phash": phash64(result.view),
                "features": described.features, "thumbnail": described.thumbnail}

    writer, queue = RowGroupWriter(url, EVALUATION_SCHEMA, 256), pictures()
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # decoding and ORB release the GIL
        while chunk := list(itertools.islice(queue, 64)):  # a chunk at a time: a large set is never held whole
            for row in pool.map(index, chunk):
                if row is not None:
                    writer.add(row)
    if unread:
        shown = "; ".join(unread[:5]) + (f"; and {len(unread) - 5} more" if len(unread) > 5 else "")
        logging.getLogger("curate.dedup").warning(
            "dedup.exclude_near %s: %d pictures cannot be read and exclude nothing: %s", path, len(unread), shown)
    committed = writer.commit()
    if committed is None:
        atomic_write(url[: -len(".parquet")] + ".empty", b"")
        return 0
    return committed[0]


def _image_sources(path: str) -> list[str]:
    from curate.readers import list_sources

    try:
        return list_sources([path])
    except InputError as e:
        raise InputError(f"dedup.exclude_near {path}: {e}") from None


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


def decide(members: Iterable[tuple[str, Label, Node]]) -> Iterator[Decision]:
    """One cluster's decisions: its members (key, final label, node), in any order; every member's label is the
    survivor's. The survivor is kept; every other member is a duplicate of it (same bytes or pixels as the
    survivor) or a near-duplicate. `members` is read twice, once to count them (a runner's grouped values can
    be, and a list): a cluster of any size is decided in constant memory."""
    size = sum(1 for _ in members)
    for key, label_, node in members:
        survivor_key = label_[0][2]
        if key == survivor_key:
            yield Decision(key, R.KEPT, survivor_key, size, None)
        else:
            exact = node.sha256 == label_[1] or node.pixel_hash == label_[2]
            yield Decision(key, R.DUPLICATE if exact else R.NEAR_DUPLICATE, survivor_key, size, survivor_key)
