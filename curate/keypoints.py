"""Near-duplicates that survive crops, captions and watermarks: local features, visual words, geometric check.

A 64-bit pHash describes the whole frame, so a copy cropped by a few percent, or with a caption bar over it,
lands 8-20 bits away, past any radius that keeps distinct pictures apart. Local features do not care about
the frame: most corners of the picture are still there, at the same places up to one similarity transform.

- `describe(view)` (decode): ORB keypoints (OpenCV, Apache-2.0) on the analysis view resized to a 400-pixel
  longer side, so any two copies meet at nearly the same scale; `KEEP` of them, spread over the picture, each
  as 32 descriptor bytes and its position, packed in `ROW` bytes (`KEEP * ROW` = 14.4 KB a picture at most).
- `words(features)` (dedup): each keypoint gives `TABLES` visual words, one per table, each the keypoint's
  descriptor bits at `WORD_BITS` fixed positions. Two views of one corner usually agree on every bit of at
  least one table; unrelated corners agree on a table with probability ~2**-24. Pictures that share a word
  are candidates, and each shared word is a correspondence (a point in one, a point in the other). A word
  held by more than `BUCKET_CAP` pictures is a stop word (text strokes, flat-colour corners) and is skipped:
  it would make many pairs and tell nothing.
- `same_picture(matches, layout_a, layout_b)` (dedup): at least `MIN_MATCHES` correspondences, of which at
  least `MIN_MATCHES` agree with one RANSAC similarity fit that only crops and rescales (scale 0.6-1.7,
  rotation at most 5 degrees); the agreeing points cover at least `MIN_COVER` of the area each picture's
  keypoints span (a shared logo, watermark, header or chart legend in one corner is not the picture); and
  they are everywhere the pictures overlap: of the 3x3 cells of a picture's keypoint box that hold keypoints
  and fall inside the other picture, at least `MIN_OCCUPIED` hold an agreeing point, both ways (two charts of
  one template share their axes, frame and labels all round, but not what is plotted inside).

Measured on a real labelled set (benchmarks/neardup.py, BENCHMARKS.md): crops up to 10% a side are caught
at 0.966, captions, watermarks and every other edit family at 1.0, and no two distinct pictures merge. The
constants were chosen on that set and the sample crawl's template look-alikes together, once for all
sources; the benchmark reports recall per source.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

SIDE = 400  # both views are resized to this longer side before ORB
DETECT = 1200  # ORB's keypoint budget; KEEP of them are stored, spread over the picture (`_spread_out`)
KEEP = 400
SPREAD_GRID = 4  # the stored keypoints: the strongest KEEP / SPREAD_GRID**2 of each cell first
ROW = 36  # bytes a keypoint: 32 descriptor bytes, x and y as uint16 in 1/8 pixel
_SUBPIXEL = 8
TABLES = 8  # visual words per keypoint
WORD_BITS = 24  # descriptor bits per word
BUCKET_CAP = 32  # a word shared by more pictures than this is a stop word
MIN_MATCHES = 8  # correspondences, and inliers of the fit, a match needs
MIN_COVER = 0.2  # inlier bounding box / the keypoints' bounding box, in both pictures
GRID = 3  # cells a side of the keypoint box, for the occupancy check
MIN_OCCUPIED = 0.6  # share of the overlapping cells with keypoints that hold an agreeing point
SCALE = (0.6, 1.7)
MAX_ROTATION = 5.0  # degrees
RANSAC_PIXELS = 4.0


def _table_bits() -> np.ndarray:
    """TABLES x WORD_BITS descriptor bit positions, fixed forever (a changed choice changes every word)."""
    order = lambda t, i: hashlib.sha256(f"curate-words:{t}:{i}".encode()).digest()  # noqa: E731
    return np.array([sorted(sorted(range(256), key=lambda i: order(t, i))[:WORD_BITS]) for t in range(TABLES)])


_BITS = _table_bits()
_local = threading.local()  # one detector a thread: a runner may call from several at once


def _detector() -> Any:
    if not hasattr(_local, "orb"):
        import cv2

        _local.orb = cv2.ORB_create(nfeatures=DETECT)  # type: ignore[attr-defined]
    return _local.orb


def describe(view: Image.Image) -> bytes:
    """The packed keypoints of one analysis view (empty when it has none: a flat or tiny picture)."""
    import cv2

    grey = np.asarray(view.convert("L"))
    h, w = grey.shape
    scale = SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    points, descriptors = _detector().detectAndCompute(grey, None)
    if descriptors is None or not len(points):
        return b""
    strongest = _spread_out(points, size)
    xy = np.array([points[i].pt for i in strongest], dtype=np.float64)
    packed = np.round(xy * _SUBPIXEL).clip(0, 65535).astype("<u2")
    return np.hstack([descriptors[strongest], packed.view(np.uint8).reshape(-1, 4)]).tobytes()


def _spread_out(points: Sequence[Any], size: tuple[int, int]) -> list[int]:
    """KEEP keypoints, strongest first, but the strongest of every cell of a SPREAD_GRID grid before the rest:
    text corners outshine everything else, and a check over the whole picture needs points all over it."""
    ranked = sorted(range(len(points)), key=lambda i: (-points[i].response, i))
    quota, taken = KEEP // SPREAD_GRID ** 2, [0] * SPREAD_GRID ** 2
    first, rest = [], []
    for i in ranked:
        x, y = points[i].pt
        cell = min(int(y * SPREAD_GRID / size[1]), SPREAD_GRID - 1) * SPREAD_GRID + min(
            int(x * SPREAD_GRID / size[0]), SPREAD_GRID - 1)
        if taken[cell] < quota:
            taken[cell] += 1
            first.append(i)
        else:
            rest.append(i)
    rank = {i: r for r, i in enumerate(ranked)}
    return sorted((first + rest)[:KEEP], key=rank.__getitem__)


def unpack(features: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(descriptors n x 32 uint8, positions n x 2 float32) of packed keypoints."""
    rows = np.frombuffer(features, dtype=np.uint8).reshape(-1, ROW)
    xy = rows[:, 32:].copy().view("<u2").astype(np.float32) / _SUBPIXEL
    return rows[:, :32], xy.reshape(-1, 2)


def spread(xy: np.ndarray) -> float:
    """The area of the keypoints' bounding box (at least 1)."""
    if not len(xy):
        return 1.0
    return max(1.0, float(np.ptp(xy[:, 0]) * np.ptp(xy[:, 1])))


Layout = tuple[float, float, float, float, int]  # the keypoints' box (x0, y0, x1, y1) and its occupied cells


def _cells(xy: np.ndarray, box: Layout) -> np.ndarray:
    """The GRID x GRID cell index (row-major) of each point, relative to a box."""
    x0, y0, x1, y1, _ = box
    col = np.floor((xy[:, 0] - x0) / max(x1 - x0, 1e-3) * GRID).clip(0, GRID - 1)
    row = np.floor((xy[:, 1] - y0) / max(y1 - y0, 1e-3) * GRID).clip(0, GRID - 1)
    return (row * GRID + col).astype(int)


def layout(xy: np.ndarray) -> Layout:
    """Where a picture's keypoints are: their box, and a bit per cell of it holding at least two."""
    if not len(xy):
        return (0.0, 0.0, 1.0, 1.0, 0)
    box = (float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max()), 0)
    counts = np.bincount(_cells(xy, box), minlength=GRID * GRID)
    return box[:4] + (sum(1 << i for i, n in enumerate(counts) if n >= 2),)


def _occupied(inliers: np.ndarray, mine: Layout, theirs: Layout, to_theirs: np.ndarray) -> float:
    """Of my cells that hold keypoints and whose centre lands inside the other picture's box, the share
    holding an agreeing point (0 when none overlap)."""
    x0, y0, x1, y1, mask = mine
    centres = np.array([(x0 + (i % GRID + 0.5) * (x1 - x0) / GRID, y0 + (i // GRID + 0.5) * (y1 - y0) / GRID)
                        for i in range(GRID * GRID)])
    there = centres @ to_theirs[:, :2].T + to_theirs[:, 2]
    inside = (there[:, 0] >= theirs[0]) & (there[:, 0] <= theirs[2]) & (there[:, 1] >= theirs[1]) & (
        there[:, 1] <= theirs[3])
    wanted = [i for i in range(GRID * GRID) if mask >> i & 1 and inside[i]]
    hit = set(_cells(inliers, mine).tolist())
    return sum(i in hit for i in wanted) / len(wanted) if wanted else 0.0


def words(features: bytes) -> tuple[Layout, np.ndarray, np.ndarray]:
    """(layout, words, positions): each picture's words once (uint64: table << 56 | the word's bits), at the
    strongest keypoint that has it, and those keypoints' positions (n x 2 float32)."""
    descriptors, xy = unpack(features)
    if not len(xy):
        return layout(xy), np.zeros(0, dtype=np.uint64), np.zeros((0, 2), dtype=np.float32)
    bits = np.unpackbits(descriptors, axis=1).astype(np.uint64)
    weights = np.uint64(1) << np.arange(WORD_BITS, dtype=np.uint64)
    tables = np.arange(TABLES, dtype=np.uint64)[:, None] << np.uint64(56)
    found = (bits[:, _BITS] * weights).sum(axis=2).T | tables  # TABLES x keypoints, table-major
    flat = found.ravel()
    _, first = np.unique(flat, return_index=True)
    first.sort()  # table by table, strongest keypoint first, as the words were found
    return layout(xy), flat[first], xy[first % len(xy)]


Match = tuple[float, float, float, float]  # x, y in one picture; x, y in the other


def same_picture(matches: np.ndarray | Sequence[Match], layout_a: Layout, layout_b: Layout) -> bool:
    """The geometric check: do the correspondences (rows x, y, x', y') agree with one crop-and-rescale of a
    picture, over most of it? Deterministic: the rows are sorted, and OpenCV's RANSAC seeds its generator the
    same on every call."""
    points = np.asarray(matches, dtype=np.float32).reshape(-1, 4)
    if len(points) < MIN_MATCHES:
        return False
    import cv2

    points = points[np.lexsort(points.T[::-1])]
    a, b = np.ascontiguousarray(points[:, :2]), np.ascontiguousarray(points[:, 2:])
    fit, mask = cv2.estimateAffinePartial2D(a, b, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PIXELS)
    if fit is None or int(mask.sum()) < MIN_MATCHES:
        return False
    scale = float(np.hypot(fit[0, 0], fit[1, 0]))
    rotation = abs(float(np.degrees(np.arctan2(fit[1, 0], fit[0, 0]))))
    if not (SCALE[0] <= scale <= SCALE[1] and rotation <= MAX_ROTATION):
        return False
    inliers = mask.ravel() == 1
    area_a, area_b = (max(1.0, (x1 - x0) * (y1 - y0)) for x0, y0, x1, y1, _ in (layout_a, layout_b))
    if min(spread(a[inliers]) / area_a, spread(b[inliers]) / area_b) < MIN_COVER:
        return False
    back = cv2.invertAffineTransform(fit)
    return min(_occupied(a[inliers], layout_a, layout_b, fit),
               _occupied(b[inliers], layout_b, layout_a, back)) >= MIN_OCCUPIED


def by_partition(key: str, features: bytes, partitions: int) -> Iterator[tuple[int, tuple]]:
    """One picture's words, as one element per partition: (partition, (key, layout, words, positions))."""
    where, found, xy = words(features)
    mixed = found * np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing, modulo 2**64: spreads the table bits
    parts = (mixed % np.uint64(partitions)).astype(np.int64)
    for part in np.unique(parts).tolist():
        mine = parts == part
        yield part, (key, where, found[mine], xy[mine])


def partition_matches(members: Iterable[tuple], only: bool = False) -> Iterator[tuple[tuple[str, str], tuple]]:
    """Inside one partition: ((a, b), (layout a, layout b, matches n x 4)) for every pair of pictures sharing
    a word there that is not a stop word (held by more than BUCKET_CAP pictures); keys in order. When this is
    the `only` partition, a pair's matches are all here, and pairs with too few for the check are dropped."""
    ordered = sorted(members, key=lambda m: m[0])
    if len(ordered) < 2:
        return
    keys, layouts = [m[0] for m in ordered], [m[1] for m in ordered]
    held = np.concatenate([m[2] for m in ordered])
    owner = np.concatenate([np.full(len(m[2]), i, dtype=np.int64) for i, m in enumerate(ordered)])
    xy = np.concatenate([m[3] for m in ordered]).astype(np.float32)
    order = np.lexsort((owner, held))
    held, owner, xy = held[order], owner[order], xy[order]
    starts = np.flatnonzero(np.r_[True, held[1:] != held[:-1]])
    sizes = np.diff(np.r_[starts, len(held)])
    firsts, seconds = [], []
    for size in np.unique(sizes[(sizes >= 2) & (sizes <= BUCKET_CAP)]).tolist():
        rows = starts[sizes == size][:, None]
        i, j = np.triu_indices(size, k=1)
        firsts.append((rows + i).ravel())
        seconds.append((rows + j).ravel())
    if not firsts:
        return
    first, second = np.concatenate(firsts), np.concatenate(seconds)
    pair = owner[first] * len(ordered) + owner[second]  # owners ascend inside a word: first < second
    by_pair = np.argsort(pair, kind="stable")
    pair, matches = pair[by_pair], np.hstack([xy[first[by_pair]], xy[second[by_pair]]])
    bounds = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]]).tolist() + [len(pair)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        if only and hi - lo < MIN_MATCHES:
            continue
        a, b = divmod(int(pair[lo]), len(ordered))
        yield (keys[a], keys[b]), (layouts[a], layouts[b], matches[lo:hi])


def verified(parts: Iterable[tuple[Layout, Layout, np.ndarray]]) -> bool:
    """A candidate pair's matches from every partition, checked."""
    found, layouts = [], ((0.0, 0.0, 1.0, 1.0, 0),) * 2
    for layout_a, layout_b, matches in parts:
        layouts = (layout_a, layout_b)  # the same in every partition
        found.append(matches)
    return same_picture(np.concatenate(found) if found else np.zeros((0, 4)), *layouts)


def match_all(features: Sequence[bytes], partitions: int) -> tuple[set[tuple[int, int]], int]:
    """The dedup stage's keypoint steps in one process, without Beam (benchmarks and tests): the pairs of
    indices into `features` that are one picture, and how many candidate pairs were checked."""
    groups: dict[int, list] = {}
    for index, blob in enumerate(features):
        for part, member in by_partition(f"{index:09d}", blob, partitions):
            groups.setdefault(part, []).append(member)
    found: dict[tuple[str, str], list] = {}
    for members in groups.values():
        for pair, shared in partition_matches(members, only=partitions == 1):
            found.setdefault(pair, []).append(shared)
    return {(int(a), int(b)) for (a, b), parts in found.items() if verified(parts)}, len(found)
