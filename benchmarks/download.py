"""Download benchmark: images per second on loopback, `curate download` next to the bare img2dataset CLI on
the same URL list in the same run (goal: our overhead <= 20%).

The URL list is every plain image of the sample crawl (no planted fault), repeated with a query string
(`?copy=N`, which the sample server ignores) up to the asked count, so each URL is distinct but the
server stays trivial. Both commands run as child processes and pay their own imports; both keep
originals (no resize), 16 threads, one shard.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate.sample.serve import SampleServer
from curate.tables import REF_SCHEMA
from curate.urls import url_key


def _urls(crawl: Path, count: int) -> list[str]:
    truth = pq.read_table(crawl / "truth.parquet").to_pylist()
    plain = [r["url"] for r in truth if r["fault"] == "none" and r["source"] == "http" and r["stage"] == "kept"]
    return [f"{plain[i % len(plain)]}?copy={i // len(plain)}" for i in range(count)]


def _timed(cmd: list[str]) -> float:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    started = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def bench(crawl: Path, work: Path, count: int = 5000) -> dict:
    urls = _urls(crawl, count)
    work.mkdir(parents=True, exist_ok=True)
    url_list = work / "urls.parquet"
    pq.write_table(pa.table({"url": urls}), url_list)
    out = work / "curate"
    (out / "refs").mkdir(parents=True, exist_ok=True)
    rows = [{"key": url_key(u), "url": u, "alt": "", "title": "", "page_url": "", "snapshot": "", "source_file": "",
             "record_offset": 0, "crawl_date": "", "source": "html", "content": None, "occurrences": 1, "alts": []}
            for u in urls]
    pq.write_table(pa.Table.from_pylist(rows, schema=REF_SCHEMA), out / "refs" / "refs-00000-of-00001.parquet")
    bin_dir = Path(sys.executable).parent
    with SampleServer(crawl):
        bare = _timed([str(bin_dir / "img2dataset"), "--url_list", str(url_list), "--input_format", "parquet",
                       "--output_folder", str(work / "bare"), "--processes_count", "1", "--thread_count", "16",
                       "--resize_mode", "no", "--disable_all_reencoding", "True", "--output_format", "webdataset", "--number_sample_per_shard",
                       str(count), "--timeout", "10", "--retries", "0", "--enable_wandb", "False"])
        ours = _timed([sys.executable, "-m", "curate", "download", "--output", str(out), "--allow-private-hosts",
                       "--threads", "16", "--samples-per-shard", str(count), "--retries", "0"])
    kept = sum(r["reason"] == "kept" for f in (out / "ledger").glob("*.parquet") for r in pq.read_table(f).to_pylist())
    import json

    bare_ok = sum(json.loads(f.read_text())["successes"] for f in (work / "bare").glob("*_stats.json"))
    return {"benchmark": "download", "urls": count, "curate_downloaded": kept, "img2dataset_downloaded": bare_ok,
            "img2dataset_images_per_s": round(count / bare, 1), "curate_images_per_s": round(count / ours, 1),
            "img2dataset_s": round(bare, 1), "curate_s": round(ours, 1), "overhead": f"{ours / bare - 1:+.0%}"}
