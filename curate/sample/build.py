"""Write the sample crawl to a directory: crawl files, host document roots, hosts.json and the truth.

Layout (DIR):
    crawl-data/CC-MAIN-<ID>/warc.paths.gz, wat.paths.gz
    crawl-data/CC-MAIN-<ID>/segments/<seg>/warc/*.warc.gz, .../wat/*.warc.wat.gz
    hosts/<host>/...            what each image host serves (`curate serve DIR`)
    hosts.json                  ports, document roots and fault routes of the hosts
    truth.parquet               one row per image URL: content, text kind, duplicates, expected fate
    truth_records.parquet       one row per crawl record: file, offset, type, expected outcome
    sample.json                 seed, scale, port and counts

Same (seed, scale, port) -> identical bytes in every file.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.sample.pages import page_bytes
from curate.sample.plan import DEFAULT_PORT, HOSTS, ROBOTS, SNAPSHOTS, Plan, build_plan, truth_rows
from curate.sample.warcs import (
    Capture,
    CrawlFileWriter,
    WrittenRecord,
    image_capture,
    other_captures,
    page_capture,
    write_wat,
)

CAPTURES_PER_FILE = 14
NOT_A_WARC = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
              b"<Message>Access Denied</Message><RequestId>0000000000000000</RequestId></Error>\n")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _write_hosts(out: Path, plan: Plan) -> dict[str, Any]:
    roots = out / "hosts"
    routes: dict[str, dict[str, dict]] = {host: dict(r) for host, r in plan.routes.items()}
    for img in plan.images + plan.served_only:
        if not img.http:
            continue
        for rel, data in img.served_files().items():
            _write(roots / img.host / rel, data)
        if img.route is not None:
            routes.setdefault(img.host, {})[img.path] = img.route
    for host, text in ROBOTS.items():
        _write(roots / host / "robots.txt", text.encode())
    for page in plan.pages:
        _write(roots / page.host / page.path.lstrip("/"), page_bytes(page, plan))
    for host in HOSTS:
        if host != "crawl":
            (roots / host).mkdir(parents=True, exist_ok=True)
    config = {
        "bind": "127.0.0.1",
        "base_port": plan.port,
        "hosts": {h: {"port": plan.port + off, "root": "." if h == "crawl" else f"hosts/{h}"} for h, off in HOSTS.items()},
        "routes": {h: dict(sorted(r.items())) for h, r in sorted(routes.items())},
    }
    (out / "hosts.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return config


def _file_stem(snapshot: int, index: int) -> str:
    _, _, first_day, _ = SNAPSHOTS[snapshot]
    start = dt.datetime.fromisoformat(first_day) + dt.timedelta(hours=13, minutes=41, seconds=1 + 3 * index)
    end = start + dt.timedelta(hours=3)
    return f"CC-MAIN-{start:%Y%m%d%H%M%S}-{end:%Y%m%d%H%M%S}-{index:05d}"


def _captures(plan: Plan, snapshot: int) -> tuple[list[Capture], list[Capture]]:
    """The snapshot's captures in crawl order, and the page(s) whose record the file is cut inside."""
    rng = random.Random(plan.seed * 31 + snapshot)
    caps = [page_capture(plan, p, snapshot) for p in plan.pages if snapshot in p.snapshots and not p.cut]
    caps += [image_capture(img) for img in plan.images if img.inline and img.inline_snapshot == snapshot]
    rng.shuffle(caps)
    caps[1:1] = other_captures(plan, snapshot, SNAPSHOTS[snapshot][2] + "T14:00:00Z")
    cut = [page_capture(plan, p, snapshot) for p in plan.pages if snapshot in p.snapshots and p.cut]
    return caps, cut


def _records_rows(rel: str, kind: str, records: list[WrittenRecord], cut_at: int | None) -> list[dict]:
    rows = []
    for i, rec in enumerate(records):
        end = records[i + 1].offset if i + 1 < len(records) else None
        if cut_at is not None and rec.offset >= cut_at:
            break
        truncated = cut_at is not None and (end is None or end > cut_at)
        n_refs = sum(len(t.refs) for t in rec.capture.page.tags) if rec.capture and rec.capture.page else 0
        rows.append({"file": rel, "kind": kind, "offset": rec.offset, "warc_type": rec.warc_type,
                     "target_uri": rec.target_uri, "img_refs": n_refs if rec.warc_type == "response" else 0,
                     "fate": "truncated_record" if truncated else "ok"})
    return rows


def _write_snapshot(out: Path, plan: Plan, snapshot: int) -> list[dict]:
    snap_id, segment, _, _ = SNAPSHOTS[snapshot]
    base = Path("crawl-data") / snap_id / "segments" / segment
    caps, cut = _captures(plan, snapshot)
    per_file = CAPTURES_PER_FILE * plan.scale  # files grow with --scale too, as real crawl files are large
    chunks = [caps[i : i + per_file] for i in range(0, len(caps), per_file)]
    chunks[-1] += cut  # the cut page goes last: the truncated file has good records before the damage
    version = "1.0" if snapshot == 0 else "1.1"
    warc_list, wat_list, rows = [], [], []
    for index, chunk in enumerate(chunks):
        stem = _file_stem(snapshot, index)
        warc_rel, wat_rel = base / "warc" / f"{stem}.warc.gz", base / "wat" / f"{stem}.warc.wat.gz"
        (out / warc_rel).parent.mkdir(parents=True, exist_ok=True)
        (out / wat_rel).parent.mkdir(parents=True, exist_ok=True)
        writer = CrawlFileWriter(out / warc_rel, plan, snap_id, version)
        writer.warcinfo(chunk[0].date)
        for cap in chunk:
            writer.capture(cap)
        writer.close()
        cut_at = _truncate_if_cut(out / warc_rel, writer.records)
        wat_records = write_wat(out / wat_rel, warc_rel.name, writer.records, plan, version)
        rows += _records_rows(str(warc_rel), "warc", writer.records, cut_at)
        rows += _records_rows(str(wat_rel), "wat", wat_records, None)
        warc_list.append(str(warc_rel))
        wat_list.append(str(wat_rel))
    if snapshot == len(SNAPSHOTS) - 1:  # a listed file that is not a WARC at all (an object store's error page)
        stem = _file_stem(snapshot, len(chunks))
        for rel, listing, kind in ((base / "warc" / f"{stem}.warc.gz", warc_list, "warc"),
                                   (base / "wat" / f"{stem}.warc.wat.gz", wat_list, "wat")):
            _write(out / rel, NOT_A_WARC)
            listing.append(str(rel))
            rows.append({"file": str(rel), "kind": kind, "offset": 0, "warc_type": None, "target_uri": "",
                         "img_refs": 0, "fate": "not_warc"})
    for name, listing in (("warc.paths.gz", warc_list), ("wat.paths.gz", wat_list)):
        _write(out / "crawl-data" / snap_id / name, gzip.compress(("\n".join(listing) + "\n").encode(), mtime=0))
    return rows


def _truncate_if_cut(path: Path, records: list[WrittenRecord]) -> int | None:
    """Cut the file inside the response record of a cut page; returns the cut offset."""
    for i, rec in enumerate(records):
        if rec.warc_type == "response" and rec.capture and rec.capture.page and rec.capture.page.cut:
            end = records[i + 1].offset
            cut_at = rec.offset + (end - rec.offset) * 6 // 10
            with path.open("r+b") as fh:
                fh.truncate(cut_at)
            return cut_at
    return None


def build_sample_crawl(out: str | Path, seed: int = 0, scale: int = 1, port: int = DEFAULT_PORT) -> dict[str, Any]:
    """Build the sample crawl under `out` (its previous contents of the same names are replaced)."""
    out = Path(out)
    for name in ("crawl-data", "hosts"):
        shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    plan = build_plan(seed, scale, port)
    hosts = _write_hosts(out, plan)
    record_rows = []
    for snapshot in range(len(SNAPSHOTS)):
        record_rows += _write_snapshot(out, plan, snapshot)
    truth = truth_rows(plan)
    pq.write_table(pa.Table.from_pylist(truth), out / "truth.parquet")
    pq.write_table(pa.Table.from_pylist(record_rows), out / "truth_records.parquet")
    summary = {
        "seed": seed, "scale": scale, "port": port,
        "snapshots": [s[0] for s in SNAPSHOTS],
        "hosts": {h: f"http://127.0.0.1:{v['port']}/" for h, v in hosts["hosts"].items()},
        "pages": len(plan.pages),
        "image_urls": len(truth),
        "warc_files": sum(1 for r in record_rows if r["kind"] == "warc" and r["offset"] == 0),
        "fates": dict(sorted(Counter(r["fate"] for r in truth if r["fate"]).items())),
        "text_kinds": dict(sorted(Counter(r["text_kind"] for r in truth if r["fate"] == "kept").items())),
    }
    (out / "sample.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
