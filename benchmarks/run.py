"""`make bench`: the benchmark suite. Each benchmark measures against a baseline run in the same command.

Results print as a Markdown table (paste into BENCHMARKS.md with the machine, date and command) and are
written as JSON under --out.

Benchmarks so far:
- sample-crawl: build time, files and bytes of the sample crawl at each --scale; time per image URL
  relative to scale 1 (goal: linear, ratio <= 1.2).
- download: images per second on loopback, `curate download` next to the bare img2dataset CLI on the same
  URLs in the same run (goal: overhead <= 20%).
- decode: decode + validate + hash images/s on one core for 1024-px JPEGs next to a plain full Pillow decode
  in the same run (goal >= 300 img/s).
- dedup: the near-dup transform on N and 8N synthetic nodes: time ratio (goal <= 9) and peak memory.
- extract: pages per second per core of our WARC reading + extraction next to a bare warcio loop over the
  same files in the same run (the floor); peak memory of one process reading the largest file (goal:
  >= 300 pages/s/core; memory flat from scale 1 to 8 although files grow 8x).
- pipeline: `curate run` (every stage, text on, fresh OCR cache) at sample-crawl scales 1, 4, 16, each in a
  fresh subprocess, on the DirectRunner with two SDK worker processes: seconds per stage, images/s, the
  driver's and each stage's per-worker peak RSS (goal: time linear in the scale, memory per worker flat).
- ocr: the fast text engine next to naive easyocr readtext, interleaved per image, one thread, on a labelled
  real image set when --labelled names one (images/, labels.tsv), else on the sample crawl's decoded images:
  images/s/core ratio (goal >= 20x), light and heavy precision/recall, peak memory.
- neardup (with --labelled): near-duplicate recall per edit family and false merges on its real pictures,
  today's pHash rule next to an ORB verification step (benchmarks/neardup.py; build/bench/neardup.json).
- scale: dedup and decontamination on --scale-sizes distinct generated pictures with planted copies at a
  fixed density: recall, false merges, time a picture, worker peaks (benchmarks/scale.py; build/bench/scale.json).
- decontaminate (with --labelled and --others): the labelled pictures as an evaluation set, their edited copies
  planted among the other pictures, through decode and dedup: recall per family, others dropped
  (benchmarks/decontaminate.py; build/bench/decontaminate.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import decode as decode_bench  # noqa: E402  (benchmarks/decode.py, beside this file)
import dedup as dedup_bench  # noqa: E402  (benchmarks/dedup.py, beside this file)
import download as download_bench  # noqa: E402  (benchmarks/download.py, beside this file)
import extract as extract_bench  # noqa: E402  (benchmarks/extract.py, beside this file)
import ocr as ocr_bench  # noqa: E402  (benchmarks/ocr.py, beside this file)
import pipeline as pipeline_bench  # noqa: E402  (benchmarks/pipeline.py, beside this file)

from curate.sample.build import build_sample_crawl  # noqa: E402
from curate.sample.plan import HOSTS  # noqa: E402
from curate.sample.serve import free_port_block  # noqa: E402


def _dir_size(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def bench_sample_crawl(out: Path, scales: list[int]) -> list[dict]:
    port = free_port_block(len(HOSTS), start=20000, end=32000)
    rows = []
    for scale in scales:
        target = out / f"sample-x{scale}"
        started = time.perf_counter()
        summary = build_sample_crawl(target, seed=0, scale=scale, port=port)
        seconds = time.perf_counter() - started
        files, size = _dir_size(target)
        rows.append({"benchmark": "sample-crawl", "scale": scale, "seconds": round(seconds, 2),
                     "image_urls": summary["image_urls"], "pages": summary["pages"], "files": files,
                     "mbytes": round(size / 2**20, 1), "ms_per_image": round(1000 * seconds / summary["image_urls"], 2)})
    base = rows[0]["ms_per_image"]
    for row in rows:
        row["ratio_per_image_vs_x1"] = round(row["ms_per_image"] / base, 2)
    return rows


def _print_table(rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="build/bench", help="scratch and results directory")
    parser.add_argument("--scales", default="1,2,4,8", help="sample crawl scales to build")
    parser.add_argument("--extract-scales", default="1,8", help="scales to run the extract benchmark on")
    parser.add_argument("--download-urls", type=int, default=5000, help="URLs in the download benchmark")
    parser.add_argument("--ocr-quick", type=int, default=0,
                        help="OCR benchmark on a stratified subset of about N images (0: all, 10-25 min)")
    parser.add_argument("--labelled", help="a labelled real image folder (images/, labels.tsv) for the OCR "
                                           "benchmark, instead of the sample crawl")
    parser.add_argument("--others", help="with --labelled: real pictures that are none of its pictures, among "
                                         "which decontamination plants their edited copies")
    parser.add_argument("--dedup-nodes", type=int, default=4000, help="N of the dedup benchmark (runs N and 8N)")
    parser.add_argument("--scale-sizes", default="10000",
                        help="distinct pictures of the dedup scale benchmark, comma-separated ('' skips; 10^5 needs "
                             "more than 24 GB today: BENCHMARKS.md)")
    parser.add_argument("--pipeline-scales", default="1,4,16", help="scales of the whole-pipeline benchmark ('' skips)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scales = [int(s) for s in args.scales.split(",")]
    rows = bench_sample_crawl(out, scales)
    extract_rows = [extract_bench.bench(out / f"sample-x{s}", s) for s in map(int, args.extract_scales.split(","))
                    if s in scales]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"machine: {machine}; peak RSS {peak_mib:.0f} MiB")
    download_rows = [download_bench.bench(out / "sample-x1", out / "download", args.download_urls)] if 1 in scales else []
    decode_rows = decode_bench.bench()
    dedup_rows = dedup_bench.bench(args.dedup_nodes)
    if args.labelled:
        ocr_rows = ocr_bench.bench(["--labelled", args.labelled], args.ocr_quick)
        # near-duplicate recall per edit family on the same real pictures (benchmarks/neardup.py; JSON only)
        subprocess.run([sys.executable, str(Path(__file__).with_name("neardup.py")), "--images",
                        str(Path(args.labelled) / "images"), "--out", str(out / "neardup.json")], check=True)
        if args.others:  # decontamination with the real pictures as the evaluation set (JSON only)
            subprocess.run([sys.executable, str(Path(__file__).with_name("decontaminate.py")), "--eval",
                            str(Path(args.labelled) / "images"), "--others", args.others,
                            "--out", str(out / "decontaminate.json")], check=True)
    else:
        ocr_rows = ocr_bench.bench_crawl(out / "sample-x1", out / "ocr", args.ocr_quick) if 1 in scales else []
    pipeline_rows = pipeline_bench.bench(out / "pipeline", [int(s) for s in args.pipeline_scales.split(",") if s])
    if args.scale_sizes:  # dedup and decontamination on distinct pictures (benchmarks/scale.py; JSON only)
        subprocess.run([sys.executable, str(Path(__file__).with_name("scale.py")), "--sizes", args.scale_sizes,
                        "--work", str(out / "scale"), "--out", str(out / "scale.json")], check=True)
    for table in (rows, extract_rows, download_rows, decode_rows, dedup_rows, ocr_rows, pipeline_rows):
        _print_table(table)
    _print_table(__import__("train").bench())  # benchmarks/train.py: cpu-tiny training images/s (table only)
    (out / "results.json").write_text(json.dumps({"machine": machine, "peak_rss_mib": round(peak_mib),
                                                  "rows": rows + extract_rows + download_rows + decode_rows + dedup_rows + ocr_rows
                                                  + pipeline_rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
