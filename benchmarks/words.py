"""Do candidate keys stay selective at web scale? Chance sharing on distinct pictures, recall on real copies.

Dedup's candidates (curate.keypoints): each keypoint gives `KEY_TABLES` keys, each `KEY_BITS` of its ORB
descriptor bits at a table's fixed positions; pictures sharing `MIN_SHARED` keys that are not stop keys (held by
more than BUCKET_CAP pictures) are a candidate pair, which is then checked on its own shared words. Unrelated
pictures share keys by chance, and chance grows with the job. This measures, for each scheme "BxT" (B bits a
key, T keys a keypoint):

- chance, on N distinct photo-like pictures (curate.sample.distinct: no two are copies), at each N of `--steps`:
  per table, the share of a picture's keys that another picture holds and the share that are stop keys; and,
  for the first `SAMPLED` pictures against all N, the other pictures each shares at least one key with (the
  pairs the candidate step counts) and at least MIN_SHARED (the candidates it joins and checks);
- the extrapolation to 2x10^9 pictures: a key that N distinct pictures already share is structure (text in
  one font, a flat corner), held by about 2x10^9 / N times as many there: a stop key, which pairs no one. The
  others were held once among N; if their bits were uniform, another picture would hold one with probability
  (keys a table a picture) / 2^B, which gives the chance partners a picture meets at 2x10^9 (keys x that x N);
- recall, with `--real DIR`: the real pictures and one edited copy of each per family (curate.sample.edits),
  matched by the stage's own functions with the scheme's keys: as they are, with the stop keys N distinct
  pictures make, and "at 2x10^9, at best" with every key any of the N holds as a stop key; false merges (pairs
  of different originals) and candidates a picture.

    python benchmarks/words.py --pictures 100000 [--steps 10000,30000] [--real DIR] [--schemes 48x32,...]
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
SAMPLED = 2_000  # pictures whose chance partners are counted against all N
CHUNK = 1_000_000  # descriptors a step when keys are computed


def _descriptors(seed: int) -> np.ndarray:
    descriptors, _ = keypoints.unpack(keypoints.describe(distinct(seed)).features)
    return descriptors.copy()


def distinct_descriptors(n: int, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """(descriptors of all keypoints, k x 32 uint8; the picture of each, k int32) of distinct(0 .. n-1), cached
    in `cache`."""
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


def _table_keys(descriptors: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return np.concatenate([keypoints.key_bits(descriptors[i:i + CHUNK], positions)
                           for i in range(0, len(descriptors), CHUNK)])


def measure(descriptors: np.ndarray, picture: np.ndarray, sizes: list[int], found: list[np.ndarray],
            ) -> tuple[list[dict[str, Any]], list[dict[int, np.ndarray]]]:
    """For the current scheme (keypoints.KEY_BITS, KEY_TABLES): chance sharing among the first n distinct pictures
    for each n in `sizes` (see the module doc), and for each picture's keys in `found` (keypoints.keys), how many
    of the first n distinct pictures hold each. Each table is sorted once; the smaller n come from the same order."""
    bits, tables = keypoints.KEY_BITS, keypoints.KEY_TABLES
    stats: dict[int, dict[str, list[float]]] = {n: {"stopped": [], "shared": []} for n in sizes}
    keys_held = dict.fromkeys(sizes, 0)
    partners: dict[int, list[np.ndarray]] = {n: [] for n in sizes}  # (sampled picture, other) pairs, a key each
    counts = [{n: np.zeros(len(f), dtype=np.int64) for n in sizes} for f in found]
    mask = np.uint64((1 << bits) - 1)
    for table, positions in enumerate(keypoints._KEY_BITS):
        key = _table_keys(descriptors, positions)
        order = np.lexsort((picture, key))
        k, p = key[order], picture[order]
        keep = np.r_[True, (k[1:] != k[:-1]) | (p[1:] != p[:-1])]  # a picture holds a key once
        k, p = k[keep], p[keep]
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        values = k[starts]
        for n in sizes:
            mine = p < n
            held = np.add.reduceat(mine.astype(np.int64), starts)
            present = held[held > 0]
            occurrences = int(present.sum())
            stats[n]["stopped"].append(float(present[present > keypoints.BUCKET_CAP].sum() / occurrences))
            stats[n]["shared"].append(float(present[present > 1].sum() / occurrences))
            keys_held[n] += occurrences
            # pairs through keys held by 2..BUCKET_CAP of the first n, one side among the SAMPLED pictures
            # (a key's holders are in picture order, so its first `held` are the first n's)
            pairable = (held >= 2) & (held <= keypoints.BUCKET_CAP) & (p[starts] < SAMPLED)
            for size in np.unique(held[pairable]).tolist():
                owners = p[starts[pairable & (held == size)][:, None] + np.arange(size)]
                i, j = np.triu_indices(size, k=1)
                a, b = owners[:, i].ravel(), owners[:, j].ravel()
                ok = (a < SAMPLED) | (b < SAMPLED)
                a, b = a[ok], b[ok]
                partners[n] += [np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b),
                                np.maximum(a, b).astype(np.int64) * n + np.minimum(a, b)]
            for f, c in zip(found, counts, strict=True):
                here = (f >> np.uint64(bits)) == np.uint64(table)
                at = np.searchsorted(values, f[here] & mask).clip(0, len(values) - 1)
                c[n][here] = np.where(values[at] == (f[here] & mask), held[at], 0)
    rows = []
    for n in sizes:
        keys_a_picture = keys_held[n] / n
        pair_ids, shared = np.unique(np.concatenate(partners[n]) if partners[n] else np.zeros(0, np.int64),
                                     return_counts=True)
        sampled = pair_ids // n < SAMPLED  # each pair once for each sampled end
        per_table = keys_a_picture / tables
        uniform = keys_a_picture * per_table / 2.0 ** bits  # other holders of a picture's keys, per other picture
        rows.append({"bits": bits, "tables": tables, "pictures": n, "keys_a_picture": round(keys_a_picture, 1),
                     "shared_key_share": round(float(np.mean(stats[n]["shared"])), 6),
                     "stop_key_share": round(float(np.mean(stats[n]["stopped"])), 6),
                     "partners_a_picture": round(float(sampled.sum()) / min(SAMPLED, n), 3),
                     "candidates_a_picture": round(float((sampled & (shared >= keypoints.MIN_SHARED)).sum())
                                                   / min(SAMPLED, n), 4),
                     "shared_keys_of_partners": {f"{lo}-{hi}": int((sampled & (shared >= lo) & (shared <= hi)).sum())
                                                for lo, hi in ((1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, 32),
                                                               (33, 64), (65, 10 ** 6))},
                     "uniform_partners_a_picture_at_2e9": round(uniform * SCALE, 2),
                     "uniform_candidates_a_picture_at_2e9": float(f"{(uniform ** 2 / 2) * SCALE:.3g}")})
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
    """keypoints.match_all, with the keys in `stop` (per picture) dropped first: the stop keys a larger job
    would have made of them."""
    groups: dict[int, list] = {}
    for index, (_, _, described) in enumerate(corpus):
        for part, (place, found) in keypoints.by_partition(described.features, max(1, len(corpus) // 500), index):
            if stop is not None:
                found = found[~np.isin(found, stop[index])]
            groups.setdefault(part, []).append((place, found))
    shared: dict[tuple[int, int], int] = {}
    for members in groups.values():
        for pair, n in keypoints.partition_pairs(members):
            shared[pair] = shared.get(pair, 0) + n
    candidates = [pair for pair, n in shared.items() if n >= keypoints.MIN_SHARED]
    words = [keypoints.words(d.features) for _, _, d in corpus]
    same = {(a, b) for a, b in candidates
            if keypoints.same_picture(words[a], corpus[a][2].thumbnail, words[b], corpus[b][2].thumbnail)}
    return same, len(candidates)


def recall(corpus: list[tuple[str, str, keypoints.Described]], counts: list[dict[int, np.ndarray]] | None,
           ) -> dict[str, Any]:
    """The stage's matching with the current scheme's keys on the real corpus; with `counts` (measure's), also
    as a job of n distinct pictures would match (their stop keys dropped first), and at 2x10^9 at best."""
    jobs: dict[str, Any] = {}
    started = time.perf_counter()
    same, candidates = _match(corpus, None)
    seconds = time.perf_counter() - started
    if counts is not None:
        keys_of = [keypoints.keys(d.features) for _, _, d in corpus]
        sizes = sorted(counts[0])
        for name, rule in [(f"{n}", lambda c, n=n: c[n] > keypoints.BUCKET_CAP) for n in sizes] + [
                (f"2e9 at best (from {sizes[-1]})", lambda c, n=sizes[-1]: c[n] >= 1)]:
            stop = [k[rule(c)] for k, c in zip(keys_of, counts, strict=True)]
            share = float(np.mean([len(s) / max(1, len(k)) for s, k in zip(stop, keys_of, strict=True)]))
            matched, found = _match(corpus, stop)
            jobs[name] = {"stop_key_share": round(share, 4), "recall": _recall(corpus, matched),
                          "false_merges": sum(corpus[a][0] != corpus[b][0] for a, b in matched),
                          "candidates_a_picture": round(found / len(corpus), 2)}
    return {"bits": keypoints.KEY_BITS, "tables": keypoints.KEY_TABLES, "recall": _recall(corpus, same),
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
    parser.add_argument("--schemes", default=f"{keypoints.KEY_BITS}x{keypoints.KEY_TABLES}",
                        help="bits x tables, comma-separated (the stage's own by default)")
    parser.add_argument("--cache", default="build/bench/words", help="where the distinct pictures' descriptors live")
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    args = parser.parse_args()
    schemes = [tuple(int(v) for v in scheme.split("x")) for scheme in args.schemes.split(",")]
    figures: dict[str, Any] = {"chance": [], "recall": []}
    started = time.perf_counter()
    descriptors, picture = distinct_descriptors(args.pictures, Path(args.cache))
    figures["describe_seconds"] = round(time.perf_counter() - started, 1)
    figures["keypoints"] = len(descriptors)
    sizes = [int(s) for s in args.steps.split(",") if s] + [args.pictures]
    corpus = real_corpus(Path(args.real)) if args.real else []
    figures["real_corpus"] = len(corpus)
    for bits, tables in schemes:
        saved = keypoints.KEY_BITS, keypoints.KEY_TABLES, keypoints._KEY_BITS
        keypoints.KEY_BITS, keypoints.KEY_TABLES = bits, tables
        keypoints._KEY_BITS = keypoints.table_bits(tables, bits)
        try:
            found = [keypoints.keys(d.features) for _, _, d in corpus]
            rows, counts = measure(descriptors, picture, sizes, found)
            figures["chance"] += rows
            print(json.dumps(rows), flush=True)
            if corpus:
                figures["recall"].append(recall(corpus, counts))
                print(json.dumps(figures["recall"][-1]), flush=True)
        finally:
            keypoints.KEY_BITS, keypoints.KEY_TABLES, keypoints._KEY_BITS = saved
    text = json.dumps(figures, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
