"""The download stage against `curate serve` on 127.0.0.1, scored against truth.parquet."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import fsspec
import pyarrow.parquet as pq
import pytest

from curate import reasons as R
from curate.config import load_config
from curate.pipelines import download
from tests.conftest import DOWNLOAD_FLAGS as FLAGS
from tests.conftest import parquet_rows

pytestmark = pytest.mark.slow


def _expected(truth: dict) -> str:
    return truth["reason"] if truth["stage"] == R.DOWNLOAD else R.KEPT


def _images(out: Path) -> dict[str, str]:
    """ref key -> sha256 of the image bytes, over every committed tar of OUT/fetched."""
    found = {}
    for tar_path in sorted((out / "fetched").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
        for name, data in members.items():
            if name.endswith(".json"):
                meta = json.loads(data)
                image = next(v for k, v in members.items() if k.startswith(meta["key"] + ".")
                             and not k.endswith((".json", ".txt")))
                found[meta["ref_key"]] = hashlib.sha256(image).hexdigest()
    return found


def test_every_ref_once_with_the_truths_status(downloaded, sample_crawl: Path) -> None:
    out, _ = downloaded
    truth = {r["url"]: r for r in pq.read_table(sample_crawl / "truth.parquet").to_pylist()}
    refs = parquet_rows(out / "refs")
    ledger = parquet_rows(out / "ledger")
    assert sorted(r["key"] for r in ledger) == sorted(r["key"] for r in refs)
    assert {r["url"]: r["reason"] for r in ledger} == {r["url"]: _expected(truth[r["url"]]) for r in refs}
    stats = json.loads((out / "stats.json").read_text())["download"]["references"]
    assert stats["input"] == len(refs) == stats["kept"] + sum(stats["rejected"].values())
    rejects = [r for r in parquet_rows(out / "rejects") if r["stage"] == R.DOWNLOAD]
    assert sorted(r["key"] for r in rejects) == sorted(r["key"] for r in ledger if r["reason"] != R.KEPT)


def test_disallowed_urls_were_never_requested(downloaded) -> None:
    out, log = downloaded
    requested = {r["path"] for r in log}
    ledger = parquet_rows(out / "ledger")
    disallowed = [r for r in ledger if r["reason"] == R.ROBOTS_DISALLOW]
    assert len(disallowed) == 3
    assert not {urlsplit(r["url"]).path for r in disallowed} & requested
    assert "/robots.txt" in requested
    robots_requests = [r for r in log if r["path"] == "/robots.txt"]
    assert len(robots_requests) == len({r["host"] for r in robots_requests})  # once per host


def test_originals_are_kept_byte_for_byte(downloaded, sample_crawl: Path) -> None:
    out, _ = downloaded
    images = _images(out)
    ledger = parquet_rows(out / "ledger")
    kept = {r["key"] for r in ledger if r["reason"] == R.KEPT}
    assert set(images) == kept
    refs = {r["key"]: r for r in parquet_rows(out / "refs")}
    inline = [k for k in kept if refs[k]["source"] == "inline"]
    assert inline and all(images[k] == hashlib.sha256(refs[k]["content"]).hexdigest() for k in inline)
    import urllib.request

    for key in sorted(kept - set(inline))[:25]:
        with urllib.request.urlopen(refs[key]["url"], timeout=10) as response:
            assert hashlib.sha256(response.read()).hexdigest() == images[key]


def test_shards_interleave_hosts_and_carry_provenance(downloaded) -> None:
    out, _ = downloaded
    fetched = [p for p in sorted((out / "fetched").glob("*.parquet"))]
    assert len(fetched) >= 4
    for path in fetched:
        rows = pq.read_table(path).to_pylist()
        if rows[0]["source"] == "inline":
            continue
        hosts = [urlsplit(r["url"]).port for r in rows]
        assert len(set(hosts)) >= 3
        assert {"ref_key", "page_url", "snapshot", "source_file", "crawl_date", "reason", "mime",
                "http_status"} <= set(rows[0])
        for row in rows:
            assert (row["mime"] is not None) == (row["reason"] == R.KEPT)


def test_kill_and_rerun_gives_the_uninterrupted_result(downloaded, sample_crawl: Path, tmp_path: Path) -> None:
    out, _ = downloaded
    again = tmp_path / "again"
    fs = fsspec.filesystem("file")
    fs.copy(str(out / "refs"), str(again / "refs"), recursive=True)
    cmd = [sys.executable, "-m", "curate", "download", "--output", str(again), "--allow-private-hosts",
           "--deadline", "3", "--timeout", "2", "--urls-per-shard", "60"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list((again / "fetched").glob("*_stats.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.name for p in (again / "fetched").glob("*_stats.json")}
    assert done_before and not (again / "fetched" / "_MANIFEST.json").exists()
    for tar_path in (again / "fetched").glob("*.tar"):  # every visible tar is complete and readable
        assert (again / "fetched" / tar_path.name.replace(".tar", "_stats.json")).exists()
        with tarfile.open(tar_path) as tar:
            assert tar.getmembers()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert _images(again) == _images(out)
    strip = lambda rows: sorted((r["key"], r["reason"]) for r in rows)  # noqa: E731
    assert strip(parquet_rows(again / "ledger")) == strip(parquet_rows(out / "ledger"))


def test_retry_failed_fetches_only_retryable_refs(downloaded, served_crawl, tmp_path: Path, caplog) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="curate.progress")
    out, _ = downloaded
    again = tmp_path / "retry"
    fsspec.filesystem("file").copy(str(out), str(again), recursive=True)
    ledger = parquet_rows(again / "ledger")
    retryable = {urlsplit(r["url"]).path for r in ledger if r["retryable"]}
    assert retryable and len(retryable) < len(ledger) // 10
    before = len(served_crawl.requests)
    manifest = download.run(str(again), load_config(None, FLAGS), retry_failed=True)
    assert manifest["retried"] == len(retryable)
    # progress counts the URLs as their shards finish, against the total the pipeline knows: never 0
    lines = [r.getMessage() for r in caplog.records if r.name == "curate.progress"]
    assert f"download: {len(retryable)}/{len(retryable)} URLs fetched" in " ".join(lines), lines
    # A trickled response is logged when the server notices the client left: give it a few seconds.
    deadline = time.monotonic() + 10
    while True:
        images = {r["path"] for r in served_crawl.requests[before:] if r["path"] != "/robots.txt"}
        if images >= retryable or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert images == retryable
    after = parquet_rows(again / "ledger")
    assert sorted(r["key"] for r in after) == sorted(r["key"] for r in ledger)
    assert {r["key"]: r["reason"] for r in after} == {r["key"]: r["reason"] for r in ledger}  # same faults again
    assert not (again / "ledger-previous").exists()
    new_shards = {r["shard"] for r in after if r["retryable"]}
    assert new_shards and min(new_shards) > max(r["shard"] for r in ledger if r["shard"])


def test_new_refs_start_the_fetched_folder_afresh(downloaded, tmp_path: Path) -> None:
    out, _ = downloaded
    again = tmp_path / "changed"
    fsspec.filesystem("file").copy(str(out), str(again), recursive=True)
    manifest = json.loads((again / "refs" / "_MANIFEST.json").read_text())
    dropped = manifest["tables"]["refs"].pop()  # as if a new extract had produced other refs
    for count in ("input", "kept"):  # (and said so in its funnel, as a real extract would)
        manifest["funnel"]["references"][count] -= dropped["rows"]
    (again / dropped["path"]).unlink()
    (again / "refs" / "_MANIFEST.json").write_text(json.dumps(manifest))
    download.run(str(again), load_config(None, FLAGS))
    refs = parquet_rows(again / "refs")
    ledger = parquet_rows(again / "ledger")
    assert sorted(r["key"] for r in ledger) == sorted(r["key"] for r in refs)
    assert set(_images(again)) <= {r["key"] for r in refs}


def test_every_fetched_shard_has_one_schema_with_real_types(downloaded) -> None:
    """img2dataset's shards and the shard of pictures captured in the crawl: one schema (polars reads them as
    one table), widths typed int32 rather than null, and img2dataset's _stats.json fields in every shard."""
    import polars as pl

    from curate.tables import FETCHED_SCHEMA

    out, _ = downloaded
    files = sorted((out / "fetched").glob("*.parquet"))
    stats = [json.loads((out / "fetched" / f"{f.stem}_stats.json").read_text()) for f in files]
    assert any(s.get("inline") for s in stats) and not all(s.get("inline") for s in stats)  # both kinds here
    assert all(pq.read_schema(f).remove_metadata() == FETCHED_SCHEMA for f in files)
    frame = pl.read_parquet(str(out / "fetched" / "*.parquet"))
    assert frame.height == sum(s["count"] for s in stats) and frame.schema["width"] == pl.Int32
    for s in stats:
        assert {"count", "successes", "failed_to_download", "failed_to_resize", "status_dict", "duration"} <= set(s)
        assert s["successes"] == s["reasons"].get(R.KEPT, 0) and sum(s["status_dict"].values()) == s["count"]


def test_one_bar_counts_every_workers_urls(downloaded, tmp_path: Path) -> None:
    """`curate download` on two SDK worker processes with the bar on (CURATE_PROGRESS=bar: stderr is no
    terminal here): the bar ends at every URL robots.txt allowed, counted once over both workers, with a
    rate and an ETA; the workers' reports are gone afterwards."""
    import re

    out, _ = downloaded
    again = tmp_path / "bar"
    fsspec.filesystem("file").copy(str(out / "refs"), str(again / "refs"), recursive=True)
    cmd = [sys.executable, "-m", "curate", "download", "--output", str(again), "--allow-private-hosts",
           "--deadline", "3", "--timeout", "2", "--urls-per-shard", "60",
           "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "CURATE_PROGRESS": "bar"})
    assert result.returncode == 0, result.stderr[-2000:]
    inline = {r["key"] for r in parquet_rows(again / "refs") if r["content"] is not None}
    robots = {R.ROBOTS_DISALLOW, R.ROBOTS_UNREACHABLE}
    allowed = [r for r in parquet_rows(again / "ledger") if r["key"] not in inline and r["reason"] not in robots]
    bars = re.findall(r"download: +(\d+)%\|[^|]*\| (\d+)/(\d+) URLs fetched, ([\d.]+)/s, ETA (\d+) s", result.stderr)
    assert bars, result.stderr[-2000:]
    assert bars[-1][:3] == ("100", str(len(allowed)), str(len(allowed))) and float(bars[-1][3]) > 0
    assert len(allowed) > 100 and not (again / "_progress").exists()
