"""What a runner's worker holds while it reads a shuffle: per-worker peak RSS against the bytes through one
GroupByKey, nothing else in the job.

The job: `count` keys, one value of random bytes each (`--mib` in all), reshuffled onto the workers, made
there, grouped by key and measured (len) on the other side; no DoFn keeps anything. A runner that streams a
shuffle holds about the same whatever the total; one that hands each worker its whole share at once grows
with it. Runners: `multi_processing` (Beam's local runner, two SDK worker processes) and `dask` (curate's Dask
runner on a fresh dask.distributed cluster of two worker processes, one thread each; `--worker-memory`:
each one's limit, past 60% of which dask spills what it holds to disk). Workers are polled
from /proc (benchmarks/pipeline.py's TreeMemory). One JSON line per size: runner, MiB through the shuffle,
seconds, the workers' peaks (MiB, largest first).

    python benchmarks/shuffle_memory.py --runner multi_processing --mib 0,125,500
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.pipeline import worker_peaks  # noqa: E402

VALUE_BYTES = 250_000  # one value: a picture's worth of keypoint data, a few times over


def _value(key: int) -> tuple[int, bytes]:
    import numpy as np

    return key, np.random.default_rng(key).integers(0, 256, VALUE_BYTES, dtype=np.uint8).tobytes()


def _measure(element: tuple[int, list[bytes]]) -> int:
    return sum(len(v) for v in element[1])


def one(runner: str, mib: int, worker_memory: str = "auto") -> dict:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    count = max(1, mib * 2**20 // VALUE_BYTES) if mib else 1

    def job(args: list[str]) -> None:
        with beam.Pipeline(options=PipelineOptions(args)) as p:
            _ = (p | beam.Create(range(count)) | beam.Reshuffle()
                 | beam.Map(_value if mib else lambda k: (k, b"")) | beam.GroupByKey() | beam.Map(_measure)
                 | beam.combiners.Count.Globally())

    seconds, peaks = worker_peaks(runner, job, 8, worker_memory)
    return {"runner": runner, "worker_memory": worker_memory if runner == "dask" else None,
            "mib_through_shuffle": round(count * VALUE_BYTES / 2**20) if mib else 0, "seconds": round(seconds, 1),
            "worker_peaks_mib": peaks}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runner", choices=("multi_processing", "dask"), default="multi_processing")
    parser.add_argument("--mib", default="0,125,500", help="MiB through the shuffle, comma-separated")
    parser.add_argument("--worker-memory", default="auto", help="dask: each worker's memory limit (e.g. 512MiB)")
    args = parser.parse_args()
    # Beam starts its SDK worker processes as plain `python`: make that this interpreter.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    for mib in (int(m) for m in args.mib.split(",")):
        print(json.dumps(one(args.runner, mib, args.worker_memory)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
