"""Scaling benchmark: `curate run` (pipelines.run.run_all) on the sample crawl at several --scale values.

For each scale, in a fresh subprocess (so that peak memory is that scale's own): build the sample crawl
(curate.sample.build.build_sample_crawl), serve it on 127.0.0.1 (curate.serve.SampleServer, as
curate/demo.py does), and run every stage with the demo's download settings (curate.demo.DEMO_FLAGS) and
the text stage on, with an empty OCR cache, on the in-process DirectRunner. Recorded per scale: wall
seconds per stage and in total (the crawl build excluded), images written, images/s (written images over
the pipeline's total), and peak RSS of the process tree: the subprocess's own (RUSAGE_SELF: the driver and
the in-process DirectRunner, which is where the work runs) and the largest of its children
(RUSAGE_CHILDREN). The local server runs in the same process (threads), so its memory counts too. The
machine's 1-minute load average at the start and end of the run is recorded beside (a shared machine slows
every figure alike, and the comparison between scales only holds at similar load), and so is the CPU time
(user + system, this process and its children) of the pipeline, which other load changes much less.

Goal: time grows no faster than linearly in the scale (seconds per image at scale s / at the smallest
scale <= 1.2) and memory stays flat.

    python benchmarks/pipeline.py --out build/bench/pipeline --scales 1,4,16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STAGES = ("extract", "download", "decode", "dedup", "text", "write")


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def one_scale(scale: int, work: Path) -> dict[str, Any]:
    """Build, serve and run the whole pipeline at one scale, in this process; the figures as a dict."""
    from curate.config import load_config
    from curate.crawl import snapshot_files
    from curate.demo import DEMO_FLAGS
    from curate.sample.build import build_sample_crawl
    from curate.sample.plan import HOSTS, SNAPSHOTS
    from curate.serve import SampleServer, free_port_block
    from pipelines.run import run_all

    crawl, out = work / f"crawl-x{scale}", work / f"out-x{scale}"
    for path in (crawl, out):
        shutil.rmtree(path, ignore_errors=True)
    started = time.perf_counter()
    summary = build_sample_crawl(crawl, seed=0, scale=scale,
                                 port=free_port_block(len(HOSTS), start=20000, end=32000, seed=os.getpid()))
    build_seconds = time.perf_counter() - started
    config = load_config(None, {**DEMO_FLAGS, "text.filter": "light"})
    seconds: dict[str, float] = {}
    load_before, cpu_before = os.getloadavg()[0], _cpu_seconds()
    with SampleServer(crawl) as server:
        files = snapshot_files([s[0] for s in SNAPSHOTS], server.url("crawl"), "warc")
        started = time.perf_counter()
        manifests = run_all(files, str(out), config, force=True,
                            on_stage=lambda stage, _m, s: seconds.__setitem__(stage, round(s, 1)))
        total = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    funnel = {stage: next(iter(m["funnel"].values())) for stage, m in manifests.items()}
    work_done = json.loads((out / "text" / "_WORK.json").read_text())
    written = manifests["write"]["samples"]
    self_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"benchmark": "pipeline", "scale": scale, "image_urls": summary["image_urls"],
            "build_s": round(build_seconds, 1), **{f"{s}_s": seconds.get(s, 0.0) for s in STAGES},
            "total_s": round(total, 1), "decoded": funnel["decode"]["kept"], "ocr_scored": work_done["scored"],
            "written": written, "images_per_s": round(written / total, 2),
            "ms_per_url": round(1000 * total / summary["image_urls"], 1), "cpu_s": round(cpu, 1),
            "cpu_ms_per_url": round(1000 * cpu / summary["image_urls"], 1),
            "peak_rss_mib": round(self_mib), "children_peak_rss_mib": round(children_mib),
            "load_1min_start_end": [round(load_before, 1), round(os.getloadavg()[0], 1)]}


def bench(work: Path, scales: list[int], timeout: float | None = None) -> list[dict[str, Any]]:
    """Each scale in a fresh subprocess; the ratio of time per URL to the first scale's."""
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for scale in scales:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(scale), "--out", str(work)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
        except subprocess.TimeoutExpired:
            print(f"pipeline benchmark: scale {scale} over {timeout} s, stopped", file=sys.stderr)
            break
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    for row in rows:
        row["ratio_per_url_vs_first"] = round(row["ms_per_url"] / rows[0]["ms_per_url"], 2)
        if "cpu_ms_per_url" in rows[0]:
            row["cpu_ratio_per_url_vs_first"] = round(row["cpu_ms_per_url"] / rows[0]["cpu_ms_per_url"], 2)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="build/bench/pipeline", help="scratch and results directory")
    parser.add_argument("--scales", default="1,4,16", help="sample crawl scales, comma-separated")
    parser.add_argument("--timeout", type=float, default=None, help="seconds allowed per scale (default: none)")
    parser.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)  # internal: run one scale here
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_scale(args.one, Path(args.out))))
        return 0
    rows = bench(Path(args.out), [int(s) for s in args.scales.split(",")], args.timeout)
    (Path(args.out) / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
