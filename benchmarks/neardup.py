"""Near-duplicate recall per edit family, and false merges, on a folder of real pictures.

Every picture gets one edited copy per family (curate.sample.edits: crops up to 10% a side, rescale 25-200%,
JPEG 30-95, format change, brightness and contrast +-15%, caption bar, watermark, two of them combined). A
method's recall for a family is the share of (original, copy) pairs it calls near-duplicates; its false merges
are the pairs of distinct originals it calls near-duplicates (the real set holds look-alikes: pages of one
document, charts of one style, shots on one background). Pictures are decoded as the decode stage decodes
them (curate.imaging.decode: the analysis view), so the figures are the pipeline's.

Methods:
- `phash`: today's rule, 64-bit pHashes at most `--radius` bits apart;
- `orb`: a verification step measured on every pair (its ceiling: no candidate generation yet): ORB keypoints
  (OpenCV, 500 a picture, both views at the same longer side) matched with Lowe's ratio test, a partial-affine
  RANSAC fit, and a match when at least `--inliers` correspondences agree with a transform that only crops
  and rescales (scale 0.6-1.7, rotation at most 5 degrees).

    python benchmarks/neardup.py --images DIR [--radius 6] [--inliers 15] [--out build/bench/neardup.json]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from curate.hashing import hamming, phash64
from curate.imaging import Decoded, decode, to_rgb
from curate.readers import IMAGE_SUFFIXES
from curate.sample.edits import FAMILIES, edited

SIDE = 400  # ORB: both views resized to this longer side, so a crop-and-rescale copy fits at scale ~1


def _full_rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.seek(0)
        return ImageOps.exif_transpose(to_rgb(im))


class Orb:
    def __init__(self, min_inliers: int):
        import cv2

        self.cv2, self.min_inliers = cv2, min_inliers
        self.orb = cv2.ORB_create(nfeatures=500)
        self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING)

    def features(self, view: Image.Image) -> tuple[np.ndarray, Any]:
        grey = np.asarray(view.convert("L"))
        h, w = grey.shape
        scale = SIDE / max(h, w)
        grey = self.cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))),
                               interpolation=self.cv2.INTER_AREA if scale < 1 else self.cv2.INTER_LINEAR)
        points, descriptors = self.orb.detectAndCompute(grey, None)
        return np.float32([p.pt for p in points]).reshape(-1, 2), descriptors

    def same(self, a: tuple[np.ndarray, Any], b: tuple[np.ndarray, Any]) -> bool:
        (pa, da), (pb, db) = a, b
        if da is None or db is None or len(da) < 8 or len(db) < 8:
            return False
        pairs = self.matcher.knnMatch(da, db, k=2)
        good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
        if len(good) < self.min_inliers:
            return False
        fit, mask = self.cv2.estimateAffinePartial2D(pa[[g.queryIdx for g in good]], pb[[g.trainIdx for g in good]],
                                                     method=self.cv2.RANSAC, ransacReprojThreshold=4.0)
        if fit is None:
            return False
        scale = float(np.hypot(fit[0, 0], fit[1, 0]))
        angle = abs(float(np.degrees(np.arctan2(fit[1, 0], fit[0, 0]))))
        return int(mask.sum()) >= self.min_inliers and 0.6 <= scale <= 1.7 and angle <= 5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, help="a folder of real pictures (searched recursively)")
    parser.add_argument("--radius", type=int, default=6, help="phash: Hamming radius (the dedup default: 6)")
    parser.add_argument("--inliers", type=int, default=15, help="orb: correspondences a match needs")
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    args = parser.parse_args()

    orb = Orb(args.inliers)
    files = sorted(p for p in Path(args.images).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    names: list[str] = []
    signatures: list[dict[str, Any]] = []
    copies: dict[str, list[tuple[int, dict[str, Any]]]] = {f: [] for f in FAMILIES}
    ms = {"decode": 0.0, "phash": 0.0, "orb_features": 0.0}

    def sign(view: Image.Image) -> dict[str, Any]:
        started = time.perf_counter()
        h = phash64(view)
        middle = time.perf_counter()
        features = orb.features(view)
        ms["phash"] += middle - started
        ms["orb_features"] += time.perf_counter() - middle
        return {"phash": h, "orb": features}

    for index, path in enumerate(files):
        data = path.read_bytes()
        started = time.perf_counter()
        result = decode(data)
        ms["decode"] += time.perf_counter() - started
        if not isinstance(result, Decoded):
            continue
        names.append(path.name)
        signatures.append(sign(result.view))
        rgb = _full_rgb(data)
        for family in FAMILIES:
            copy, _ = edited(rgb, family, index)
            decoded = decode(copy)
            if isinstance(decoded, Decoded):
                copies[family].append((len(names) - 1, {"phash": phash64(decoded.view), "orb": orb.features(decoded.view)}))
    n = max(1, len(names))
    per_picture = {k: round(1000 * v / n, 2) for k, v in ms.items()}  # originals only: copies are not timed
    methods = {"phash": lambda a, b: hamming(a["phash"], b["phash"]) <= args.radius,
               "orb": lambda a, b: orb.same(a["orb"], b["orb"])}
    figures: dict[str, Any] = {"pictures": len(names), "radius": args.radius, "inliers": args.inliers,
                               "ms_per_picture": per_picture, "methods": {}}
    for name, same in methods.items():
        started = time.perf_counter()
        false = [(names[a], names[b]) for a, b in itertools.combinations(range(len(names)), 2)
                 if same(signatures[a], signatures[b])]
        pair_ms = 1000 * (time.perf_counter() - started) / max(1, len(names) * (len(names) - 1) // 2)
        recall = {f: round(sum(same(signatures[i], s) for i, s in pairs) / max(1, len(pairs)), 3)
                  for f, pairs in copies.items()}
        figures["methods"][name] = {"recall": recall, "false_merges": len(false), "false_pairs": false[:20],
                                    "ms_per_pair": round(pair_ms, 3)}
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
