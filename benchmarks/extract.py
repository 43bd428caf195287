"""Extract benchmark: pages per second per core, against a bare warcio loop over the same files (the floor),
and peak memory of one process reading the largest file, at two sample crawl scales.

Run by benchmarks/run.py; `python benchmarks/extract.py --peak FILE` is the child that measures memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

from curate.filters.extract import PAGE, Context, extract_record
from curate.warc import DamagedFile, NotAWarc, iter_records


def warc_files(crawl: Path) -> list[Path]:
    return sorted(crawl.glob("crawl-data/*/segments/*/warc/*.warc.gz"))


def bare_loop(files: list[Path]) -> tuple[int, float]:
    """The floor: warcio alone, every record's content read, HTML responses counted."""
    pages, started = 0, time.perf_counter()
    for path in files:
        try:
            with path.open("rb") as fh:
                for record in ArchiveIterator(fh):
                    record.content_stream().read()
                    if record.rec_type == "response" and record.http_headers and \
                            (record.http_headers.get_header("Content-Type") or "").startswith("text/html"):
                        pages += 1
        except Exception:  # noqa: BLE001 - the planted broken files stop warcio; the floor just moves on
            continue
    return pages, time.perf_counter() - started


def our_loop(files: list[Path]) -> tuple[int, int, float]:
    """Our reader and extraction rules (one process, so one core): pages and references."""
    pages = refs = 0
    started = time.perf_counter()
    for path in files:
        ctx = Context(str(path), "", "curate")
        try:
            with path.open("rb") as fh:
                for record in iter_records(fh):
                    if record.complete:
                        kind, items = extract_record(ctx, record)
                        pages += kind == PAGE
                        refs += len(items)
        except (NotAWarc, DamagedFile):
            continue
    return pages, refs, time.perf_counter() - started


def peak_rss_mib(path: Path) -> float:
    child = subprocess.run([sys.executable, __file__, "--peak", str(path)], capture_output=True, text=True, check=True)
    return float(child.stdout.strip())


def bench(crawl: Path, scale: int) -> dict:
    files = warc_files(crawl)
    floor_pages, floor_s = bare_loop(files)
    pages, refs, ours_s = our_loop(files)
    largest = max(files, key=lambda p: p.stat().st_size)
    return {
        "benchmark": "extract", "scale": scale, "warc_files": len(files),
        "largest_file_mib": round(largest.stat().st_size / 2**20, 2), "pages": pages, "references": refs,
        "warcio_pages_per_s": round(floor_pages / floor_s), "curate_pages_per_s_per_core": round(pages / ours_s),
        "curate_vs_warcio": round((pages / ours_s) / (floor_pages / floor_s), 2),
        "peak_rss_mib_largest_file": round(peak_rss_mib(largest), 1),
    }


def _peak_child(path: str) -> None:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork+exec.
    our_loop([Path(path)])
    status = Path("/proc/self/status").read_text()
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    print(json.dumps(kib / 1024))


if __name__ == "__main__" and sys.argv[1:2] == ["--peak"]:
    _peak_child(sys.argv[2])
