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

A scheme "BxT" is words of B bits, T a keypoint (the stage's kind); "BxTnK" is visual phrases: each keypoint's
B-bit word of each of T tables paired with the word of each of its K nearest keypoints (one key of 2B bits),
which only a picture holding both corners side by side shares.

    python benchmarks/words.py --pictures 100000 [--real DIR] [--schemes 24x8,32x16,24x8n2,...] [--out FILE]
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


def _descriptors(seed: int) -> tuple[np.ndarray, np.ndarray]:
    descriptors, xy = keypoints.unpack(keypoints.describe(distinct(seed)).features)
    return descriptors.copy(), xy


def distinct_descriptors(n: int, cache: Path, positions: bool = False) -> tuple[np.ndarray, ...]:
    """(descriptors of all keypoints, k x 32 uint8; the picture of each, k int32; with `positions`, also
    their positions, k x 2 float32) of distinct(0 .. n-1), cached in `cache`."""
    path = cache / (f"distinct-{n}-xy.npz" if positions else f"distinct-{n}.npz")
    if path.exists():
        stored = np.load(path)
        return tuple(stored[k] for k in ("descriptors", "picture", "xy")[:3 if positions else 2])
    with multiprocessing.Pool() as pool:
        found = pool.map(_descriptors, range(n), chunksize=64)
    picture = np.concatenate([np.full(len(d), i, dtype=np.int32) for i, (d, _) in enumerate(found)])
    descriptors, xy = np.concatenate([d for d, _ in found]), np.concatenate([p for _, p in found])
    cache.mkdir(parents=True, exist_ok=True)
    if positions:
        np.savez(path, descriptors=descriptors, picture=picture, xy=xy)
        return descriptors, picture, xy
    np.savez(path, descriptors=descriptors, picture=picture)
    return descriptors, picture


def _neighbours(xy: np.ndarray, picture: np.ndarray, k: int) -> np.ndarray:
    """For every keypoint, the (global) indices of its k nearest keypoints of the same picture (itself where
    a picture has too few), k columns."""
    out = np.repeat(np.arange(len(xy))[:, None], k, axis=1)
    starts = np.flatnonzero(np.r_[True, picture[1:] != picture[:-1]]).tolist() + [len(picture)]
    for lo, hi in zip(starts[:-1], starts[1:], strict=True):
        here = xy[lo:hi].astype(np.float64)
        d = ((here[:, None, :] - here[None, :, :]) ** 2).sum(axis=2)
        np.fill_diagonal(d, np.inf)
        m = min(k, hi - lo - 1)
        if m > 0:
            out[lo:hi, :m] = lo + np.argsort(d, axis=1)[:, :m]
    return out


def phrases(features: bytes) -> tuple[keypoints.Layout, np.ndarray, np.ndarray]:
    """keypoints.words with visual phrases: each keypoint's word of a table paired with the word of each of its
    NEIGHBOURS nearest keypoints in that table (uint64: table << 48 | word << 24 | neighbour's word), at the
    keypoint's position; each phrase once a picture."""
    descriptors, xy = keypoints.unpack(features)
    if not len(xy):
        return keypoints.layout(xy), np.zeros(0, dtype=np.uint64), np.zeros((0, 2), dtype=np.uint16)
    near = _neighbours(xy, np.zeros(len(xy), dtype=np.int32), NEIGHBOURS)
    found, at = [], []
    for table, positions in enumerate(keypoints._BITS):
        word = _word(descriptors, positions)
        for j in range(NEIGHBOURS):
            found.append(np.uint64(table) << np.uint64(48) | word << np.uint64(24) | word[near[:, j]])
            at.append(np.arange(len(xy)))
    flat, where = np.concatenate(found), np.concatenate(at)
    _, first = np.unique(flat, return_index=True)
    first.sort()
    return keypoints.layout(xy), flat[first], (xy[where[first]] * 8).astype(np.uint16)


NEIGHBOURS = 2  # phrase schemes ("24x8n2"): neighbours a keypoint's word is paired with


def _word(descriptors: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Each keypoint's word of one table (uint64), as keypoints.words computes it: bit j of the word is the
    descriptor's bit positions[j], bits counted as np.unpackbits counts them."""
    word = np.zeros(len(descriptors), dtype=np.uint64)
    for j, position in enumerate(positions.tolist()):
        bit = (descriptors[:, position // 8] >> np.uint8(7 - position % 8)) & np.uint8(1)
        word |= bit.astype(np.uint64) << np.uint64(j)
    return word


def measure(descriptors: np.ndarray, picture: np.ndarray, bits: int, tables: int, sizes: list[int],
            found: list[np.ndarray], near: np.ndarray | None = None,
            ) -> tuple[list[dict[str, Any]], list[dict[int, np.ndarray]]]:
    """For the current scheme (keypoints.WORD_BITS, TABLES, _BITS): chance sharing among the first n distinct
    pictures for each n in `sizes` (see the module doc), and for each picture's words in `found` (as
    keypoints.words gives them), how many of the first n distinct pictures hold each. Each table is sorted
    once, at the largest n; the smaller counts come from the same order. With `near` (each keypoint's
    neighbours, _neighbours), the keys are phrases (see `phrases`)."""
    stats: dict[int, dict[str, list[float]]] = {n: {"others": [], "stopped": [], "shared": []} for n in sizes}
    words = dict.fromkeys(sizes, 0)
    counts = [{n: np.zeros(len(f), dtype=np.int64) for n in sizes} for f in found]
    tag = 48 if near is not None else bits
    mask = np.uint64((1 << tag) - 1)
    holder = picture if near is None else np.tile(picture, near.shape[1])
    for table, positions in enumerate(keypoints._BITS):
        word = _word(descriptors, positions)
        if near is not None:
            word = np.concatenate([word << np.uint64(24) | word[near[:, j]] for j in range(near.shape[1])])
        order = np.lexsort((holder, word))
        w, p = word[order], holder[order]
        keep = np.r_[True, (w[1:] != w[:-1]) | (p[1:] != p[:-1])]  # a picture holds a word once
        w, p = w[keep], p[keep]
        starts = np.flatnonzero(np.r_[True, w[1:] != w[:-1]])
        values = w[starts]
        for n in sizes:
            held = np.add.reduceat((p < n).astype(np.int64), starts)
            present = held[held > 0]
            occurrences = int(present.sum())
            mine = stats[n]
            mine["others"].append(float((present * (present - 1)).sum() / occurrences))
            mine["stopped"].append(float(present[present > keypoints.BUCKET_CAP].sum() / occurrences))
            mine["shared"].append(float(present[present > 1].sum() / occurrences))
            words[n] += occurrences
            for f, c in zip(found, counts, strict=True):
                here = (f >> np.uint64(tag)) == np.uint64(table)
                at = np.searchsorted(values, f[here] & mask).clip(0, len(values) - 1)
                c[n][here] = np.where(values[at] == (f[here] & mask), held[at], 0)
    rows = []
    for n in sizes:
        mine = stats[n]
        per_word, words_a_picture = float(np.mean(mine["others"])), words[n] / n
        rows.append({"bits": bits, "tables": tables, "pictures": n, "words_a_picture": round(words_a_picture, 1),
                     "other_holders_a_word": round(per_word, 6),
                     "shared_word_share": round(float(np.mean(mine["shared"])), 6),
                     "stop_word_share": round(float(np.mean(mine["stopped"])), 6),
                     "other_holders_a_word_at_2e9": round(per_word * SCALE / n, 1)})
    return rows, counts


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


def _match(corpus: list[tuple[str, str, keypoints.Described]], stop: list[np.ndarray] | None,
           ) -> tuple[set[tuple[int, int]], int]:
    """keypoints.match_all, with the words in `stop` (per picture: a mask of its words) dropped first: the stop
    words a larger job would have made of them."""
    partitions = max(1, len(corpus) // 500)
    groups: dict[int, list] = {}
    for index, (_, _, described) in enumerate(corpus):
        for part, member in keypoints.by_partition(f"{index:09d}", described.features, partitions, index):
            if stop is not None:
                key, place, where, found, xy = member
                keep = ~np.isin(found, stop[index])
                member = (key, place, where, found[keep], xy[keep])
            groups.setdefault(part, []).append(member)
    by_picture: dict[str, list] = {}
    for members in groups.values():
        for key, partners in keypoints.partition_partners(members):
            by_picture.setdefault(key, []).append(partners)
    same, candidates = set(), 0
    for key, parts in by_picture.items():
        for b, measured in keypoints.pairs_of(parts):
            candidates += 1
            a = int(key)
            if keypoints.accepts(measured) and keypoints.different(
                    corpus[a][2].thumbnail, corpus[b][2].thumbnail, measured.fit) <= keypoints.MAX_DIFFERENT:
                same.add((a, b))
    return same, candidates


def recall(corpus: list[tuple[str, str, keypoints.Described]], bits: int, tables: int,
           counts: list[dict[int, np.ndarray]] | None = None) -> dict[str, Any]:
    """The stage's matching with the current scheme's words (`bits` x `tables`, set in keypoints) on the real
    corpus; with `counts` (measure's: how many of the first n distinct pictures hold each word of each corpus
    picture), also as a job of n distinct pictures would match, its pictures making stop words of the corpus's
    words (held by more than BUCKET_CAP of them), and at 2x10^9 pictures at best (a word that any of the
    largest n holds is held by about 2x10^9 / n >> BUCKET_CAP pictures there: a stop word)."""
    jobs: dict[str, Any] = {}
    started = time.perf_counter()
    same, candidates = _match(corpus, None)
    seconds = time.perf_counter() - started
    if counts is not None:
        words_of = [keypoints.words(d.features)[1] for _, _, d in corpus]
        sizes = sorted(counts[0])
        for n in sizes:
            for name, rule in ((f"{n}", lambda c, n=n: c[n] > keypoints.BUCKET_CAP),
                               (f"2e9 at best (from {n})", lambda c, n=n: c[n] >= 1)):
                if name.startswith("2e9") and n != max(sizes):
                    continue
                stop = [w[rule(c)] for w, c in zip(words_of, counts, strict=True)]
                share = float(np.mean([len(s) / max(1, len(w)) for s, w in zip(stop, words_of, strict=True)]))
                matched, _ = _match(corpus, stop)
                jobs[name] = {"stop_word_share": round(share, 4), "recall": _recall(corpus, matched)}
    return {"bits": bits, "tables": tables, "recall": _recall(corpus, same),
            "false_merges": sum(corpus[a][0] != corpus[b][0] for a, b in same),
            "candidates_a_picture": round(candidates / len(corpus), 2),
            "match_ms_a_picture": round(1000 * seconds / len(corpus), 2), "with_distinct_pictures": jobs}


def _recall(corpus: list[tuple[str, str, keypoints.Described]], same: set[tuple[int, int]]) -> dict[str, float]:
    original = {name: i for i, (name, family, _) in enumerate(corpus) if not family}
    found = {}
    for family in FAMILIES:
        pairs = [(original[name], i) for i, (name, fam, _) in enumerate(corpus) if fam == family]
        found[family] = round(sum((min(a, b), max(a, b)) in same for a, b in pairs) / len(pairs), 3)
    return found


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
    schemes = []  # (bits, tables, neighbours): "24x8" words, "24x8n2" phrases with 2 neighbours
    for scheme in args.schemes.split(","):
        bits, rest = scheme.split("x")
        tables, _, neighbours = rest.partition("n")
        schemes.append((int(bits), int(tables), int(neighbours or 0)))
    figures: dict[str, Any] = {"chance": [], "recall": []}
    started = time.perf_counter()
    found_at = distinct_descriptors(args.pictures, Path(args.cache), positions=any(n for _, _, n in schemes))
    descriptors, picture = found_at[:2]
    figures["describe_seconds"] = round(time.perf_counter() - started, 1)
    figures["keypoints"] = len(descriptors)
    sizes = [int(s) for s in args.steps.split(",") if s] + [args.pictures]
    corpus = real_corpus(Path(args.real)) if args.real else []
    figures["real_corpus"] = len(corpus)
    global NEIGHBOURS
    for bits, tables, neighbours in schemes:
        saved = keypoints.WORD_BITS, keypoints.TABLES, keypoints._BITS, keypoints.words
        keypoints.WORD_BITS, keypoints.TABLES, keypoints._BITS = bits, tables, keypoints.table_bits(tables, bits)
        near = None
        if neighbours:  # phrases: the stage's words replaced by them for the real corpus, too
            NEIGHBOURS, keypoints.words = neighbours, phrases
            near = _neighbours(found_at[2], picture, neighbours)
        try:
            found = [keypoints.words(d.features)[1].astype(np.uint64) for _, _, d in corpus]
            rows, counts = measure(descriptors, picture, bits, tables, sizes, found, near)
            for row in rows:
                row["neighbours"] = neighbours
            figures["chance"] += rows
            print(json.dumps(rows), flush=True)
            if corpus:
                figures["recall"].append({**recall(corpus, bits, tables, counts), "neighbours": neighbours})
                print(json.dumps(figures["recall"][-1]), flush=True)
        finally:
            keypoints.WORD_BITS, keypoints.TABLES, keypoints._BITS, keypoints.words = saved
    text = json.dumps(figures, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
