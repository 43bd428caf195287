"""`make demo`: build the sample crawl, serve it on 127.0.0.1, run every stage that exists, summarize.

Stages land issue by issue; until extract exists the demo checks the served crawl end to end the way a
stage will read it (listing over HTTP, WARC records streamed with warcio, one image per host) and
prints where everything is.
"""

from __future__ import annotations

import gzip
import json
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
from warcio.archiveiterator import ArchiveIterator

from curate.sample.build import build_sample_crawl
from curate.sample.plan import DEFAULT_PORT, HOSTS
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


def _probe(server: SampleServer, snapshot: str) -> dict[str, int]:
    """Read a snapshot through the server like the extract stage will: listing, then each WARC streamed."""
    listing = urllib.request.urlopen(server.url("crawl", f"/crawl-data/{snapshot}/warc.paths.gz"), timeout=10).read()
    counts = {"files": 0, "unreadable_files": 0, "records": 0, "responses": 0}
    for path in gzip.decompress(listing).decode().split():
        counts["files"] += 1
        try:
            with urllib.request.urlopen(server.url("crawl", "/" + path), timeout=30) as stream:
                for record in ArchiveIterator(stream):
                    counts["records"] += 1
                    counts["responses"] += record.rec_type == "response"
        except Exception:  # noqa: BLE001 - the probe reports broken files instead of stopping on them
            counts["unreadable_files"] += 1
    return counts


def run_demo(crawl: Path, out: Path, seed: int = 0, scale: int = 1) -> int:
    started = time.time()
    port = _port_for(crawl)
    summary = build_sample_crawl(crawl, seed=seed, scale=scale, port=port)
    built = time.time() - started
    print(f"sample crawl: {summary['pages']} pages, {summary['image_urls']} image URLs, "
          f"{summary['warc_files']} WARC files in {crawl} ({built:.1f} s)")
    with SampleServer(crawl) as server:
        for host in HOSTS:
            print(f"  serving {host:7s} {server.url(host)}")
        for snapshot in summary["snapshots"]:
            print(f"  {snapshot}: {_probe(server, snapshot)}")
    out.mkdir(parents=True, exist_ok=True)
    truth = pq.read_table(crawl / "truth.parquet").to_pylist()
    print("expected funnel (truth.parquet, fate per image URL):")
    for fate, n in summary["fates"].items():
        print(f"  {fate:22s} {n}")
    print("stages run: none yet (extract, download, filter and shards arrive with the next issues)")
    print(f"outputs: crawl {crawl}/crawl-data, truth {crawl}/truth.parquet ({len(truth)} rows), hosts {crawl}/hosts.json")
    return 0
