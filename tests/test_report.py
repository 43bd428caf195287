"""OUT/report.html on a real run (extract, download, decode, dedup of the sample crawl), checked in headless
Chromium: the page loads without errors, shows every reason of stats.json, loads nothing from outside,
and keeps hostile data inert."""

from __future__ import annotations

import html.parser
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate import reasons as R
from curate.commands.cli import main
from curate.commands.report import MAX_THUMBS, THUMB_SIDE, esc, write_report
from curate.config import TextConfig, load_config
from curate.pipelines import decode, dedup
from curate.readers import list_sources
from tests.conftest import parquet_rows

HOSTILE = "\"><img src=x onerror=\"document.documentElement.setAttribute('data-pwned','1')\"><script>" \
          "document.documentElement.setAttribute('data-pwned','2')</script>"


@pytest.fixture(scope="module")
def run_out(downloaded, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the downloaded sample crawl, decoded and deduplicated (no text stage, no shards yet)."""
    out = tmp_path_factory.mktemp("report") / "out"
    shutil.copytree(downloaded[0], out)
    for later in ("text", "shards", "cache", "report.html"):  # other tests' session fixtures may have run these
        shutil.rmtree(out / later, ignore_errors=True)
    for stale in (out / "rejects").glob("text-*"):
        stale.unlink()
    stats_file = out / "stats.json"
    stats = {k: v for k, v in json.loads(stats_file.read_text()).items() if k not in ("text", "write")}
    stats_file.write_text(json.dumps(stats))
    decode.run(list_sources([str(out / "fetched" / "*.tar")]), str(out), load_config())
    dedup.run(str(out), load_config())
    return out


def _chromium(page: Path, tmp_path: Path) -> tuple[str, str]:
    """The DOM after load, and the console lines Chromium logged (errors, CSP violations)."""
    if not shutil.which("chromium"):
        pytest.fail("chromium is not installed: `make chromium` installs Debian's package")
    done = subprocess.run(
        ["chromium", "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000", "--dump-dom",
         page.as_uri()], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout, "\n".join(line for line in done.stderr.splitlines() if ":CONSOLE" in line)


def _root_attrs(dom: str) -> dict[str, str]:
    tag = re.search(r"<html[^>]*>", dom)
    assert tag, dom[:200]
    return dict(re.findall(r'(data-[a-z]+)="([^"]*)"', tag.group(0)))


def _stats_reasons(stats: dict) -> set[str]:
    return {reason for stage in stats.values() for part in stage.values() if isinstance(part, dict)
            for field in ("rejected", "failures") for reason, n in (part.get(field) or {}).items() if n}


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "action", "poster", "data")]


@pytest.mark.slow
def test_report_loads_in_chromium_and_shows_every_reason(run_out: Path, tmp_path: Path, capsys) -> None:
    assert main(["report", str(run_out)]) == 0
    assert capsys.readouterr().out.strip().endswith("report.html")
    page = run_out / "report.html"
    dom, console = _chromium(page, tmp_path)
    attrs = _root_attrs(dom)
    assert attrs["data-loaded"] == "ok", "the page's load handler did not run"
    assert attrs["data-errors"] == "0" and attrs["data-broken"] == "0"
    assert console == "", console  # no script error, no CSP violation, no failed load
    assert int(attrs["data-images"]) >= 40  # kept, rejected (decode refusals from the tars too), clusters
    stats = json.loads((run_out / "stats.json").read_text())
    reasons = _stats_reasons(stats)
    assert {R.DATA_URI, R.http_status(404), R.TOO_SMALL, R.DUPLICATE, R.NEAR_DUPLICATE} <= reasons
    shown = set(re.findall(r'<span class="reason">([^<]*)</span>', dom))
    assert reasons <= shown, reasons - shown
    assert "text, write" in re.sub(r"<[^>]+>", "", dom)  # the stages that have not run are named
    for stage in (R.EXTRACT, R.DOWNLOAD, R.DECODE, R.DEDUP):
        assert f"<td>{stage}</td>" in dom  # the funnel
    assert "duplicate clusters" in dom.lower() and 'class="cluster"' in dom


@pytest.mark.slow
def test_report_is_self_contained_and_bounded(run_out: Path) -> None:
    text = Path(write_report(str(run_out))).read_text()
    links = _Links()
    links.feed(text)
    assert links.urls and all(u.startswith(("data:image/jpeg;base64,", "#")) for u in links.urls), \
        [u[:80] for u in links.urls if not u.startswith(("data:", "#"))]
    assert not {"link", "iframe", "object", "embed", "base"} & set(links.tags)
    assert "img-src data:" in text and "default-src 'none'" in text  # the CSP forbids anything else
    assert len(links.urls) <= MAX_THUMBS + 100
    assert len(text) < 3_000_000  # thumbnails are capped per grid and per page
    thumb = re.search(r'src="data:image/jpeg;base64,([^"]+)"', text)
    assert thumb
    from base64 import b64decode

    from PIL import Image

    with Image.open(io.BytesIO(b64decode(thumb.group(1)))) as im:
        assert max(im.size) <= THUMB_SIDE


@pytest.mark.slow
def test_report_uses_the_text_stage_and_escapes_hostile_data(run_out: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(run_out, out, ignore=shutil.ignore_patterns("report.html"))
    # hostile alt text in a real image row, and hostile OCR text: both must stay text
    first = sorted((out / "images").glob("*.parquet"))[0]
    table = pq.read_table(first)
    alts = table.column("alt").to_pylist()
    table = table.set_column(table.schema.get_field_index("alt"), "alt", pa.array([HOSTILE] * len(alts)))
    pq.write_table(table, first)
    kept = sorted(d["key"] for d in parquet_rows(out / "dedup") if d["reason"] == R.KEPT)
    rows = [{"key": k, "text_boxes": i % 7, "text_area_fraction": (i % 10) / 10, "text_words": i % 13,
             "text_chars": (i % 13) * 5, "text_mean_confidence": 0.8, "text_lines": i % 5,
             "text_text": HOSTILE if i == 0 else "OPEN " * (i % 4), "text_ms": 100.0, "light": i % 2 == 0,
             "heavy": i % 10 == 0, "reason": R.KEPT} for i, k in enumerate(kept)]
    (out / "text").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), out / "text" / "text-00000-of-00001.parquet")
    page = Path(write_report(str(out)))
    text = page.read_text()
    assert "data-pwned" not in text.replace(esc(HOSTILE), "")  # only ever as escaped text
    assert "&lt;script&gt;" in text
    dom, console = _chromium(page, tmp_path)
    attrs = _root_attrs(dom)
    assert "data-pwned" not in attrs and attrs["data-errors"] == "0" and attrs["data-broken"] == "0", attrs
    assert console == "", console
    light = sum(r["light"] for r in rows)
    assert f"with text (light): {light}</h3>" in dom and f"without text: {len(rows) - light}</h3>" in dom
    assert "text area (fraction of the image) (n=" in dom and "words (read, and estimated for lines not read) (n=" in dom
    # the filter variables' histograms mark the filters' thresholds: characters, extent, lines, page
    marks = re.findall(r'<line class="threshold"[^>]*><title>([^<]*)</title>', dom)
    t = TextConfig()
    assert marks == [f"light: {t.light_min_chars}", f"heavy: {t.heavy_min_chars}", f"light: {t.light_min_extent:g}",
                     f"heavy: {t.heavy_min_extent:g}", f"heavy: {t.heavy_min_lines}", f"heavy: {t.heavy_min_page}"], marks
    not_run = re.search(r'id="not-run">([^<]*)<', dom)
    assert not_run and not_run.group(1) == "write"  # the text stage counts as run: its table is there


@pytest.mark.slow
def test_report_sections_people_compare_are_there_and_right(run_out: Path, tmp_path: Path) -> None:
    """Per-stage time, throughput and bytes; counts by snapshot; every reject and every cluster in a table;
    near misses: each checked in Chromium's DOM against the outputs, read independently."""
    from urllib.parse import urlsplit

    from curate.commands.report import NEAR_MARGIN, TABLE_CAP

    page = Path(write_report(str(run_out)))
    dom, console = _chromium(page, tmp_path)
    assert console == "" and _root_attrs(dom)["data-errors"] == "0", console

    def section(sid: str) -> str:
        found = re.search(rf'<section id="{sid}">(.*?)</section>', dom, re.S)
        assert found, sid
        return found.group(1)

    def cells(html_rows: str) -> list[list[str]]:  # each body row's cells, as text (head rows have none)
        rows = [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
                for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html_rows, re.S)]
        return [row for row in rows if row]

    timings = json.loads((run_out / "timings.json").read_text())
    stages = {row[0]: row for row in cells(section("stages")) if len(row) == 8}
    for stage in (R.EXTRACT, R.DOWNLOAD, R.DECODE, R.DEDUP):
        folder = {R.EXTRACT: "refs", R.DOWNLOAD: "fetched", R.DECODE: "images", R.DEDUP: "dedup"}[stage]
        manifest = json.loads((run_out / folder / "_MANIFEST.json").read_text())
        written = sum(s["bytes"] for table in manifest["tables"].values() for s in table)
        assert float(stages[stage][1].replace(",", "")) == pytest.approx(timings[stage]["seconds"], abs=0.05)
        assert stages[stage][6] == f"{written / 1e6:,.2f}" and float(stages[stage][1].replace(",", "")) > 0
    refs = parquet_rows(run_out / "refs")
    kept = {d["key"] for d in parquet_rows(run_out / "dedup") if d["reason"] == R.KEPT}
    by_snapshot = {}
    for r in refs:
        n, k = by_snapshot.get(r["snapshot"], (0, 0))
        by_snapshot[r["snapshot"]] = (n + 1, k + (r["key"] in kept))
    shown = {row[0]: (int(row[1]), int(row[2])) for row in cells(section("sources")) if row[0].startswith("CC-MAIN")}
    assert shown == by_snapshot and len(shown) == 2
    hosts = {row[0] for row in cells(section("sources")) if not row[0].startswith("CC-MAIN")}
    assert hosts == {urlsplit(r["url"]).hostname for r in refs}
    rejects = parquet_rows(run_out / "rejects") + parquet_rows(run_out / "failed")
    table = re.search(r'<table class="all" data-filter="filter-rejects">(.*?)</table>', dom, re.S)
    assert table and len(re.findall(r'<tr class="row"', table.group(1))) == min(len(rejects), TABLE_CAP) > 20
    dedup = parquet_rows(run_out / "dedup")
    clusters = {d["cluster"] for d in dedup if d["cluster_size"] > 1}
    table = re.search(r'<table class="all" data-filter="filter-clusters">(.*?)</table>', dom, re.S)
    assert table and {row[0] for row in cells(table.group(1))} == clusters and len(clusters) > 3
    radius = load_config().dedup.hamming_radius
    hashes = {r["key"]: r["phash"] for r in parquet_rows(run_out / "images") if r["key"] in kept}
    ordered = sorted(hashes)
    near = sorted((bin(hashes[a] ^ hashes[b]).count("1"), a, b) for i, a in enumerate(ordered)
                  for b in ordered[i + 1:] if radius < bin(hashes[a] ^ hashes[b]).count("1") <= radius + NEAR_MARGIN)
    assert f"<p>{len(near)} pairs of survivors" in section("near")
    if near:
        table = re.search(r'<table class="all" data-filter="filter-near">(.*?)</table>', dom, re.S)
        assert table and [(int(r[0]), r[1], r[2]) for r in cells(table.group(1))] == near


def test_report_of_an_empty_output_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no curate output" in err


def test_report_with_only_stats_names_every_stage_not_run(tmp_path: Path) -> None:
    (tmp_path / "stats.json").write_text(json.dumps(
        {"extract": {"references": {"input": 3, "kept": 1, "failed": 0, "rejected": {"data_uri": 2}}}}))
    text = Path(write_report(str(tmp_path))).read_text()
    assert '<span class="reason">data_uri</span>' in text
    assert re.search(r'id="not-run">download, decode, dedup, text, write<', text)


def test_a_group_with_nothing_in_it_gets_no_section(run_out: Path, tmp_path: Path) -> None:
    """Once the light filter ran, nothing kept is without text: no empty 'without text: 0' section."""
    out = tmp_path / "out"
    shutil.copytree(run_out, out, ignore=shutil.ignore_patterns("report.html"))
    kept = sorted(d["key"] for d in parquet_rows(out / "dedup") if d["reason"] == R.KEPT)
    rows = [{"key": k, "text_chars": 10, "light": True, "heavy": False, "reason": R.KEPT} for k in kept]
    (out / "text").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), out / "text" / "text-00000-of-00001.parquet")
    text = Path(write_report(str(out))).read_text()
    assert f"with text (light): {len(kept)}</h3>" in text and "without text" not in text
