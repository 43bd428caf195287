"""One stage again on an existing output, on SDK worker processes: its time and each worker's peak RSS.

For a stage that reads only OUT (dedup, text, write): the output of a `benchmarks/pipeline.py` run at some
scale holds everything it needs, so one code change can be measured at every scale without rebuilding the
crawl and running the stages before it. The stage runs with `force` on the DirectRunner with two SDK worker
processes (`--direct_running_mode=multi_processing --direct_num_workers=2`), or with `--runner dask` on a
fresh dask.distributed cluster of two worker processes (`--worker-memory`: each one's limit, past 60% of
which dask spills to disk), and the settings the pipeline benchmark uses at that scale; workers are polled
from /proc as there (benchmarks/pipeline.py's TreeMemory). One JSON line: stage, scale, runner, seconds, the
workers' peaks (MiB, largest first).

    python benchmarks/stage_memory.py write build/bench/pipeline/out-multi_processing-x16 16
    python benchmarks/stage_memory.py dedup build/bench/pipeline/out-dask-x16 16 --runner dask --worker-memory 1GiB
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.pipeline import PARTITIONS_PER_SCALE, SHARDS_PER_SCALE, worker_peaks  # noqa: E402

STAGES = ("dedup", "text", "write")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("out", help="an output of benchmarks/pipeline.py")
    parser.add_argument("scale", type=int, help="the scale it was made at (for its settings)")
    parser.add_argument("--runner", choices=("multi_processing", "dask"), default="multi_processing")
    parser.add_argument("--worker-memory", default="auto", help="dask: each worker's memory limit (e.g. 1GiB)")
    args = parser.parse_args()
    from curate.commands.demo import DEMO_FLAGS
    from curate.config import load_config
    from curate.pipelines import dedup, text, write

    # Beam starts its SDK worker processes as plain `python`: make that this interpreter.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    config = load_config(None, {**DEMO_FLAGS, "text.filter": "light", "text.threads": 1,
                                "extract.shards": SHARDS_PER_SCALE * args.scale})
    run = {"dedup": dedup.run, "text": text.run, "write": write.run}[args.stage]
    seconds, peaks = worker_peaks(args.runner, lambda beam_args: run(args.out, config, beam_args, force=True),
                                  PARTITIONS_PER_SCALE * args.scale, args.worker_memory)
    print(json.dumps({"stage": args.stage, "scale": args.scale, "runner": args.runner,
                      "worker_memory": args.worker_memory if args.runner == "dask" else None,
                      "seconds": round(seconds, 1), "worker_peaks_mib": peaks}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
