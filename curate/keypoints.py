"""Near-duplicates that survive crops, captions and watermarks: local features, visual words, two checks.

A 64-bit pHash describes the whole frame, so a copy cropped by a few percent, or with a caption bar over it,
lands 8-20 bits away, past any radius that keeps distinct pictures apart. Local features do not care about
the frame: most corners of the picture are still there, at the same places up to one similarity transform.

- `describe(view)` (decode): ORB keypoints (OpenCV, Apache-2.0) on the analysis view resized to a 400-pixel
  longer side, so any two copies meet at nearly the same scale; `KEEP` of them, spread over the picture, each
  as 32 descriptor bytes and its position, packed in `ROW` bytes (`KEEP * ROW` = 14.4 KB a picture at most);
  and that frame in grey at a `THUMB`-pixel longer side, as binary PGM (at most 16 KB; Pillow reads it).
- `keys(features)` (dedup), the candidates: each keypoint gives `KEY_TABLES` keys, each `KEY_BITS` of its
  descriptor bits at a table's fixed positions. Pictures sharing at least `MIN_SHARED` keys are a candidate
  pair; a key held by more than `BUCKET_CAP` pictures is a stop key (text strokes, flat corners: it would make
  many pairs and tell nothing). Keys are long so that unrelated pictures rarely share one even among
  billions (`benchmarks/words.py`: 24-bit keys were held by chance by about N / 42,000 pictures, so at 2x10^9
  every one would be a stop key), and many so that two views of one corner agree on every bit of some of them.
- `words(features)` (dedup), the correspondences of one candidate pair (`pair_evidence`): each keypoint gives
  `TABLES` visual words of `WORD_BITS` bits; the words two pictures share, each at the strongest keypoint
  holding it, are the pair's correspondences (a point in one, a point in the other). Short words agree
  across more edits; only the pair's own two pictures are compared, so chance is no concern there.
- `evidence(matches, layout_a, layout_b)` and `accepts` (dedup), the geometric check: at least `MIN_MATCHES`
  correspondences, of which at least `MIN_MATCHES` agree with one RANSAC similarity fit that only crops and
  rescales (scale 0.6-1.7, rotation at most 5 degrees); the agreeing points cover at least `MIN_COVER` of the
  area each picture's keypoints span (a shared logo, watermark, header or chart legend in one corner is not
  the picture); and of the 3x3 cells of a picture's keypoint box that hold keypoints and fall inside the
  other picture, at least `MIN_OCCUPIED` hold an agreeing point, both ways.
- `different(thumb_a, thumb_b, fit)` (dedup), the photometric check on `describe`'s thumbnails: two
  pictures of one template (charts of one style, tables, forms, screenshots of one layout) pass the geometric
  check, since text corners (axes, labels, headers) are where ORB's keypoints gather; what is plotted or
  written inside differs. So the pair's 128-pixel grey thumbnails are aligned by the fit, and at most
  `MAX_DIFFERENT` of the centre of either (the middle 60% of each side: caption bars and corner watermarks
  lie outside it) may differ after local contrast normalization.

Measured on a real labelled set with edited copies (benchmarks/neardup.py, BENCHMARKS.md): crops up to 10% a
side are caught at 0.960 (0.956 on a source held out of the threshold choice), rescales at 0.992, watermarks at
0.996, two edits combined at 0.988, captions and every other edit family at 1.0, and no two distinct pictures
merge; nor do the sample generator's look-alike pairs. The four thresholds were chosen by leave-one-source-out
cross-validation on that set, with the look-alike pairs in every fold's training set.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

SIDE = 400  # both views are resized to this longer side before ORB
DETECT = 700  # ORB's keypoint budget; KEEP of them are stored, spread over the picture (`_spread_out`)
KEEP = 400
SPREAD_GRID = 4  # the stored keypoints: the strongest KEEP / SPREAD_GRID**2 of each cell first
ROW = 36  # bytes a keypoint: 32 descriptor bytes, x and y as uint16 in 1/8 pixel
_SUBPIXEL = 8
TABLES = 8  # visual words per keypoint (the check's correspondences)
WORD_BITS = 24  # descriptor bits per word
KEY_BITS = 48  # descriptor bits of a candidate key (module doc)
KEY_TABLES = 64  # candidate keys a keypoint
MIN_SHARED = 5  # candidate keys two pictures must share to be checked
BUCKET_CAP = 32  # a candidate key held by more pictures than this is a stop key
MIN_MATCHES = 8  # correspondences, and inliers of the fit, a match needs
MIN_COVER = 0.2  # inlier bounding box / the keypoints' bounding box, in both pictures
GRID = 3  # cells a side of the keypoint box, for the occupancy check
MIN_OCCUPIED = 0.4  # share of the overlapping cells with keypoints that hold an agreeing point
THUMB = 128  # longer side of the grey thumbnail that the photometric check compares
CENTRE = (0.2, 0.8)  # the part of a thumbnail compared (a fraction of each side): captions, corner marks are outside
SIGMA = 4.0  # local contrast normalization: Gaussian sigma, thumbnail pixels
FLOOR = 8.0  # grey levels added to the local deviation, so flat areas compare as flat
TOLERANCE = 1.0  # a pixel differs when its normalized value is this far outside the other's 3x3 range
MAX_DIFFERENT = 0.01  # share of the centre that may differ, the larger way round
SCALE = (0.6, 1.7)
MAX_ROTATION = 5.0  # degrees
RANSAC_PIXELS = 4.0
# The top bit of a place marks a picture of an evaluation set (decontamination): it is matched against every
# other picture, never against another picture of an evaluation set.
EVALUATION = 1 << 63


def table_bits(tables: int = TABLES, bits: int = WORD_BITS) -> np.ndarray:
    """tables x bits descriptor bit positions, fixed forever (a changed choice changes every word)."""
    order = lambda t, i: hashlib.sha256(f"curate-words:{t}:{i}".encode()).digest()  # noqa: E731
    return np.array([sorted(sorted(range(256), key=lambda i: order(t, i))[:bits]) for t in range(tables)])


_BITS = table_bits()
_KEY_BITS = table_bits(KEY_TABLES, KEY_BITS)
_local = threading.local()  # one detector a thread: a runner may call from several at once


def _detector() -> Any:
    if not hasattr(_local, "orb"):
        import cv2

        _local.orb = cv2.ORB_create(nfeatures=DETECT)  # type: ignore[attr-defined]
    return _local.orb


class Described(NamedTuple):
    """What decode keeps of a picture for dedup's keypoint matching."""

    features: bytes  # packed keypoints (empty when there are none: a flat or tiny picture)
    thumbnail: bytes  # the keypoint frame in grey at a THUMB-pixel longer side, as binary PGM (<= 16 KB)


def _resized(grey: np.ndarray, side: int) -> np.ndarray:
    import cv2

    h, w = grey.shape
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def describe(view: Image.Image) -> Described:
    """The packed keypoints and the thumbnail of one analysis view."""
    grey = _resized(np.asarray(view.convert("L")), SIDE)
    small = _resized(grey, THUMB)
    thumbnail = b"P5 %d %d 255\n" % (small.shape[1], small.shape[0]) + small.tobytes()  # PGM: no encoding cost
    points, descriptors = _detector().detectAndCompute(grey, None)
    if descriptors is None or not len(points):
        return Described(b"", thumbnail)
    strongest = _spread_out(points, (grey.shape[1], grey.shape[0]))
    xy = np.array([points[i].pt for i in strongest], dtype=np.float64)
    packed = np.round(xy * _SUBPIXEL).clip(0, 65535).astype("<u2")
    return Described(np.hstack([descriptors[strongest], packed.view(np.uint8).reshape(-1, 4)]).tobytes(), thumbnail)


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
Words = tuple[Layout, np.ndarray, np.ndarray]  # what `words` gives of one picture: layout, words, positions


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


def words(features: bytes) -> Words:
    """(layout, words, positions): each picture's words once (table << WORD_BITS | the word's bits: uint32, uint64
    past 32 bits), at the strongest keypoint that has it, and those keypoints' positions (n x 2 uint16, in 1/8
    pixel as stored: half the bytes of floats through the shuffle, and exact)."""
    descriptors, xy = unpack(features)
    kind = np.dtype(np.uint32 if WORD_BITS + int(TABLES - 1).bit_length() <= 32 else np.uint64)
    if not len(xy):
        return layout(xy), np.zeros(0, dtype=kind), np.zeros((0, 2), dtype=np.uint16)
    bits = np.unpackbits(descriptors, axis=1).astype(kind)
    weights = (1 << np.arange(WORD_BITS)).astype(kind)
    tables = (np.arange(TABLES) << WORD_BITS).astype(kind)[:, None]
    found = (bits[:, _BITS] * weights).sum(axis=2, dtype=kind).T | tables  # TABLES x keypoints, table-major
    flat = found.ravel()
    _, first = np.unique(flat, return_index=True)
    first.sort()  # table by table, strongest keypoint first, as the words were found
    return layout(xy), flat[first], (xy[first % len(xy)] * _SUBPIXEL).astype(np.uint16)


Match = tuple[float, float, float, float]  # x, y in one picture; x, y in the other


class Evidence(NamedTuple):
    """What the geometric check measured for one candidate pair; `accepts` compares it with thresholds."""

    matches: int  # correspondences (shared visual words)
    inliers: int  # of them, those agreeing with the best crop-and-rescale fit (0: no fit, or one that rotates
    #               or rescales too much)
    cover: float  # the inliers' box / the keypoints' box, the smaller of the two pictures
    occupied: float  # share of the overlapping cells with keypoints that hold an inlier, the smaller way round
    fit: tuple[float, ...] = ()  # the 2x3 similarity (row-major) from the first picture's points to the second's


NO_EVIDENCE = Evidence(0, 0, 0.0, 0.0)


def evidence(matches: np.ndarray | Sequence[Match], layout_a: Layout, layout_b: Layout,
             least: int = MIN_MATCHES) -> Evidence:
    """The geometric check's measurements for correspondences (rows x, y, x', y'): one RANSAC similarity fit
    that only crops and rescales, and where its inliers are. Fewer than `least` matches are not fitted.
    Deterministic: the rows are sorted, and OpenCV's RANSAC seeds its generator the same on every call."""
    points = np.asarray(matches, dtype=np.float32).reshape(-1, 4)
    if len(points) < max(least, 3):
        return NO_EVIDENCE._replace(matches=len(points))
    import cv2

    points = points[np.lexsort(points.T[::-1])]
    a, b = np.ascontiguousarray(points[:, :2]), np.ascontiguousarray(points[:, 2:])
    fit, mask = cv2.estimateAffinePartial2D(a, b, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PIXELS)
    if fit is None:
        return NO_EVIDENCE._replace(matches=len(points))
    scale = float(np.hypot(fit[0, 0], fit[1, 0]))
    rotation = abs(float(np.degrees(np.arctan2(fit[1, 0], fit[0, 0]))))
    if not (SCALE[0] <= scale <= SCALE[1] and rotation <= MAX_ROTATION):
        return NO_EVIDENCE._replace(matches=len(points))
    inliers = mask.ravel() == 1
    if int(inliers.sum()) < least:
        return NO_EVIDENCE._replace(matches=len(points), inliers=int(inliers.sum()))
    area_a, area_b = (max(1.0, (x1 - x0) * (y1 - y0)) for x0, y0, x1, y1, _ in (layout_a, layout_b))
    cover = min(spread(a[inliers]) / area_a, spread(b[inliers]) / area_b)
    occupied = min(_occupied(a[inliers], layout_a, layout_b, fit),
                   _occupied(b[inliers], layout_b, layout_a, cv2.invertAffineTransform(fit)))
    return Evidence(len(points), int(inliers.sum()), cover, occupied, tuple(fit.ravel().tolist()))


def accepts(found: Evidence, min_matches: int = MIN_MATCHES, min_cover: float = MIN_COVER,
            min_occupied: float = MIN_OCCUPIED) -> bool:
    """The geometric check's thresholds: enough agreeing correspondences, over enough of both pictures and in
    enough parts of them (a shared logo, header or legend in one corner is not the picture)."""
    return (found.matches >= min_matches and found.inliers >= min_matches and found.cover >= min_cover
            and found.occupied >= min_occupied)


def _normalized(grey: np.ndarray) -> np.ndarray:
    import cv2

    detail = grey - cv2.GaussianBlur(grey, (0, 0), SIGMA)
    return detail / (np.sqrt(cv2.GaussianBlur(detail * detail, (0, 0), SIGMA)) + FLOOR)


def _different_one_way(mine: np.ndarray, theirs: np.ndarray, to_theirs: np.ndarray) -> float:
    """The share of my centre, where the other picture covers it, that differs from the other aligned on it."""
    import cv2

    h, w = mine.shape
    back = cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR
    aligned = cv2.warpAffine(theirs, to_theirs, (w, h), flags=back, borderValue=0)
    covered = cv2.warpAffine(np.ones_like(theirs), to_theirs, (w, h), flags=back, borderValue=0) > 0.999
    covered[:round(h * CENTRE[0]), :] = covered[round(h * CENTRE[1]):, :] = False
    covered[:, :round(w * CENTRE[0])] = covered[:, round(w * CENTRE[1]):] = False
    if covered.sum() < 16:
        return 1.0
    a, b = _normalized(mine), _normalized(aligned)
    kernel = np.ones((3, 3), np.uint8)
    outside = (a < cv2.erode(b, kernel) - TOLERANCE) | (a > cv2.dilate(b, kernel) + TOLERANCE)
    return float(outside[covered].mean())


def different(thumb_a: bytes, thumb_b: bytes, fit: Sequence[float]) -> float:
    """The photometric check, on two thumbnails and the similarity `fit` (curate.keypoints.Evidence.fit, between
    the keypoint frames): the share of the centre of either picture that differs from the other aligned on it,
    after local contrast normalization (so brightness, contrast and recompression do not count) and with one
    pixel of slack (the fit is not exact), the larger way round. Copies differ in their frame (a crop), at an
    edge (a caption bar) or in a corner (a watermark); two pictures of one template differ inside."""
    import cv2

    a, b = (cv2.imdecode(np.frombuffer(t, np.uint8), cv2.IMREAD_GRAYSCALE) for t in (thumb_a, thumb_b))
    if a is None or b is None:
        return 1.0
    a, b = a.astype(np.float32), b.astype(np.float32)
    frame = np.array(fit, dtype=np.float64).reshape(2, 3)
    # pixel i of a thumbnail covers [i, i + 1) of THUMB, pixel j of the keypoint frame [j, j + 1) of SIDE
    r = SIDE / THUMB
    to_frame = np.array([[r, 0, 0.5 * r - 0.5], [0, r, 0.5 * r - 0.5]])
    to_thumb = np.array([[1 / r, 0, 0.5 / r - 0.5], [0, 1 / r, 0.5 / r - 0.5]])
    forward = _compose(to_thumb, _compose(frame, to_frame))
    return max(_different_one_way(a, b, forward), _different_one_way(b, a, cv2.invertAffineTransform(forward)))


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine map `outer` after `inner`."""
    return outer[:, :2] @ inner + np.hstack([np.zeros((2, 2)), outer[:, 2:]])




def key_bits(descriptors: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The bits at `positions` (one table's, or tables x bits) of each descriptor as a number (uint64, the first
    position most significant), without the table."""
    picked = np.packbits(np.unpackbits(descriptors, axis=1)[:, positions], axis=-1)  # bytes, big end first
    padded = np.zeros(picked.shape[:-1] + (8,), dtype=np.uint8)
    padded[..., 8 - picked.shape[-1]:] = picked
    return padded.view(">u8")[..., 0].astype(np.uint64)


def keys(features: bytes) -> np.ndarray:
    """A picture's candidate keys, sorted and once each (uint64: table << KEY_BITS | KEY_BITS descriptor bits of
    a keypoint at the table's fixed positions). Long, so that unrelated pictures rarely share one even among
    billions; many, so that a copy's keypoints share some whatever its edit."""
    descriptors, _ = unpack(features)
    if not len(descriptors):
        return np.zeros(0, dtype=np.uint64)
    tables = np.arange(KEY_TABLES, dtype=np.uint64) << np.uint64(KEY_BITS)
    return np.unique(key_bits(descriptors, _KEY_BITS) | tables)


def by_partition(features: bytes, partitions: int, place: int = 0) -> Iterator[tuple[int, tuple[int, np.ndarray]]]:
    """One picture's candidate keys, as one element per partition: (partition, (place, keys there)). `place` is
    a 64-bit number that names the picture wherever pairs are listed (8 bytes where a key takes 32: the dedup
    stage uses where the picture is in OUT/images)."""
    found = keys(features)
    mixed = found * np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing, modulo 2**64
    parts = (mixed % np.uint64(partitions)).astype(np.int64)
    for part in np.unique(parts).tolist():
        yield part, (place, found[parts == part])


COUNTED = 4096  # members a chunk when a partition's keys are counted


def _pairable(members: Iterable[tuple[int, np.ndarray]]) -> np.ndarray:
    """The keys of a partition that can make a pair, sorted: held by 2 to BUCKET_CAP of its pictures. Counted a
    chunk of members at a time, so memory grows with the partition's distinct keys, not with the pictures
    holding one of them (a key in every picture of the job, a logo or a flat corner, lands in one partition)."""
    values: np.ndarray | None = None
    counts = np.zeros(0, dtype=np.int64)
    chunk: list[np.ndarray] = []

    def merge() -> None:
        nonlocal values, counts
        found, held = np.unique(np.concatenate(chunk), return_counts=True)  # a picture holds a key once
        if values is not None:
            found, held = np.concatenate([values, found]), np.concatenate([counts, held])
            order = np.argsort(found, kind="stable")
            found, held = found[order], held[order]
            starts = np.flatnonzero(np.r_[True, found[1:] != found[:-1]])
            found, held = found[starts], np.add.reduceat(held, starts)
        values, counts = found, held
        chunk.clear()

    for member in members:
        chunk.append(member[1])
        if len(chunk) == COUNTED:
            merge()
    if chunk:
        merge()
    if values is None:
        return np.zeros(0, dtype=np.uint64)
    return values[(counts >= 2) & (counts <= BUCKET_CAP)]


def partition_pairs(members: Iterable[tuple[int, np.ndarray]]) -> Iterator[tuple[tuple[int, int], int]]:
    """Inside one partition, the pairs of pictures that share keys there that are not stop keys (held by more
    than BUCKET_CAP pictures): ((place, place), keys shared here), the smaller place first; summed over the
    partitions, a pair sharing MIN_SHARED is a candidate. Two pictures of evaluation sets (places with the
    EVALUATION bit) make no pair. `members` is read twice (a runner's grouped values can be, and a list): first
    to count the keys, then keeping only the pictures' pairable keys, so what is held is bounded by the pairs
    the partition can make (BUCKET_CAP a key), not by its pictures."""
    pairable = _pairable(members)
    if not len(pairable):
        return
    places, held = [], []
    for place, found in members:
        at = np.searchsorted(pairable, found).clip(0, len(pairable) - 1)
        mine = found[pairable[at] == found]
        if len(mine):
            places.append(place)
            held.append(mine)
    owner = np.array(places, dtype=np.uint64).repeat([len(h) for h in held])
    flat = np.concatenate(held)
    order = np.lexsort((owner, flat))
    flat, owner = flat[order], owner[order]
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    sizes = np.diff(np.r_[starts, len(flat)])
    firsts, seconds = [], []
    for size in np.unique(sizes).tolist():  # every pairable key is held by 2..BUCKET_CAP pictures
        rows = starts[sizes == size][:, None]
        i, j = np.triu_indices(size, k=1)
        firsts.append(owner[(rows + i).ravel()])
        seconds.append(owner[(rows + j).ravel()])
    first, second = np.concatenate(firsts), np.concatenate(seconds)  # owners ascend inside a key
    apart = (first < np.uint64(EVALUATION)) | (second < np.uint64(EVALUATION))  # not two evaluation pictures
    pairs, shared = np.unique(np.stack([first[apart], second[apart]], axis=1), axis=0, return_counts=True)
    yield from (((a, b), n) for (a, b), n in zip(pairs.tolist(), shared.tolist(), strict=True))


def candidate_pairs(features: Sequence[bytes], partitions: int, evaluation: int = 0) -> dict[tuple[int, int], int]:
    """The candidate step in one process (benchmarks and tests): the pairs of indices into `features` (the
    smaller first) sharing at least MIN_SHARED keys that are not stop keys, with how many they share. The
    first `evaluation` pictures are an evaluation set's: paired with the others, not with each other."""
    groups: dict[int, list] = {}
    for index, blob in enumerate(features):
        for part, member in by_partition(blob, partitions, index | EVALUATION if index < evaluation else index):
            groups.setdefault(part, []).append(member)
    shared: dict[tuple[int, int], int] = {}
    for members in groups.values():
        for pair, n in partition_pairs(members):
            shared[pair] = shared.get(pair, 0) + n
    return {(min(a, b), max(a, b)): n for (a, b), n in
            (((a & ~EVALUATION, b & ~EVALUATION), n) for (a, b), n in shared.items()) if n >= MIN_SHARED}


def pair_evidence(words_a: Words, words_b: Words, least: int = MIN_MATCHES) -> Evidence:
    """The geometric check's measurements for one candidate pair, given each picture's `words`: its
    correspondences are the visual words the two share, each at the strongest keypoint holding it in each."""
    layout_a, found_a, xy_a = words_a
    layout_b, found_b, xy_b = words_b
    _, in_a, in_b = np.intersect1d(found_a, found_b, assume_unique=True, return_indices=True)
    matches = np.hstack([xy_a[in_a], xy_b[in_b]]).astype(np.float32) / _SUBPIXEL
    return evidence(matches, layout_a, layout_b, least)


def same_picture(words_a: Words, thumbnail_a: bytes, words_b: Words, thumbnail_b: bytes) -> bool:
    """Both checks on a candidate pair: the geometric one on their shared words, then the photometric one on
    their thumbnails."""
    found = pair_evidence(words_a, words_b)
    return accepts(found) and different(thumbnail_a, thumbnail_b, found.fit) <= MAX_DIFFERENT


def match_all(features: Sequence[bytes], thumbnails: Sequence[bytes], partitions: int,
              evaluation: int = 0) -> tuple[set[tuple[int, int]], int]:
    """The dedup stage's keypoint steps in one process, without Beam (benchmarks and tests): the pairs of
    indices into `features` (and their `thumbnails`) that are one picture, and how many candidate pairs were
    checked. The first `evaluation` pictures are an evaluation set's: they are matched with the others, not
    with each other."""
    candidates = candidate_pairs(features, partitions, evaluation)
    found = {i: words(features[i]) for pair in candidates for i in pair}
    same = {(a, b) for a, b in candidates if same_picture(found[a], thumbnails[a], found[b], thumbnails[b])}
    return same, len(candidates)
