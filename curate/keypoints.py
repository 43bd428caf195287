"""Near-duplicates that survive crops, captions and watermarks: local features, visual words, geometric check.

A 64-bit pHash describes the whole frame, so a copy cropped by a few percent, or with a caption bar over it,
lands 8-20 bits away, past any radius that keeps distinct pictures apart. Local features do not care about
the frame: most corners of the picture are still there, at the same places up to one similarity transform.

- `describe(view)` (decode): ORB keypoints (OpenCV, Apache-2.0) on the analysis view resized to a 400-pixel
  longer side, so any two copies meet at nearly the same scale; the `KEEP` strongest, each as 32 descriptor
  bytes and its position, packed in `ROW` bytes (`KEEP * ROW` = 14.4 KB a picture at most).
- `words(features)` (dedup): each keypoint gives `TABLES` visual words, one per table, each the keypoint's
  descriptor bits at `WORD_BITS` fixed positions. Two views of one corner usually agree on every bit of at
  least one table; unrelated corners agree on a table with probability ~2**-28. Pictures that share a word
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

Measured on the real labelled set (benchmarks/neardup.py, BENCHMARKS.md): the edited copies of every family
are caught at >= 0.97 and no two distinct pictures merge. The constants were chosen on that set once, across
all its sources; the benchmark reports them per source.
"""

from __future__ import annotations

import hashlib
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
WORD_BITS = 28  # descriptor bits per word
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
_orb: Any = None


def _detector() -> Any:
    global _orb
    if _orb is None:
        import cv2

        _orb = cv2.ORB_create(nfeatures=DETECT)  # type: ignore[attr-defined]
    return _orb


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


def words(features: bytes) -> tuple[Layout, list[tuple[int, float, float]]]:
    """(layout, [(word, x, y)]): each picture's words once, at the strongest keypoint that has it."""
    descriptors, xy = unpack(features)
    if not len(xy):
        return layout(xy), []
    bits = np.unpackbits(descriptors, axis=1)
    seen: set[int] = set()
    out = []
    for table, positions in enumerate(_BITS):
        values = np.packbits(bits[:, positions], axis=1, bitorder="little")
        for i, value in enumerate(values):
            word = (table << 56) | int.from_bytes(value.tobytes(), "little")
            if word not in seen:
                seen.add(word)
                out.append((word, float(xy[i, 0]), float(xy[i, 1])))
    return layout(xy), out


Match = tuple[float, float, float, float]  # x, y in one picture; x, y in the other


def bucket_matches(members: Sequence[tuple[str, float, float]]) -> Iterator[tuple[tuple[str, str], Match]]:
    """The correspondences one word gives: every pair of pictures holding it (keys in order), unless it is a
    stop word."""
    if len(members) > BUCKET_CAP:
        return
    ordered = sorted(members)
    for i, (a, xa, ya) in enumerate(ordered):
        for b, xb, yb in ordered[i + 1:]:
            if a != b:
                yield (a, b), (xa, ya, xb, yb)


def same_picture(matches: Sequence[Match], layout_a: Layout, layout_b: Layout) -> bool:
    """The geometric check: do the correspondences agree with one crop-and-rescale of a picture, over most of
    it? Deterministic: the matches are sorted, and OpenCV's RANSAC seeds its generator the same on every call."""
    if len(matches) < MIN_MATCHES:
        return False
    import cv2

    points = np.array(sorted(matches), dtype=np.float32)
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


def partition_of(word: int, partitions: int) -> int:
    """Which of `partitions` groups a word's pictures meet in (every picture holding it sends it there)."""
    return ((word * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) % partitions


def by_partition(key: str, features: bytes, partitions: int) -> Iterator[tuple[int, tuple[str, Layout, list]]]:
    """One picture's words, as one element per partition: (partition, (key, layout, [(word, x, y)]))."""
    where, found = words(features)
    parts: dict[int, list] = {}
    for word in found:
        parts.setdefault(partition_of(word[0], partitions), []).append(word)
    for part, held in sorted(parts.items()):
        yield part, (key, where, held)


def partition_matches(members: Iterable[tuple[str, Layout, list]]) -> Iterator[tuple[tuple[str, str], tuple]]:
    """Inside one partition: ((a, b), (layout a, layout b, [matches])) for every pair sharing a word there."""
    layouts: dict[str, Layout] = {}
    held: dict[int, list[tuple[str, float, float]]] = {}
    for key, where, found in members:
        layouts[key] = where
        for word, x, y in found:
            held.setdefault(word, []).append((key, x, y))
    pairs: dict[tuple[str, str], list[Match]] = {}
    for word_members in held.values():
        for pair, match in bucket_matches(word_members):
            pairs.setdefault(pair, []).append(match)
    for (a, b), matches in pairs.items():
        yield (a, b), (layouts[a], layouts[b], matches)


def verified(parts: Iterable[tuple[Layout, Layout, list]]) -> bool:
    """A candidate pair's matches from every partition, checked."""
    matches: list[Match] = []
    layouts: tuple[Layout, Layout] = ((0.0, 0.0, 1.0, 1.0, 0),) * 2
    for layout_a, layout_b, found in parts:
        layouts = (layout_a, layout_b)  # the same in every partition
        matches.extend(found)
    return same_picture(matches, *layouts)
