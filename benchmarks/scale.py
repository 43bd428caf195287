"""Dedup and decontamination at scale, on distinct photo-like pictures with planted copies.

For each size N (--sizes): N distinct pictures (curate.sample.distinct, seeds 0..N-1), one in `COPY_EVERY` of
them with one edited copy (curate.sample.edits, the families in turn), and an evaluation set of `EVALUATION`
other distinct pictures, each with one edited copy planted among the training pictures. So the duplicate
density is the same at every size: what grows is only the job. The training folder goes through decode (on
the in-process DirectRunner, not timed here) and then dedup with the evaluation set as
`dedup.exclude_near`, on the DirectRunner with two SDK worker processes (benchmarks/pipeline.py's runner and
memory polling). Recorded per size:

- recall: planted copies in one cluster with their original; evaluation copies rejected as eval_overlap;
- false merges: pictures of different seeds in one cluster (no copy relation), and other pictures rejected
  as eval_overlap;
- dedup's seconds, time per picture and its ratio to the smallest size (goal: <= 1.2 from 10^4 to 10^5), and
  each SDK worker's peak RSS;
- with --candidates, candidate pairs a picture (pairs of pictures sharing >= MIN_SHARED keys that are not
  stop keys), from the stage's own functions in one process on the same features (keypoints.match_all).

    python benchmarks/scale.py --sizes 10000,100000 [--work build/bench/scale] [--out FILE] [--candidates]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.pipeline import worker_peaks  # noqa: E402

COPY_EVERY = 20  # one training picture in this many has a planted edited copy
EVALUATION = 200  # evaluation pictures, each with one edited copy among the training pictures
EVALUATION_SEEDS = 10**9  # evaluation pictures are distinct(EVALUATION_SEEDS + i): never a training seed


def _suffix(data: bytes) -> str:
    return ".png" if data.startswith(b"\x89PNG") else ".webp" if data.startswith(b"RIFF") else ".jpg"


def _write(job: tuple[int, str, str]) -> int:
    """Write picture `seed` (and its planted copy, if it has one) into `folder`; returns files written."""
    from curate.sample.distinct import distinct
    from curate.sample.edits import FAMILIES, edited
    from curate.sample.images import encode

    seed, folder, role = job
    picture = distinct(seed)
    written = 1
    if role == "evaluation":
        Path(folder, "eval", f"e{seed}.png").write_bytes(encode(picture, "png"))
        copy, _ = edited(picture, FAMILIES[seed % len(FAMILIES)], seed)
        Path(folder, "train", f"c{seed}-{FAMILIES[seed % len(FAMILIES)]}{_suffix(copy)}").write_bytes(copy)
        return 2
    Path(folder, "train", f"p{seed}.jpg").write_bytes(encode(picture, "jpeg", quality=90))
    if seed % COPY_EVERY == 0:
        family = FAMILIES[seed // COPY_EVERY % len(FAMILIES)]
        copy, _ = edited(picture, family, seed)
        Path(folder, "train", f"c{seed}-{family}{_suffix(copy)}").write_bytes(copy)
        written += 1
    return written


def make(n: int, folder: Path) -> int:
    """The training and evaluation folders of size n (kept between runs: made once)."""
    done = folder / "made.json"
    if done.exists():
        return int(json.loads(done.read_text())["files"])
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "train").mkdir(parents=True)
    (folder / "eval").mkdir()
    jobs = [(seed, str(folder), "train") for seed in range(n)]
    jobs += [(EVALUATION_SEEDS + i, str(folder), "evaluation") for i in range(EVALUATION)]
    with multiprocessing.Pool() as pool:
        files = sum(pool.imap_unordered(_write, jobs, chunksize=64))
    done.write_text(json.dumps({"files": files}))
    return files


def _who(url: str) -> tuple[str, int]:
    """(role, seed) of a training file: "picture", "copy" or "evaluation copy" (the copy of an evaluation
    picture)."""
    name = Path(url).name
    seed = int(name[1:].split("-")[0].split(".")[0])
    if name.startswith("p"):
        return "picture", seed
    return ("evaluation copy" if seed >= EVALUATION_SEEDS else "copy"), seed


def judge(out: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from curate import reasons as R
    from curate.io import parquet_files

    urls = {r["key"]: r["url"] for f in parquet_files(str(out), "images", "no images")
            for r in pq.read_table(f, columns=["key", "url"]).to_pylist()}
    decisions = [r for f in parquet_files(str(out), "dedup", "no dedup") for r in pq.read_table(f).to_pylist()]
    clusters: dict[str, set[int]] = defaultdict(set)
    copies_caught = copies = eval_caught = eval_copies = wrongly_excluded = 0
    seed_cluster: dict[tuple[str, int], str] = {}
    for d in decisions:
        role, seed = _who(urls[d["key"]])
        seed_cluster[role, seed] = d["cluster"]
        if d["reason"] != R.EVAL_OVERLAP:
            clusters[d["cluster"]].add(seed)
        if role == "evaluation copy":
            eval_copies += 1
            eval_caught += d["reason"] == R.EVAL_OVERLAP
        elif d["reason"] == R.EVAL_OVERLAP:
            wrongly_excluded += 1
    for (role, seed), cluster in seed_cluster.items():
        if role == "copy":
            copies += 1
            copies_caught += seed_cluster.get(("picture", seed)) == cluster
    false_merges = sum(len(seeds) - 1 for seeds in clusters.values())
    return {"images": len(decisions), "copies": copies, "copy_recall": round(copies_caught / max(1, copies), 4),
            "evaluation_copies": eval_copies, "evaluation_recall": round(eval_caught / max(1, eval_copies), 4),
            "false_merges": false_merges, "wrongly_excluded": wrongly_excluded}


def candidates(out: Path) -> float:
    """Candidate pairs a picture, from the stage's own functions on OUT/images' features."""
    import pyarrow.parquet as pq

    from curate import keypoints
    from curate.io import parquet_files
    from curate.pipelines.dedup import PICTURES_PER_PARTITION

    rows = [r for f in parquet_files(str(out), "images", "no images")
            for r in pq.read_table(f, columns=["features", "thumbnail"]).to_pylist()]
    _, found = keypoints.match_all([r["features"] for r in rows], [r["thumbnail"] for r in rows],
                                   max(1, len(rows) // PICTURES_PER_PARTITION))
    return found / max(1, len(rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="training pictures (before copies), comma-separated")
    parser.add_argument("--work", default="build/bench/scale", help="where the pictures and outputs go")
    parser.add_argument("--candidates", action="store_true", help="also count candidate pairs (one process)")
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    args = parser.parse_args()
    from curate.config import load_config
    from curate.pipelines import decode, dedup
    from curate.readers import list_sources

    # Beam starts its SDK worker processes as plain `python`: make that this interpreter.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    rows: list[dict[str, Any]] = []
    for n in [int(s) for s in args.sizes.split(",")]:
        folder = Path(args.work) / f"n{n}"
        started = time.perf_counter()
        files = make(n, folder)
        made = time.perf_counter() - started
        out = folder / "out"
        started = time.perf_counter()
        if not (out / "images" / "_MANIFEST.json").exists():
            decode.run(list_sources([str(folder / "train")]), str(out), load_config())
        decoded = time.perf_counter() - started
        config = load_config(None, {"dedup.exclude_near": [str(folder / "eval")]})
        dedup.load_exclusions(config.dedup.exclude_near, str(out / "cache" / "exclude"))  # the index, not timed
        def job(beam_args: list[str], c: Any = config, o: Path = out) -> Any:
            return dedup.run(str(o), c, beam_args, force=True)

        seconds, peaks = worker_peaks("multi_processing", job)
        row = {"pictures": n, "files": files, "make_seconds": round(made, 1), "decode_seconds": round(decoded, 1),
               **judge(out), "dedup_seconds": round(seconds, 1), "worker_peaks_mib": peaks}
        row["dedup_ms_a_picture"] = round(1000 * seconds / row["images"], 2)
        if args.candidates:
            row["candidates_a_picture"] = round(candidates(out), 2)
        if rows:
            row["ms_a_picture_vs_smallest"] = round(row["dedup_ms_a_picture"] / rows[0]["dedup_ms_a_picture"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
