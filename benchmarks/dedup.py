"""Near-dup stage benchmark: curate.pipelines.dedup.Deduplicate (bands, buckets, 12 rounds of label propagation,
the convergence check) on N and 8N synthetic nodes (random 63-bit hashes, 10% planted near-duplicates
3 bits from an original, 2% exact copies), each in a fresh child process so peak memory (VmHWM) is its
own. Goal: time(8N)/time(N) <= 9 and memory per worker flat. DirectRunner, in process, one worker."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import apache_beam as beam


def nodes(n: int, seed: int = 0) -> list:
    from curate.filters.dedup import Node

    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i and rng.random() < 0.10:
            base = out[rng.randrange(len(out))]
            h = base.phash
            for bit in rng.sample(range(63), 3):
                h ^= 1 << bit
            out.append(Node(f"k{i:08d}", f"s{i}", f"p{i}", h, rng.randint(10_000, 1_000_000), "2022"))
        elif i and rng.random() < 0.02:
            base = out[rng.randrange(len(out))]
            out.append(base._replace(key=f"k{i:08d}"))
        else:
            out.append(Node(f"k{i:08d}", f"s{i}", f"p{i}", rng.getrandbits(63), rng.randint(10_000, 1_000_000), "2022"))
    return out


def _child(n: int) -> None:
    from curate.pipelines.dedup import Deduplicate

    data = nodes(n)
    started = time.perf_counter()
    with beam.Pipeline() as p:
        decisions, unsettled = p | beam.Create(data) | Deduplicate(radius=6, rounds=12, spare=1)
        _ = unsettled | beam.combiners.Count.Globally() | beam.Map(lambda c: c == 0 or sys.exit(f"{c} unsettled"))
    seconds = time.perf_counter() - started
    status = Path("/proc/self/status").read_text()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
    print(json.dumps({"seconds": seconds, "peak_mib": hwm}))


def bench(n: int = 1000) -> list[dict]:
    rows = []
    for size in (n, 8 * n):
        child = subprocess.run([sys.executable, __file__, str(size)], capture_output=True, text=True, check=True)
        result = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append({"benchmark": "dedup", "nodes": size, "seconds": round(result["seconds"], 1),
                     "peak_rss_mib": round(result["peak_mib"])})
    rows[1]["time_ratio_vs_n"] = round(rows[1]["seconds"] / rows[0]["seconds"], 2)
    rows[0]["time_ratio_vs_n"] = 1.0
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    _child(int(sys.argv[1]))
