"""`make demo`: build the sample crawl, serve it on 127.0.0.1, run every stage that exists, summarize.

The stages read the crawl over HTTP from the local server exactly as they would read CommonCrawl, and
each stage's funnel is printed next to what truth.parquet says a perfect pipeline would do.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.parquet as pq

from curate import reasons as R
from curate.config import load_config
from curate.crawl import snapshot_files
from curate.sample.build import build_sample_crawl
from curate.sample.plan import DEFAULT_PORT, HOSTS, SNAPSHOTS
from curate.serve import SampleServer, ServeError, free_port_block


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


def _extract(server: SampleServer, out: Path, truth: list[dict]) -> None:
    from pipelines.extract import run

    files = snapshot_files([s[0] for s in SNAPSHOTS], server.url("crawl"), "warc")
    started = time.time()
    manifest = run(files, str(out), load_config(None, DEMO_FLAGS), force=True)
    refs = manifest["funnel"]["references"]
    expected = sum(1 for r in truth if r["in_warc"] and r["stage"] != R.EXTRACT)
    print(f"extract ({time.time() - started:.1f} s, {len(files)} WARC files over HTTP): "
          f"{refs['input']} references -> {refs['kept']} distinct image URLs (truth: {expected})")
    for reason, n in sorted(refs["rejected"].items()):
        print(f"  rejected {reason:18s} {n}")
    files_part = manifest["funnel"]["files"]
    print(f"  files read {files_part['kept']}, failed {files_part['failed']} {files_part['failures']}")


# The sample's trickling host would hold a download for the whole default deadline (30 s); the demo is brisk.
DEMO_FLAGS = {"download.allow_private_hosts": "127.0.0.1", "download.deadline": 5, "download.timeout": 3,
              "download.samples_per_shard": 100}


def _download(out: Path, truth: list[dict]) -> None:
    from pipelines.download import run

    started = time.time()
    manifest = run(str(out), load_config(None, DEMO_FLAGS), force=True)
    refs = manifest["funnel"]["references"]
    expected = sum(1 for r in truth if r["in_warc"] and r["stage"] not in (R.EXTRACT, R.DOWNLOAD))
    print(f"download ({time.time() - started:.1f} s, img2dataset through curate's guards): {refs['input']} refs -> "
          f"{refs['kept']} images (truth: {expected})")
    for reason, n in sorted(refs["rejected"].items()):
        print(f"  rejected {reason:18s} {n}")


def _decode(out: Path, truth: list[dict]) -> None:
    from curate.readers import list_sources
    from pipelines.decode import run

    started = time.time()
    manifest = run(list_sources([str(out / "fetched" / "*.tar")]), str(out), load_config(), force=True)
    images = manifest["funnel"]["images"]
    expected = sum(1 for r in truth if r["in_warc"] and r["stage"] not in (R.EXTRACT, R.DOWNLOAD, R.DECODE))
    print(f"decode ({time.time() - started:.1f} s): {images['input']} images -> {images['kept']} valid "
          f"(truth: {expected})")
    for reason, n in sorted(images["rejected"].items()):
        print(f"  rejected {reason:18s} {n}")
    from pipelines import dedup

    started = time.time()
    images = dedup.run(str(out), load_config(), force=True)["funnel"]["images"]
    unique = sum(1 for r in truth if r["in_warc"] and r["fate"] == R.KEPT)
    print(f"dedup ({time.time() - started:.1f} s): {images['input']} images -> {images['kept']} unique "
          f"(truth: {unique}); " + ", ".join(f"{k} {v}" for k, v in images["rejected"].items()))


def run_demo(crawl: Path, out: Path, seed: int = 0, scale: int = 1) -> int:
    started = time.time()
    port = _port_for(crawl)
    summary = build_sample_crawl(crawl, seed=seed, scale=scale, port=port)
    print(f"sample crawl: {summary['pages']} pages, {summary['image_urls']} image URLs, "
          f"{summary['warc_files']} WARC files in {crawl} ({time.time() - started:.1f} s)")
    truth = pq.read_table(crawl / "truth.parquet").to_pylist()
    with SampleServer(crawl) as server:
        print(f"serving on {server.url('crawl')} .. port {port + len(HOSTS) - 1} (127.0.0.1 only)")
        _extract(server, out, truth)
        _download(out, truth)
    _decode(out, truth)
    print("stages not built yet: text filter, shards (see README, Status)")
    print(f"outputs: {out}/refs (image references), {out}/fetched (images, img2dataset layout), {out}/images "
          f"(valid images with their hashes), {out}/dedup (duplicate decisions), {out}/ledger "
          f"(a status per ref), {out}/rejects, {out}/failed, {out}/stats.json, {out}/config.yaml; "
          f"truth {crawl}/truth.parquet")
    return 0
