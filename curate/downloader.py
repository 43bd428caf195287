"""Fetch one URL shard with img2dataset, stage it, and commit it in img2dataset's layout.

img2dataset's `Downloader` does the fetching (thread pool, X-Robots-Tag check, tar + parquet + stats
writers); it runs in-process on one shard, through the opener curate.fetch installs (SSRF guard, byte
cap, deadline, magic bytes). The opener is installed for the whole worker process and never removed:
img2dataset only uses urllib's global opener, and removing it while another bundle's shard is in flight
in the same worker would let that shard's requests past the guard. It writes its tar at the final path while it works, so it writes to a local
staging folder; the finished files are then committed to OUT/fetched/ one by one under temporary names
(tar, then parquet, then the stats file, which marks the shard complete). A killed run leaves no visible
half shard, and a rerun skips every shard whose stats file exists.

Originals are kept (no decode, no re-encode) unless a resize mode is asked for. The committed parquet is
img2dataset's, plus the columns curate adds: `reason` (ok or an error class), `retryable`, `mime`
(sniffed from the bytes) and the ref's provenance.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import tarfile
import tempfile
import time
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate import reasons as R
from curate.config import DownloadConfig
from curate.fetch import RETRYABLE, FetchPolicy, classify, install
from curate.io import atomic_write, join, read_json, remove_stale_folders, shard_name
from curate.mime import sniff
from curate.records import ImageRef, LedgerRow
from curate.shards import picture, tar_samples
from curate.tables import FETCHED_SCHEMA

CARRIED_COLUMNS = ("ref_key", "page_url", "snapshot", "source_file", "record_offset", "crawl_date", "source")
_installed: FetchPolicy | None = None


def shard_count(total: int, per_shard: int) -> int:
    """URL shards for `total` URLs, at most `per_shard` in each (one at least)."""
    return max(1, math.ceil(total / per_shard))


def origin_hash(origin: str) -> int:
    return int.from_bytes(hashlib.sha256(origin.encode()).digest()[:4], "big")


def interleaved_shard(rank: int, origin_hashed: int, shards: int) -> int:
    """The URL shard of an origin's `rank`-th URL (in key order): (rank + origin hash) mod shards, so one host's
    consecutive URLs land in different shards and no shard hammers one host."""
    return (rank + origin_hashed) % shards


def policy_of(config: DownloadConfig) -> FetchPolicy:
    return FetchPolicy(config.timeout, config.deadline, config.max_bytes, tuple(config.allow_private_hosts),
                       config.user_agent_token)


def _ensure_opener(policy: FetchPolicy) -> None:
    global _installed
    if _installed != policy:  # once per worker process and policy
        install(policy)
        _installed = policy


def _input_table(refs: list[ImageRef]) -> pa.Table:
    return pa.table({
        "url": [r.url for r in refs], "caption": [r.alt for r in refs], "ref_key": [r.key for r in refs],
        "page_url": [r.page_url for r in refs], "snapshot": [r.snapshot for r in refs],
        "source_file": [r.source_file for r in refs], "record_offset": [r.record_offset for r in refs],
        "crawl_date": [r.crawl_date for r in refs], "source": [r.source for r in refs],
    })


def _downloader(config: DownloadConfig, staging: str, n_rows: int) -> Any:
    from img2dataset.downloader import Downloader
    from img2dataset.resizer import Resizer
    from img2dataset.writer import WebDatasetSampleWriter

    keep = config.resize_mode == "no"
    resizer = Resizer(config.image_size, config.resize_mode, False, encode_format=config.encode_format,
                      disable_all_reencoding=keep, min_image_size=config.min_image_size)
    return Downloader(
        sample_writer_class=WebDatasetSampleWriter, resizer=resizer, thread_count=config.threads,
        save_caption=True, extract_exif=False, output_folder=staging,
        column_list=["url", "caption", *CARRIED_COLUMNS], timeout=config.timeout,
        number_sample_per_shard=max(n_rows, 1), oom_shard_count=5, compute_hash="sha256", verify_hash_type=None,
        encode_format=config.encode_format, retries=config.retries, user_agent_token=config.user_agent_token,
        disallowed_header_directives=header_directives(config.disallowed_header_directives),
    )


def header_directives(disallowed: tuple[str, ...]) -> list[str]:
    """img2dataset's list of X-Robots-Tag directives that forbid an image. It compares directives literally,
    and `none` means `noindex, nofollow` (Google's definition), so `none` joins the list whenever either does."""
    names = [d.strip().lower() for d in disallowed]
    return names + (["none"] if {"noindex", "nofollow"} & set(names) and "none" not in names else [])


def _mimes(tar_bytes: bytes) -> dict[str, str]:
    """Sample key -> mime type sniffed from the image member's first bytes."""
    out = {}
    for stem, members in tar_samples(io.BytesIO(tar_bytes)):
        if image := picture(members):
            out[stem] = sniff(image[1][:32]) or "application/octet-stream"
    return out


def _annotate(table: pa.Table, mimes: dict[str, str]) -> tuple[pa.Table, list[LedgerRow]]:
    rows = table.to_pylist()
    ledger = []
    for row in rows:
        reason = classify(row["error_message"]) if row["status"] != "success" else R.KEPT
        row["reason"] = reason
        row["retryable"] = reason in RETRYABLE
        row["mime"] = mimes.get(row["key"])
        row["http_status"] = 200 if reason == R.KEPT else _status_of(reason)
        ledger.append(_ledger_row(row, ""))
    ordered = sorted(rows, key=lambda r: r["key"])
    return pa.Table.from_pylist(ordered, schema=FETCHED_SCHEMA), ledger


def _status_of(reason: str) -> int | None:
    return int(reason[5:]) if reason.startswith("http_") and reason[5:].isdigit() else None


def committed(out: str, shard_id: int) -> bool:
    return read_json(join(out, "fetched", f"{shard_name(shard_id)}_stats.json")) is not None


def read_committed_ledger(out: str, shard_id: int) -> list[LedgerRow]:
    import fsspec

    name = shard_name(shard_id)
    with fsspec.open(join(out, "fetched", f"{name}.parquet"), "rb") as fh:
        rows = pq.read_table(fh).to_pylist()
    return [_ledger_row(r, name) for r in rows]


def _ledger_row(row: dict[str, Any], shard: str) -> LedgerRow:
    """A ref's ledger row from its row in the shard's parquet: the one conversion, so a shard fetched now and
    the same shard read back (a resume, or a bundle the runner replays) give identical ledger rows."""
    return LedgerRow(row["ref_key"], row["url"], row["reason"], row["error_message"] or "", bool(row["retryable"]),
                     shard, row["key"])


def download_shard(refs: list[ImageRef], shard_id: int, out: str, config: DownloadConfig) -> list[LedgerRow]:
    """Fetch, stage and commit one shard (or read back a shard a previous run committed)."""
    if committed(out, shard_id):
        return read_committed_ledger(out, shard_id)
    _ensure_opener(policy_of(config))
    name = shard_name(shard_id)
    remove_stale_staging()
    with tempfile.TemporaryDirectory(prefix=f"{STAGING_PREFIX}{os.getpid()}-") as staging:
        source = os.path.join(staging, f"input-{name}.feather")
        with pa.OSFile(source, "wb") as sink, pa.ipc.new_file(sink, _input_table(refs).schema) as writer:
            writer.write_table(_input_table(refs))
        output = os.path.join(staging, "out")
        os.makedirs(output)
        _downloader(config, output, len(refs)).download_shard((shard_id, source))
        canonical = os.path.join(staging, f"{name}.tar")
        _canonical_tar(os.path.join(output, f"{name}.tar"), canonical)
        with open(canonical, "rb") as fh:
            tar_bytes = fh.read()
        table, ledger = _annotate(pq.read_table(os.path.join(output, f"{name}.parquet")), _mimes(tar_bytes))
        with open(os.path.join(output, f"{name}_stats.json"), encoding="utf-8") as fh:
            stats = json.load(fh)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    atomic_write(join(out, "fetched", f"{name}.tar"), tar_bytes)
    atomic_write(join(out, "fetched", f"{name}.parquet"), buf.getvalue())
    stats["reasons"] = _count(r.reason for r in ledger)
    atomic_write(join(out, "fetched", f"{name}_stats.json"), json.dumps(stats, indent=2, sort_keys=True).encode())
    return [dataclasses.replace(row, shard=name) for row in ledger]


STAGING_PREFIX = "curate-dl-"  # local staging folders: curate-dl-<pid>-<random>


def remove_stale_staging(root: str | None = None) -> list[str]:
    """Remove the staging folders of download processes that are gone; returns what it removed."""
    return remove_stale_folders(STAGING_PREFIX, root)


def _canonical_tar(source: str, target: str) -> None:
    """img2dataset adds members in the order its threads finish, stamped with the current time; the committed
    tar has them sorted by sample key and stamped 0, so the same fetched bytes give the same shard on every
    run and runner. Member contents are copied untouched."""
    with tarfile.open(source) as src, tarfile.open(target, "w", format=tarfile.USTAR_FORMAT) as dst:
        members = sorted(src.getmembers(), key=lambda m: m.name.partition("."))
        for member in members:
            member.mtime = 0
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))


def write_inline_shard(out: str, shard_id: int, refs: list[ImageRef]) -> list[LedgerRow]:
    """Images whose bytes came with the crawl, written in img2dataset's layout with webdataset's writer."""
    import webdataset as wds

    name = shard_name(shard_id)
    tar = io.BytesIO()
    rows, ledger = [], []
    started = time.time()
    with wds.TarWriter(tar, mtime=0) as writer:  # members in key order, fixed mtime: the same bytes every run
        for i, ref in enumerate(refs):
            key = f"{name}{i:05d}"
            mime = sniff(ref.content or b"")
            reason = R.KEPT if mime else R.NOT_AN_IMAGE
            error = None if mime else "inline payload is not an image"
            meta = {"url": ref.url, "caption": ref.alt, **{k: getattr(ref, k) for k in CARRIED_COLUMNS if k != "ref_key"},
                    "ref_key": ref.key, "key": key, "status": "success" if mime else "failed_to_download",
                    "error_message": error, "sha256": hashlib.sha256(ref.content or b"").hexdigest() if mime else None,
                    "reason": reason, "retryable": False, "mime": mime, "http_status": None}
            if mime:
                writer.write({"__key__": key, "jpg": ref.content, "txt": ref.alt, "json": json.dumps(meta).encode()})
            rows.append(meta)
            ledger.append(_ledger_row(meta, name))
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=FETCHED_SCHEMA), buf, compression="zstd")
    atomic_write(join(out, "fetched", f"{name}.tar"), tar.getvalue())
    atomic_write(join(out, "fetched", f"{name}.parquet"), buf.getvalue())
    ended, kept = time.time(), sum(r.reason == R.KEPT for r in ledger)
    stats = {"count": len(refs), "successes": kept, "failed_to_download": len(refs) - kept, "failed_to_resize": 0,
             "duration": ended - started, "start_time": started, "end_time": ended,
             "status_dict": _count(row["error_message"] or "success" for row in rows), "inline": True,
             "reasons": _count(r.reason for r in ledger)}
    atomic_write(join(out, "fetched", f"{name}_stats.json"), json.dumps(stats, indent=2, sort_keys=True).encode())
    return ledger
