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
  its shared words agree with one crop-and-rescale over most of both pictures. The corpus is every original
  and every copy together, so copies of different originals (two pictures with one watermark) count as
  distinct pairs too. Reported per source repository as well (the constants were chosen once, for all).

    python benchmarks/neardup.py --images DIR [--radius 6] [--out build/bench/neardup.json]
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

from PIL import Image, ImageOps

from curate import keypoints
from curate.hashing import hamming, phash64
from curate.imaging import Decoded, decode, to_rgb
from curate.pipelines.dedup import PICTURES_PER_PARTITION
from curate.readers import IMAGE_SUFFIXES
from curate.sample.edits import FAMILIES, edited


def _full_rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.seek(0)
        return ImageOps.exif_transpose(to_rgb(im))


def _source(name: str) -> str:
    return name.split("__", 1)[0]


def _keypoint_matches(features: list[bytes]) -> tuple[set[tuple[int, int]], int, float]:
    """The pairs (indices) the keypoint method calls the same picture; candidate pairs; ms per picture."""
    started = time.perf_counter()
    same, candidates = keypoints.match_all(features, max(1, len(features) // PICTURES_PER_PARTITION))
    return same, candidates, 1000 * (time.perf_counter() - started) / max(1, len(features))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, help="a folder of real pictures (searched recursively)")
    parser.add_argument("--radius", type=int, default=6, help="phash: Hamming radius (the dedup default: 6)")
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    args = parser.parse_args()

    files = sorted(p for p in Path(args.images).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    # every picture of the corpus: (original's index, family or "" for the original, phash, keypoints)
    corpus: list[tuple[int, str, int, bytes]] = []
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
        blob = keypoints.describe(result.view)
        ms["phash"] += middle - started
        ms["keypoints"] += time.perf_counter() - middle
        names.append(path.name)
        original = len(names) - 1
        corpus.append((original, "", h, blob))
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
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
