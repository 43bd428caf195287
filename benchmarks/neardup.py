"""Near-duplicate recall per edit family, and false merges, on a folder of real pictures.

Every picture gets one edited copy per family (curate.sample.edits: crops up to 10% a side, rescale 25-200%,
JPEG 30-95, format change, brightness and contrast +-15%, caption bar, watermark, two of them combined). A
method's recall for a family is the share of (original, copy) pairs it calls near-duplicates; its false merges
are the pairs of distinct originals it calls near-duplicates (the real set holds look-alikes: pages of one
document, charts of one style, shots on one background). Pictures are decoded as the decode stage decodes
them (curate.imaging.decode: the analysis view), so the figures are the pipeline's.

Methods:
- `phash`: 64-bit pHashes at most `--radius` bits apart (every pair compared);
- `keypoints`: what the dedup stage does (curate.keypoints): every picture's ORB keypoints become visual words,
  pictures sharing words in one partition are candidates (never all pairs), and a candidate is a match when
  its shared words agree with one crop-and-rescale over most of both pictures and, so aligned, their
  thumbnails agree in the middle. The corpus is every original
  and every copy together, so copies of different originals (two pictures with one watermark) count as
  distinct pairs too. Reported per source repository as well (the constants were chosen once, for all).

The keypoint checks' thresholds (MIN_MATCHES, MIN_COVER, MIN_OCCUPIED, MAX_DIFFERENT) are cross-validated with
`--cv`, leaving one source repository out at a time: on the other sources (and the sample generator's
look-alike pairs, always in training), the grid point with the fewest false merges, then the best recall
(ties: the strictest), judged on the held-out source (its copies' recall, and false merges involving its
pictures).

    python benchmarks/neardup.py --images DIR [--radius 6] [--cv] [--out build/bench/neardup.json]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from curate import keypoints
from curate.hashing import hamming, phash64
from curate.imaging import Decoded, decode, to_rgb
from curate.pipelines.dedup import PICTURES_PER_PARTITION
from curate.readers import IMAGE_SUFFIXES
from curate.sample import images
from curate.sample.edits import FAMILIES, edited


def _full_rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.seek(0)
        return ImageOps.exif_transpose(to_rgb(im))


def _source(name: str) -> str:
    return name.split("__", 1)[0]


def _keypoint_matches(pictures: list[keypoints.Described]) -> tuple[set[tuple[int, int]], int, float]:
    """The pairs (indices) the keypoint method calls the same picture; candidate pairs; ms per picture."""
    started = time.perf_counter()
    same, candidates = keypoints.match_all([f for f, _ in pictures], [t for _, t in pictures],
                                           max(1, len(pictures) // PICTURES_PER_PARTITION))
    return same, candidates, 1000 * (time.perf_counter() - started) / max(1, len(pictures))


GRID = {"min_matches": (6, 8, 10, 12, 16), "min_cover": (0.1, 0.15, 0.2, 0.25, 0.3, 0.4),
        "min_occupied": (0.4, 0.5, 0.6, 0.7, 0.8),
        "max_different": (0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 1.0)}  # 1.0: no photometric check
LOOKALIKE_SEEDS = 8  # synthetic look-alike pairs per kind (curate.sample.images.lookalike)


def _lookalikes() -> list[keypoints.Described]:
    """The keypoints and thumbnails of the sample generator's look-alike pairs (one template, other content), pair
    after pair, every kind but "photo" (its quadrants come from the photographs the signs are drawn on)."""
    found = []
    for kind in (k for k in images.LOOKALIKE_KINDS if k != "photo"):
        for seed in range(LOOKALIKE_SEEDS):
            for rendered in images.lookalike(kind, seed):
                decoded = decode(images.encode(rendered.image, "jpeg", quality=88))
                assert isinstance(decoded, Decoded)
                found.append(keypoints.describe(decoded.view))
    return found


def _cross_validate(corpus: list[tuple[int, str, int, keypoints.Described]], names: list[str]) -> dict[str, Any]:
    """Leave-one-source-out choice of the keypoint thresholds over GRID (see the module's doc). The sample
    generator's look-alike pairs are in every fold's training set; two synthetic pictures of different pairs
    count as neither (the generator draws its signs and scenes from a few photographs, so they can be a
    crop of one another: a merge either way is right)."""
    synthetic = _lookalikes()
    pictures = [c[3] for c in corpus] + synthetic
    original = np.array([c[0] for c in corpus] + [len(names) + n for n in range(len(synthetic))])
    source = np.array([_source(names[c[0]]) for c in corpus] + ["sample look-alikes"] * len(synthetic))
    least = min(GRID["min_matches"])
    loosest = {k: v[0] for k, v in GRID.items() if k != "max_different"}
    pairs, found = [], []  # the candidate pairs that pass the loosest geometric check: no other can pass
    words = [keypoints.words(f) for f, _ in pictures]
    for a, b in sorted(keypoints.candidate_pairs([f for f, _ in pictures], 1)):
        measured = keypoints.pair_evidence(words[a], words[b], least)
        if keypoints.accepts(measured, *loosest.values()):
            pairs.append((a, b))
            found.append((*measured[:4], keypoints.different(pictures[a][1], pictures[b][1], measured.fit)))
    ev = np.array(found, dtype=np.float64).reshape(-1, 5)
    i, j = (np.array([p[k] for p in pairs], dtype=np.int64) for k in (0, 1))
    # the pairs that count: an original with its copy (recall), distinct pictures (false merges)
    copies = [(n, f) for n, (o, f, _, _) in enumerate(corpus) if f]
    where = {o: n for n, (o, f, _, _) in enumerate(corpus) if not f}
    index = {p: k for k, p in enumerate(pairs)}
    copy_pair = np.array([index.get((min(where[corpus[n][0]], n), max(where[corpus[n][0]], n)), -1)
                          for n, _ in copies])
    copy_source = np.array([source[n] for n, _ in copies])
    copy_family = np.array([f for _, f in copies])
    both_synthetic = (source[i] == "sample look-alikes") & (source[j] == "sample look-alikes")
    lookalike_pair = both_synthetic & ((i - len(corpus)) % 2 == 0) & (j == i + 1)  # i < j: keys sort as indices
    distinct = (original[i] != original[j]) & (~both_synthetic | lookalike_pair)
    points = list(itertools.product(*GRID.values()))
    accepted = np.stack([(ev[:, 0] >= m) & (ev[:, 1] >= m) & (ev[:, 2] >= c) & (ev[:, 3] >= o) & (ev[:, 4] <= d)
                         for m, c, o, d in points])  # grid point x candidate pair
    caught = np.concatenate([accepted, np.zeros((len(points), 1), dtype=bool)], axis=1)[:, copy_pair]

    def choose(train_pairs: np.ndarray, train_copies: np.ndarray) -> int:
        false = accepted[:, train_pairs & distinct].sum(axis=1)
        recall = caught[:, train_copies].mean(axis=1)
        return max(range(len(points)), key=lambda k: (-false[k], recall[k], -points[k][3], *points[k][2::-1]))

    folds, held_caught = [], np.zeros(len(copies), dtype=bool)
    for held in sorted({_source(name) for name in names}):
        out = (source[i] == held) | (source[j] == held)
        k = choose(~out, copy_source != held)
        mine = copy_source == held
        held_caught[mine] = caught[k, mine]
        folds.append({"held_out": held, "chosen": dict(zip(GRID, points[k], strict=True)),
                      "recall": round(float(caught[k, mine].mean()), 3) if mine.any() else None,
                      "false_merges": int(accepted[k, out & distinct].sum())})
    final = choose(np.ones(len(pairs), dtype=bool), np.ones(len(copies), dtype=bool))
    current = (keypoints.MIN_MATCHES, keypoints.MIN_COVER, keypoints.MIN_OCCUPIED, keypoints.MAX_DIFFERENT)
    at = {"chosen_on_all_sources": final, "current": points.index(current)}
    return {"grid": GRID, "lookalike_pictures": len(synthetic), "geometric_candidates": len(pairs),
            "folds": folds,
            "held_out_recall": {f: round(float(held_caught[copy_family == f].mean()), 3) for f in FAMILIES},
            "held_out_false_merges": sum(f["false_merges"] for f in folds),
            **{name: {**dict(zip(GRID, points[k], strict=True)),
                      "lookalike_false_merges": int(accepted[k, lookalike_pair].sum()),
                      "real_false_merges": int(accepted[k, distinct & ~both_synthetic].sum()),
                      "recall": round(float(caught[k].mean()), 4)} for name, k in at.items()},
            "lookalike_pairs": int(len(synthetic) // 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, help="a folder of real pictures (searched recursively)")
    parser.add_argument("--radius", type=int, default=6, help="phash: Hamming radius (the dedup default: 6)")
    parser.add_argument("--cv", action="store_true", help="cross-validate the keypoint thresholds by source")
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    args = parser.parse_args()

    files = sorted(p for p in Path(args.images).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    # every picture of the corpus: (original's index, family or "" for the original, phash, keypoints)
    corpus: list[tuple[int, str, int, keypoints.Described]] = []
    names: list[str] = []
    ms = {"decode": 0.0, "phash": 0.0, "keypoints": 0.0}
    for path in files:
        data = path.read_bytes()
        started = time.perf_counter()
        result = decode(data)
        ms["decode"] += time.perf_counter() - started
        if not isinstance(result, Decoded):
            continue
        started = time.perf_counter()
        h = phash64(result.view)
        middle = time.perf_counter()
        features = keypoints.describe(result.view)
        ms["phash"] += middle - started
        ms["keypoints"] += time.perf_counter() - middle
        names.append(path.name)
        original = len(names) - 1
        corpus.append((original, "", h, features))
        rgb = _full_rgb(data)
        for family in FAMILIES:
            copy, _ = edited(rgb, family, original)
            decoded = decode(copy)
            if isinstance(decoded, Decoded):
                corpus.append((original, family, phash64(decoded.view), keypoints.describe(decoded.view)))
    n = max(1, len(names))
    per_picture = {k: round(1000 * v / n, 2) for k, v in ms.items()}  # originals only: copies are not timed
    where = {original: i for i, (original, family, _, _) in enumerate(corpus) if not family}
    copies = [(where[o], i, f) for i, (o, f, _, _) in enumerate(corpus) if f]
    matched, candidates, match_ms = _keypoint_matches([c[3] for c in corpus])
    methods = {
        "phash": lambda i, j: hamming(corpus[i][2], corpus[j][2]) <= args.radius,
        "keypoints": lambda i, j: (min(i, j), max(i, j)) in matched,
    }
    figures: dict[str, Any] = {"pictures": len(names), "corpus": len(corpus), "radius": args.radius,
                               "ms_per_picture": per_picture, "methods": {}}
    family_sizes = Counter(original for original, _, _, _ in corpus)
    distinct = len(corpus) * (len(corpus) - 1) // 2 - sum(n * (n - 1) // 2 for n in family_sizes.values())
    for name, same in methods.items():
        recall = {f: round(sum(same(i, j) for i, j, fam in copies if fam == f) /
                           max(1, sum(fam == f for _, _, fam in copies)), 3) for f in FAMILIES}
        sources = sorted({_source(x) for x in names})
        by_source = {src: round(sum(same(i, j) for i, j, _ in copies if _source(names[corpus[i][0]]) == src) /
                                max(1, sum(_source(names[corpus[i][0]]) == src for i, _, _ in copies)), 3)
                     for src in sources}
        if name == "keypoints":  # the method's own candidates: only the pairs it matched can be false
            false = [(a, b) for a, b in matched if corpus[a][0] != corpus[b][0]]
        else:
            false = [(a, b) for a, b in itertools.combinations(range(len(corpus)), 2)
                     if corpus[a][0] != corpus[b][0] and same(a, b)]
        figures["methods"][name] = {
            "recall": recall, "recall_by_source": by_source, "false_merges": len(false), "distinct_pairs": distinct,
            "false_pairs": [(names[corpus[a][0]], corpus[a][1] or "original", names[corpus[b][0]],
                             corpus[b][1] or "original") for a, b in false[:20]]}
    figures["methods"]["keypoints"]["candidates_per_picture"] = round(candidates / len(corpus), 2)
    figures["methods"]["keypoints"]["match_ms_per_picture"] = round(match_ms, 2)
    # the same among distinct pictures only (the originals): what a corpus with few duplicates costs
    figures["methods"]["keypoints"]["match_ms_per_distinct_picture"] = round(
        _keypoint_matches([c[3] for c in corpus if not c[1]])[2], 2)
    if args.cv:
        figures["cv"] = _cross_validate(corpus, names)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
