"""`make demo`: build the sample crawl, serve it on 127.0.0.1, `curate run` the whole pipeline on it.

The stages read the crawl over HTTP from the local server exactly as they would read CommonCrawl; each
stage's funnel is printed next to what truth.parquet says a perfect pipeline would do, and the run ends
with the shards, the stats and report.html.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.parquet as pq

from curate import reasons as R
from curate.commands.report import write_report
from curate.config import load_config
from curate.crawl import snapshot_files
from curate.pipelines.run import run_all
from curate.sample.build import build_sample_crawl
from curate.sample.plan import DEFAULT_PORT, HOSTS, SNAPSHOTS
from curate.sample.serve import SampleServer, ServeError, free_port_block


def _port_for(crawl: Path) -> int:
    """The port the crawl was built for (or the default) when its block is free, else another free block."""
    try:
        port = int(json.loads((crawl / "hosts.json").read_text())["base_port"])
    except (OSError, ValueError, KeyError):
        port = DEFAULT_PORT
    try:
        return free_port_block(len(HOSTS), start=port, end=port + len(HOSTS))
    except ServeError:
        return free_port_block(len(HOSTS), start=20000, end=32000)


# The sample's trickling host would hold a download for the whole default deadline (30 s); the demo is brisk.
DEMO_FLAGS = {"download.allow_private_hosts": "127.0.0.1", "download.deadline": 5, "download.timeout": 3,
              "download.samples_per_shard": 100, "shards.samples_per_shard": 64}

# What truth.parquet says a perfect pipeline keeps after each stage (WARC extraction).
_AFTER = {"extract": (R.EXTRACT,), "download": (R.EXTRACT, R.DOWNLOAD), "decode": (R.EXTRACT, R.DOWNLOAD, R.DECODE)}


def _report(stage: str, manifest: dict, seconds: float, truth: list[dict]) -> None:
    funnel = manifest["funnel"]
    part = funnel.get("references") or funnel.get("images") or next(iter(funnel.values()))
    state = "skipped (up to date)" if manifest.get("skipped") else f"{seconds:.1f} s"
    line = f"{stage:9s} {state:>20s}: {part['input']:>5} in -> {part['kept']:>5} kept"
    if stage in _AFTER:
        line += f" (truth: {sum(1 for r in truth if r['in_warc'] and r['stage'] not in _AFTER[stage])})"
    elif stage == "dedup":
        line += f" (truth: {sum(1 for r in truth if r['in_warc'] and r['fate'] == R.KEPT)})"
    elif stage == "text":
        kept = [r for r in truth if r["in_warc"] and r["fate"] == R.KEPT]
        line += (f" (truth: {sum(r['has_text'] for r in kept)} with text, "
                 f"{sum(r['text_kind'] in ('document', 'chart', 'table') for r in kept)} documents/charts/tables)")
    elif stage == "write":
        line += f" in {manifest['shards']} shards"
    print(line)
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(part["rejected"].items()) if v)
    if rejected:
        print(f"{'':31s}rejected: {rejected}")


def run_command(base_url: str, out: Path, text_filter: str) -> str:
    """The `curate run` command line that does what the demo's run does (while the crawl is served)."""
    sets = " ".join(f"--set {k}={v}" for k, v in DEMO_FLAGS.items() if k != "download.allow_private_hosts")
    return (f"curate run --snapshot {','.join(s[0] for s in SNAPSHOTS)} --cc-base-url {base_url} -o {out} "
            f"--allow-private-hosts --text-filter {text_filter} {sets} --force")


def run_demo(crawl: Path, out: Path, seed: int = 0, scale: int = 1, text_filter: str = "light") -> int:
    started = time.time()
    port = _port_for(crawl)
    summary = build_sample_crawl(crawl, seed=seed, scale=scale, port=port)
    print(f"sample crawl: {summary['pages']} pages, {summary['image_urls']} image URLs, "
          f"{summary['warc_files']} WARC files in {crawl} ({time.time() - started:.1f} s)")
    truth = pq.read_table(crawl / "truth.parquet").to_pylist()
    config = load_config(None, {**DEMO_FLAGS, "text.filter": text_filter})
    with SampleServer(crawl) as server:
        print(f"serving on {server.url('crawl')} .. port {port + len(HOSTS) - 1} (127.0.0.1 only)")
        files = snapshot_files([s[0] for s in SNAPSHOTS], server.url("crawl"), "warc")
        print(f"curate run: {len(files)} WARC files over HTTP -> {out} (text filter: {text_filter}); the same as")
        print(f"  {run_command(server.url('crawl'), out, text_filter)}")
        run_all(files, str(out), config, force=True,
                on_stage=lambda stage, manifest, seconds: _report(stage, manifest, seconds, truth))
        write_report(str(out))
    shards = json.loads((out / "shards" / "_MANIFEST.json").read_text())
    print(f"dataset: {shards['samples']} images in {out}/shards (WebDataset tar + Parquet); "
          f"rejects in {out}/rejects, dead letters in {out}/failed, funnel in {out}/stats.json")
    print(f"report: {out}/report.html   (truth: {crawl}/truth.parquet; total {time.time() - started:.0f} s)")
    return 0
