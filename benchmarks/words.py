"""Do visual words stay selective at web scale? Chance sharing on distinct pictures, recall on real copies.

A keypoint's visual word (curate.keypoints) is `WORD_BITS` of its 256 ORB descriptor bits, `TABLES` words a
keypoint. Two unrelated pictures share a word by chance; a word held by more than BUCKET_CAP pictures is a stop
word and makes no candidate. Chance grows with the job: a word of one picture is held by other pictures in
proportion to N. This measures, for each candidate scheme (bits x tables):

- chance: on N distinct photo-like pictures (curate.sample.distinct: no two are copies; checked with the matcher
  by benchmarks/scale.py), per table, the mean number of *other* pictures holding a picture's word, and the
  share of a picture's words that are stop words at N; extrapolated linearly to 2x10^9 pictures (chance
  sharing is proportional to N), the expected other holders per word there and the chance partners a picture
  meets (words a picture x holders a word);
- recall: with `--real DIR`, on the real pictures and one edited copy of each per family (curate.sample.edits),
  the stage's own matching (`keypoints.match_all`) with the scheme's words: recall per family, false merges
  (pairs of different originals), candidate pairs a picture and matching time.

    python benchmarks/words.py --pictures 100000 [--real DIR] [--schemes 24x8,32x16,...] [--out FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from curate import keypoints
from curate.imaging import Decoded, decode, to_rgb
from curate.readers import IMAGE_SUFFIXES
from curate.sample.distinct import distinct
from curate.sample.edits import FAMILIES, edited

SCALE = 2_000_000_000


def _descriptors(seed: int) -> np.ndarray:
    descriptors, _ = keypoints.unpack(keypoints.describe(distinct(seed)).features)
    return descriptors.copy()


def distinct_descriptors(n: int, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """(descriptors of all keypoints, k x 32 uint8; the picture of each, k int32) of distinct(0 .. n-1),
    cached in `cache`."""
    path = cache / f"distinct-{n}.npz"
    if path.exists():
        stored = np.load(path)
        return stored["descriptors"], stored["picture"]
    with multiprocessing.Pool() as pool:
        found = pool.map(_descriptors, range(n), chunksize=64)
    picture = np.concatenate([np.full(len(d), i, dtype=np.int32) for i, d in enumerate(found)])
    descriptors = np.concatenate(found)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, descriptors=descriptors, picture=picture)
    return descriptors, picture


def _word(descriptors: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Each keypoint's word of one table (uint64), as keypoints.words computes it: bit j of the word is the
    descriptor's bit positions[j], bits counted as np.unpackbits counts them."""
    word = np.zeros(len(descriptors), dtype=np.uint64)
    for j, position in enumerate(positions.tolist()):
        bit = (descriptors[:, position // 8] >> np.uint8(7 - position % 8)) & np.uint8(1)
        word |= bit.astype(np.uint64) << np.uint64(j)
    return word


def chance(descriptors: np.ndarray, picture: np.ndarray, bits: int, tables: int, n: int) -> dict[str, Any]:
    """Chance sharing of one scheme on n distinct pictures (see the module doc)."""
    others, stopped, words = [], [], 0
    for positions in keypoints.table_bits(tables, bits):
        word = _word(descriptors, positions)
        order = np.lexsort((picture, word))
        w, p = word[order], picture[order]
        keep = np.r_[True, (w[1:] != w[:-1]) | (p[1:] != p[:-1])]  # a picture holds a word once
        w = w[keep]
        _, counts = np.unique(w, return_counts=True)
        occurrences = counts.sum()
        others.append(float((counts * (counts - 1)).sum() / occurrences))
        stopped.append(float(counts[counts > keypoints.BUCKET_CAP].sum() / occurrences))
        words += int(occurrences)
    per_word = float(np.mean(others))
    words_a_picture = words / n
    at_scale = per_word * SCALE / n
    return {"bits": bits, "tables": tables, "pictures": n, "words_a_picture": round(words_a_picture, 1),
            "other_holders_a_word": round(per_word, 6), "stop_word_share": round(float(np.mean(stopped)), 6),
            "other_holders_a_word_at_2e9": round(at_scale, 3),
            "chance_partners_a_picture_at_2e9": round(at_scale * words_a_picture, 1),
            "stays_under_cap_at_2e9": at_scale < keypoints.BUCKET_CAP}


def real_corpus(folder: Path) -> list[tuple[str, str, keypoints.Described]]:
    """(original's name, family or "", Described) of every real picture and one copy of it per family."""
    out = []
    for index, path in enumerate(sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)):
        data = path.read_bytes()
        result = decode(data)
        if not isinstance(result, Decoded):
            continue
        out.append((path.name, "", keypoints.describe(result.view)))
        with Image.open(io.BytesIO(data)) as im:
            im.seek(0)
            rgb = ImageOps.exif_transpose(to_rgb(im))
        for family in FAMILIES:
            copy = decode(edited(rgb, family, index)[0])
            if isinstance(copy, Decoded):
                out.append((path.name, family, keypoints.describe(copy.view)))
    return out


def recall(corpus: list[tuple[str, str, keypoints.Described]], bits: int, tables: int) -> dict[str, Any]:
    """The stage's matching with words of `bits` x `tables` on the real corpus."""
    saved = keypoints.WORD_BITS, keypoints.TABLES, keypoints._BITS
    keypoints.WORD_BITS, keypoints.TABLES, keypoints._BITS = bits, tables, keypoints.table_bits(tables, bits)
    try:
        started = time.perf_counter()
        same, candidates = keypoints.match_all([d.features for _, _, d in corpus], [d.thumbnail for _, _, d in corpus],
                                               max(1, len(corpus) // 500))
        seconds = time.perf_counter() - started
    finally:
        keypoints.WORD_BITS, keypoints.TABLES, keypoints._BITS = saved
    original = {name: i for i, (name, family, _) in enumerate(corpus) if not family}
    found = {}
    for family in FAMILIES:
        pairs = [(original[name], i) for i, (name, fam, _) in enumerate(corpus) if fam == family]
        found[family] = round(sum((min(a, b), max(a, b)) in same for a, b in pairs) / len(pairs), 3)
    false = [(corpus[a][0], corpus[b][0]) for a, b in same if corpus[a][0] != corpus[b][0]]
    return {"bits": bits, "tables": tables, "recall": found, "false_merges": len(false), "false_pairs": false[:10],
            "candidates_a_picture": round(candidates / len(corpus), 2),
            "match_ms_a_picture": round(1000 * seconds / len(corpus), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pictures", type=int, default=100_000, help="distinct pictures for chance sharing")
    parser.add_argument("--steps", default="", help="also measure chance at these smaller counts (the trend), "
                                                    "e.g. 10000,30000")
    parser.add_argument("--real", default=None, help="a folder of real pictures for recall")
    parser.add_argument("--schemes", default="24x8,28x12,32x16,36x24,40x32", help="bits x tables, comma-separated")
    parser.add_argument("--cache", default="build/bench/words", help="where the distinct pictures' descriptors live")
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    args = parser.parse_args()
    schemes = [tuple(int(v) for v in s.split("x")) for s in args.schemes.split(",")]
    figures: dict[str, Any] = {"chance": [], "recall": []}
    started = time.perf_counter()
    descriptors, picture = distinct_descriptors(args.pictures, Path(args.cache))
    figures["describe_seconds"] = round(time.perf_counter() - started, 1)
    figures["keypoints"] = len(descriptors)
    for n in [int(s) for s in args.steps.split(",") if s] + [args.pictures]:
        mine = picture < n
        for bits, tables in schemes:
            figures["chance"].append(chance(descriptors[mine], picture[mine], bits, tables, n))
            print(json.dumps(figures["chance"][-1]), flush=True)
    if args.real:
        corpus = real_corpus(Path(args.real))
        figures["real_corpus"] = len(corpus)
        for bits, tables in schemes:
            figures["recall"].append(recall(corpus, bits, tables))
            print(json.dumps(figures["recall"][-1]), flush=True)
    text = json.dumps(figures, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
