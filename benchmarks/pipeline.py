"""Scaling benchmark: `curate run` (curate.pipelines.run.run_all) on the sample crawl at several --scale values.

For each scale, in a fresh subprocess (so that peak memory is that scale's own): build the sample crawl
(curate.sample.build.build_sample_crawl), serve it on 127.0.0.1 (curate.sample.serve.SampleServer, as
curate/demo.py does), and run every stage with the demo's download settings (curate.commands.demo.DEMO_FLAGS), the
text stage on, an empty OCR cache, and `extract.shards` = --shards-per-scale x the scale (a real job sizes
its Parquet shards by bytes, docs/DEPLOY.md section 4, so a worker's share of a shard does not grow with the
job; the benchmark keeps the shard size constant the same way).

Runners (--runner):
- multi_processing (the default, what `make bench` runs): the DirectRunner with two SDK workers, each a
  separate `python` process (`--direct_running_mode=multi_processing --direct_num_workers=2`), the shape of
  a distributed run: the driver process holds the runner (which, like a cluster's shuffle, holds the data
  between steps) and the workers run the DoFns. The text engine runs with `text.threads` 1, as
  docs/DEPLOY.md says for one SDK process per core.
- portable: the PortableRunner with an embedded job service and one LOOPBACK process worker (the embedded
  job service does not read direct_num_workers).
- direct: the in-process DirectRunner; the whole pipeline runs in the benchmark's own process.
- dask: curate's Dask runner (curate.pipelines.runners.DaskRunner) on a dask.distributed cluster of a
  scheduler and two worker processes (one thread each) on 127.0.0.1, a fresh cluster for every stage (so a
  worker's peak is that stage's own, not what an earlier stage left in it), with `--dask_npartitions` =
  --partitions-per-scale x the scale: a distributed engine whose shuffles are cut into partitions, the count
  growing with the job as a real one is sized.

Memory is measured per process: every process below the benchmark's is polled from /proc every 0.2 s
(VmHWM, the kernel's own high-water mark of its resident memory, and its CPU time), filed under the stage
that was running when it was first seen and as an SDK worker (its command line runs `sdk_worker_main` or
`SdkHarness`), the shell that starts one (left out), or another process. Recorded per scale: wall seconds
per stage and in total (the crawl build excluded), images written, images/s (written images over the
pipeline's total), the driver's peak RSS (RUSAGE_SELF: runner, in-process work, and the sample server's
threads), each stage's SDK workers' peaks, CPU time (user + system of the driver and every process below
it), the 1-minute load average at start and end (a shared machine slows every figure alike: compare scales
at similar load), and the glibc malloc tunables in the environment (MALLOC_*; see BENCHMARKS.md: they
decide whether a worker's peak follows the data).

Goal: time grows no faster than linearly in the scale (seconds per image at scale s / at the smallest
scale <= 1.2) and memory per worker stays flat.

    python benchmarks/pipeline.py --out build/bench/pipeline --scales 1,4,16 [--runner direct] [--set k=v]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STAGES = ("extract", "download", "decode", "dedup", "text", "write")
WORKERS = 2
# A real job sizes its Parquet shards by bytes (docs/DEPLOY.md, section 4), so that a worker's share of a
# shard stays the same however big the job: the benchmark does the same, extract.shards grows with the scale.
SHARDS_PER_SCALE = 8
PARTITIONS_PER_SCALE = 4  # dask runner: partitions grow with the job, as a real job's are sized
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_")  # glibc tunables, recorded
RUNNERS = {
    "direct": [],
    "multi_processing": ["--direct_running_mode=multi_processing", f"--direct_num_workers={WORKERS}"],
    # The embedded job service runs one SDK worker (it does not read direct_num_workers).
    "portable": ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK",
                 "--experiments=use_loopback_process_worker"],
    "dask": ["--runner=curate.pipelines.runners.DaskRunner"],  # + partitions and each stage's cluster address
}


def _children_of() -> dict[int, list[int]]:
    """ppid -> pids, for every process /proc shows now."""
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:  # it ended
                continue
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])  # the command may hold spaces and ')'
            tree.setdefault(ppid, []).append(int(name))
    return tree


TICK = os.sysconf("SC_CLK_TCK")


def _process(pid: int) -> tuple[int, float, str] | None:
    """(VmHWM in KiB, user + system CPU seconds, command line) of a process, or None once it has ended."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # from field 3 (state) on: utime is field 14, stime 15
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]), cpu, cmdline
    return None  # a zombie has no memory lines


def _role(cmdline: str) -> str:
    """An SDK worker (the LOOPBACK process worker runs `SdkHarness`, multi_processing `sdk_worker_main`), the
    shell that multi_processing starts each worker through (left out), or another process."""
    if cmdline.split(" ", 1)[0].rsplit("/", 1)[-1] in ("sh", "bash", "dash"):
        return "shell"
    workers = ("SdkHarness", "sdk_worker_main", "spawn_main")  # Beam's SDK workers; dask's (multiprocessing)
    return "worker" if any(name in cmdline for name in workers) else "other"


class TreeMemory:
    """Peak RSS of every process below this one, polled from /proc, filed by stage and role."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.stage = interval, STAGES[0]
        self.seen: dict[int, dict[str, Any]] = {}  # pid -> {"stage", "role", "kib", "cpu"}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        tree, todo = _children_of(), [os.getpid()]
        while todo:
            for pid in tree.get(todo.pop(), []):
                todo.append(pid)
                found = _process(pid)
                if found is None:
                    continue
                kib, cpu, cmdline = found
                entry = self.seen.setdefault(pid, {"stage": self.stage, "kib": 0, "cpu": 0.0, "role": _role(cmdline),
                                                   "cmd": " ".join(cmdline.split()[:3])[:60]})
                entry["kib"], entry["cpu"] = max(entry["kib"], kib), max(entry["cpu"], cpu)

    def cpu_seconds(self) -> float:
        """CPU seconds of every process seen below this one (to its last poll)."""
        return sum(entry["cpu"] for entry in self.seen.values())

    def by_stage(self) -> dict[str, dict[str, Any]]:
        """stage -> {"workers": count, "worker_peak_mib": largest, "other_peak_mib": largest other process,
        "others": their commands}."""
        out: dict[str, dict[str, Any]] = {}
        for entry in self.seen.values():
            if entry["role"] == "shell":
                continue
            row = out.setdefault(entry["stage"], {"workers": 0, "worker_peak_mib": 0, "worker_peaks_mib": [],
                                                  "other_peak_mib": 0, "others": []})
            mib = round(entry["kib"] / 1024)
            if entry["role"] == "worker":
                row["workers"] += 1
                row["worker_peaks_mib"] = sorted([*row["worker_peaks_mib"], mib], reverse=True)
                row["worker_peak_mib"] = max(row["worker_peak_mib"], mib)
            else:
                row["other_peak_mib"] = max(row["other_peak_mib"], mib)
                row["others"] = sorted({*row["others"], entry["cmd"]})
        return {stage: out[stage] for stage in STAGES if stage in out}


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


class DaskClusters:
    """A fresh dask.distributed cluster (scheduler + WORKERS worker processes, one thread each) for each
    stage: `args` (the Beam arguments every stage reads, one list) names the current one's address."""

    def __init__(self, args: list[str], worker_memory: str = "auto"):
        self.args, self.worker_memory = args, worker_memory
        self.cluster: Any = None

    def next(self) -> None:
        from dask.distributed import LocalCluster

        self.close()
        self.cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=None, memory_limit=self.worker_memory)
        self.args[-1] = f"--dask_client_address={self.cluster.scheduler_address}"

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None


def worker_peaks(runner: str, job: Callable[[list[str]], Any], dask_npartitions: int = 8,
                 worker_memory: str = "auto") -> tuple[float, list[int]]:
    """Run `job(beam_args)` once on `runner` (for `dask`, on a fresh cluster: DaskClusters): its seconds and
    each worker process's peak RSS (MiB, largest first)."""
    beam_args = list(RUNNERS[runner])
    clusters = None
    if runner == "dask":
        beam_args += [f"--dask_npartitions={dask_npartitions}", "--dask_client_address"]
        clusters = DaskClusters(beam_args, worker_memory)
        clusters.next()
    try:
        with TreeMemory() as memory:
            started = time.perf_counter()
            job(beam_args)
            seconds = time.perf_counter() - started
            memory.sample()
    finally:
        if clusters:
            clusters.close()
    return seconds, sorted((mib for row in memory.by_stage().values() for mib in row["worker_peaks_mib"]),
                           reverse=True)


def one_scale(scale: int, work: Path, runner: str = "multi_processing", overrides: dict[str, str] | None = None,
              shards_per_scale: int = SHARDS_PER_SCALE, partitions_per_scale: int = PARTITIONS_PER_SCALE,
              worker_memory: str = "auto") -> dict[str, Any]:
    """Build, serve and run the whole pipeline at one scale on `runner`, driven from this process; the
    figures as a dict."""
    from curate.commands.demo import DEMO_FLAGS
    from curate.commands.report import write_report
    from curate.config import load_config
    from curate.crawl import snapshot_files
    from curate.pipelines.run import run_all
    from curate.sample.build import build_sample_crawl
    from curate.sample.plan import HOSTS, SNAPSHOTS
    from curate.sample.serve import SampleServer, free_port_block

    crawl, out = work / f"crawl-x{scale}", work / f"out-{runner}-x{scale}"
    for path in (crawl, out):
        shutil.rmtree(path, ignore_errors=True)
    started = time.perf_counter()
    summary = build_sample_crawl(crawl, seed=0, scale=scale,
                                 port=free_port_block(len(HOSTS), start=20000, end=32000, seed=os.getpid()))
    build_seconds = time.perf_counter() - started
    flags: dict[str, Any] = {**DEMO_FLAGS, "text.filter": "light"}
    if shards_per_scale:
        flags["extract.shards"] = shards_per_scale * scale
    if runner != "direct":
        flags["text.threads"] = 1  # one SDK process per core (docs/DEPLOY.md)
        # Beam starts loopback process workers as plain `python`: make that this interpreter.
        os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    flags.update(overrides or {})
    config = load_config(None, flags)
    seconds: dict[str, float] = {}
    beam_args = list(RUNNERS[runner])
    clusters = None
    if runner == "dask":
        beam_args += [f"--dask_npartitions={partitions_per_scale * scale}", "--dask_client_address"]
        clusters = DaskClusters(beam_args, worker_memory)

    def done(stage: str, _manifest: Any, took: float) -> None:
        seconds[stage] = round(took, 1)
        memory.sample()  # the last look at this stage's processes
        memory.stage = STAGES[min(STAGES.index(stage) + 1, len(STAGES) - 1)]
        if clusters and stage != STAGES[-1]:
            clusters.next()

    load_before, cpu_before = os.getloadavg()[0], _cpu_seconds()
    with SampleServer(crawl) as server, TreeMemory() as memory:
        files = snapshot_files([s[0] for s in SNAPSHOTS], server.url("crawl"), "warc")
        started = time.perf_counter()
        try:
            if clusters:
                clusters.next()
            manifests = run_all(files, str(out), config, beam_args, force=True, on_stage=done)
        finally:
            if clusters:
                clusters.close()
        write_report(str(out))
        total = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before + memory.cpu_seconds()
    funnel = {stage: next(iter(m["funnel"].values())) for stage, m in manifests.items()}
    work_done = json.loads((out / "text" / "_WORK.json").read_text())
    written = manifests["write"]["samples"]
    self_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    stages = memory.by_stage()
    return {"benchmark": "pipeline", "runner": runner, "scale": scale, "shards": config.extract.shards,
            "dask_npartitions": partitions_per_scale * scale if runner == "dask" else None,
            "dask_worker_memory": worker_memory if runner == "dask" else None,
            "malloc_env": {k: os.environ[k] for k in MALLOC_ENV if k in os.environ}, "image_urls": summary["image_urls"],
            "build_s": round(build_seconds, 1), **{f"{s}_s": seconds.get(s, 0.0) for s in STAGES},
            "total_s": round(total, 1), "decoded": funnel["decode"]["kept"], "ocr_scored": work_done["scored"],
            "written": written, "images_per_s": round(written / total, 2),
            "ms_per_url": round(1000 * total / summary["image_urls"], 1), "cpu_s": round(cpu, 1),
            "cpu_ms_per_url": round(1000 * cpu / summary["image_urls"], 1),
            "peak_rss_mib": round(self_mib), "children_peak_rss_mib": round(children_mib),
            "worker_peak_rss_mib": max((row["worker_peak_mib"] for row in stages.values()), default=0),
            "workers": sum(row["workers"] for row in stages.values()), "per_stage_memory": stages,
            "load_1min_start_end": [round(load_before, 1), round(os.getloadavg()[0], 1)]}


def bench(work: Path, scales: list[int], timeout: float | None = None, runner: str = "multi_processing",
          overrides: dict[str, str] | None = None, shards_per_scale: int = SHARDS_PER_SCALE,
          partitions_per_scale: int = PARTITIONS_PER_SCALE, worker_memory: str = "auto") -> list[dict[str, Any]]:
    """Each scale in a fresh subprocess; the ratio of time per URL to the first scale's."""
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for scale in scales:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(scale), "--out", str(work),
               "--runner", runner, f"--shards-per-scale={shards_per_scale}",
               f"--partitions-per-scale={partitions_per_scale}", f"--worker-memory={worker_memory}",
               *[f"--set={k}={v}" for k, v in (overrides or {}).items()]]
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
    parser.add_argument("--runner", choices=sorted(RUNNERS), default="multi_processing",
                        help="portable: SDK workers in their own processes (per-worker memory); direct: in-process")
    parser.add_argument("--timeout", type=float, default=None, help="seconds allowed per scale (default: none)")
    parser.add_argument("--shards-per-scale", type=int, default=SHARDS_PER_SCALE,
                        help="extract.shards = this x the scale (constant shard size); 0: the config's")
    parser.add_argument("--partitions-per-scale", type=int, default=PARTITIONS_PER_SCALE,
                        help="dask runner: --dask_npartitions = this x the scale")
    parser.add_argument("--worker-memory", default="auto",
                        help="dask runner: each worker's memory limit (e.g. 1GiB; dask spills to disk from 60%% of "
                             "it); auto: the machine's memory over the workers")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config setting (section.key=value, as in a --config YAML file) for every scale")
    parser.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)  # internal: run one scale here
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    if args.one:
        print(json.dumps(one_scale(args.one, Path(args.out), args.runner, overrides, args.shards_per_scale,
                                   args.partitions_per_scale, args.worker_memory)))
        return 0
    rows = bench(Path(args.out), [int(s) for s in args.scales.split(",")], args.timeout, args.runner, overrides,
                 args.shards_per_scale, args.partitions_per_scale, args.worker_memory)
    (Path(args.out) / f"results-{args.runner}.json").write_text(json.dumps(rows, indent=2) + "\n")
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
