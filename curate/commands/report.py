"""`OUT/report.html`: what a person looks at after a run, in one self-contained file.

The page shows the funnel per stage (`stats.json`), each stage's time, throughput and bytes written
(`timings.json`, the manifests), counts by snapshot and by host, the reject reasons with their counts,
thumbnail grids (kept images with and without text, each reject reason where bytes exist, the largest
duplicate clusters side by side), every cluster and every reject in tables that sort and filter (up to
TABLE_CAP rows each; the Parquet tables hold the rest), near misses (pairs of survivors whose perceptual
hashes differ by a few bits more than the dedup radius: what a larger radius would merge), histograms of
the variables the filters use with their thresholds marked, the frozen config and every stage's inputs.
It reads whatever stages have run and names the ones that have not.

It opens offline and anywhere: images are small JPEG thumbnails embedded as `data:` URIs, charts are
inline SVG, there is no external resource at all, and a Content-Security-Policy allows nothing else
(`img-src data:`, one inline script by hash: the load check and the tables' sorting and filtering). Everything that comes from the data (URLs, alt text, OCR
text, config values) is escaped: web data is hostile. The page size is bounded: at most `GRID_CAP`
thumbnails per grid, `MAX_THUMBS` in all, each at most `THUMB_SIDE` pixels, whatever the size of the run.

Thumbnail bytes come from `OUT/images` (every decoded image: survivors and those the dedup and text
stages drop later) and, for images the decode stage refused, from `OUT/fetched/*.tar` by key. Images
are read through `curate.imaging.decode`, which never raises and refuses decompression bombs; one it
refuses gets a placeholder.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import html
import io
import itertools
import math
import re
import tarfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import fsspec
import pyarrow.parquet as pq
import yaml

from curate import reasons as R
from curate.config import DedupConfig, ImageConfig, TextConfig
from curate.errors import InputError, UserError
from curate.filters.text import describe_rules
from curate.imaging import Refusal, decode
from curate.io import MANIFEST, atomic_write, join, parquet_files, read_json
from curate.shards import picture, tar_samples

GRID_CAP = 12  # thumbnails per grid
MAX_THUMBS = 300  # thumbnails on the whole page
THUMB_SIDE = 128  # longer side of a thumbnail, pixels
CLUSTERS = 6  # duplicate clusters shown
CLUSTER_CAP = 8  # members shown per cluster
LIST_CAP = 40  # inputs listed per stage
TABLE_CAP = 5_000  # rows of the tables of every cluster and every reject
HOSTS = 25  # hosts listed, by references
NEAR_CAP = 4_000  # survivors compared for near misses (all pairs among them)
NEAR_MARGIN = 4  # near miss: Hamming distance within this many bits over the dedup radius
NEAR_SHOWN = 8  # near-miss pairs shown with their thumbnails
TITLE_CHARS = 300  # OCR text and URLs shown in a tooltip, at most

# Where each stage writes its table (the stage names are those of stats.json).
STAGE_FOLDERS = {R.EXTRACT: "refs", R.DOWNLOAD: "fetched", R.DECODE: "images", R.DEDUP: "dedup",
                 R.TEXT: "text", R.WRITE: "shards"}
TEXT_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TextConfig)}
# Decode views of anything Pillow can open safely: the refused images are shown too.
_THUMB_CONFIG = ImageConfig(formats=("jpeg", "png", "webp", "gif", "bmp", "tiff"), min_side=1,
                            max_aspect_ratio=1e9)
# Fixed bins, so histograms need no first pass and pages of different runs compare.
AREA_BINS = [i / 20 for i in range(20)]  # the last bar holds 0.95 to 1.0
WORD_BINS = [0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500]
CHAR_BINS = [0, 1, 2, 3, 5, 10, 20, 40, 60, 100, 200, 500, 1000]
LINE_BINS = [0, 1, 2, 3, 4, 5, 8, 12, 20, 50]
EXTENT_BINS = [0, 3, 6, 10, 15, 20, 30, 60, 100, 200, 500]
SIDE_BINS = [0, 64, 128, 256, 512, 1024, 2048, 4096, 8192]

_SCRIPT = """(function(){var d=document.documentElement,n=0;
window.addEventListener('error',function(){n+=1;d.setAttribute('data-errors',String(n));},true);
window.addEventListener('load',function(){var imgs=document.images,b=0;
for(var i=0;i<imgs.length;i++){if(!imgs[i].complete||imgs[i].naturalWidth===0){b+=1;}}
d.setAttribute('data-images',String(imgs.length));d.setAttribute('data-broken',String(b));
d.setAttribute('data-errors',String(n));d.setAttribute('data-loaded','ok');
var ts=document.querySelectorAll('table.all');for(var t=0;t<ts.length;t++){(function(tb){
var hs=tb.querySelectorAll('th');for(var j=0;j<hs.length;j++){(function(c,h){h.addEventListener('click',function(){
var rs=Array.prototype.slice.call(tb.querySelectorAll('tr.row')),up=h.getAttribute('data-up')!=='1';
rs.sort(function(a,b){var x=a.children[c].getAttribute('data-v')||a.children[c].textContent,
y=b.children[c].getAttribute('data-v')||b.children[c].textContent,nx=parseFloat(x),ny=parseFloat(y);
var r=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return up?r:-r;});
h.setAttribute('data-up',up?'1':'0');for(var k=0;k<rs.length;k++){tb.appendChild(rs[k]);}});})(j,hs[j]);}
var f=document.getElementById(tb.getAttribute('data-filter'));if(f){f.addEventListener('input',function(){
var q=f.value.toLowerCase(),rs=tb.querySelectorAll('tr.row');for(var k=0;k<rs.length;k++){
rs[k].style.display=rs[k].textContent.toLowerCase().indexOf(q)<0?'none':'';}});}})(ts[t]);}
});})();"""
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
_CSP = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{_SCRIPT_HASH}'"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d2330;margin:0;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:16px 24px 64px}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:19px;margin:32px 0 8px;border-bottom:2px solid #d8dce3;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}nav a{margin-right:14px}a{color:#2456b3}
.muted{color:#667085}.warn{color:#a4262c;font-weight:600}.ok{color:#1a7f37}
table{border-collapse:collapse;background:#fff;margin:6px 0}th,td{padding:4px 10px;border-bottom:1px solid #e4e7ec;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:inline-block;height:10px;background:#4c7bd9;vertical-align:middle;border-radius:2px}
.bar.rej{background:#e0795b}.bar.fail{background:#8a8f99}
.grid{display:flex;flex-wrap:wrap;gap:8px;margin:6px 0}
figure{margin:0;width:136px;background:#fff;border:1px solid #e4e7ec;border-radius:4px;padding:4px;font-size:11px}
figure img{display:block;max-width:128px;max-height:128px;min-width:4px;min-height:4px;margin:0 auto;outline:1px solid #d0d5dd}
figure .ph{width:128px;height:96px;display:flex;align-items:center;justify-content:center;background:#eef1f5;color:#667085;text-align:center}
figcaption{margin-top:3px;word-break:break-all;color:#475467}
.cluster{display:flex;gap:8px;align-items:flex-start;background:#fff;border:1px solid #e4e7ec;padding:6px;margin:6px 0;overflow-x:auto}
.cluster figure.survivor{border:2px solid #1a7f37}
.hists{display:flex;flex-wrap:wrap;gap:16px}svg{background:#fff;border:1px solid #e4e7ec}
pre{background:#fff;border:1px solid #e4e7ec;padding:8px;overflow:auto;max-height:420px;font-size:12px}
code.url{word-break:break-all;font-size:12px}
table.all th{cursor:pointer}input.filter{margin:4px 0;padding:3px 6px;width:320px}
details{margin:8px 0}summary{cursor:pointer;font-weight:600}
.pair{display:inline-flex;gap:6px;align-items:flex-start;background:#fff;border:1px solid #e4e7ec;padding:6px;margin:4px}
"""


def esc(value: Any) -> str:
    """Text from the data, made inert for both element content and quoted attributes."""
    return html.escape(str(value), quote=True)


# ---------------------------------------------------------------------------------------------------------
# reading OUT


def _tables(out: str, folder: str) -> list[str]:
    try:
        return parquet_files(out, folder, folder)
    except InputError:
        return []


def _rows(out: str, folder: str, columns: list[str]) -> Iterator[dict]:
    """Rows of every Parquet file of OUT/<folder>, only the given columns (those the files have), batch by
    batch so a large table is never held whole."""
    for url in _tables(out, folder):
        with fsspec.open(url, "rb") as fh:
            pf = pq.ParquetFile(fh)
            have = [c for c in columns if c in pf.schema_arrow.names]
            for batch in pf.iter_batches(batch_size=1024, columns=have):
                yield from batch.to_pylist()


def _rows_by_key(out: str, folder: str, keys: set[str], columns: list[str]) -> dict[str, dict]:
    """The rows of these keys, reading the (large) columns only of row groups that hold one."""
    found: dict[str, dict] = {}
    if not keys:
        return found
    for url in _tables(out, folder):
        with fsspec.open(url, "rb") as fh:
            pf = pq.ParquetFile(fh)
            have = [c for c in columns if c in pf.schema_arrow.names]
            for i in range(pf.num_row_groups):
                group_keys = pf.read_row_group(i, columns=["key"]).column("key").to_pylist()
                hits = [j for j, k in enumerate(group_keys) if k in keys]
                if hits:
                    for row in pf.read_row_group(i, columns=have).take(hits).to_pylist():
                        found.setdefault(row["key"], row)
    return found


def _fetched_bytes(out: str, keys: set[str]) -> dict[str, bytes]:
    """Original bytes of refs (by ref key) from the img2dataset tars of OUT/fetched: the images the decode
    stage refused have no other copy."""
    where: dict[str, dict[str, str]] = {}  # tar url -> sample key -> ref key
    for url in _tables(out, "fetched"):
        with fsspec.open(url, "rb") as fh:
            pf = pq.ParquetFile(fh)
            if not {"ref_key", "key"} <= set(pf.schema_arrow.names):
                continue
            for row in pf.read(columns=["ref_key", "key"]).to_pylist():
                if row["ref_key"] in keys:
                    where.setdefault(url[: -len(".parquet")] + ".tar", {})[row["key"]] = row["ref_key"]
    found: dict[str, bytes] = {}
    for tar_url, samples in where.items():
        try:
            for stem, members in tar_samples(tar_url):
                if stem in samples and (image := picture(members)):
                    found[samples[stem]] = image[1]
        except (FileNotFoundError, tarfile.TarError):
            continue  # a missing or broken tar costs its thumbnails only
    return found


def _first(items: Iterable[dict], n: int) -> list[dict]:
    """The n rows with the smallest keys: keys are hashes, so this is a stable, unbiased sample."""
    return sorted(items, key=lambda r: r["key"])[:n]


# ---------------------------------------------------------------------------------------------------------
# pieces of the page


class _Thumbs:
    """Thumbnails as data: URIs, with the page-wide cap."""

    def __init__(self) -> None:
        self.made = 0

    def uri(self, data: bytes | None) -> tuple[str | None, str]:
        if data is None:
            return None, "no bytes"
        if self.made >= MAX_THUMBS:
            return None, "page full"
        decoded = decode(data, _THUMB_CONFIG, analysis_side=THUMB_SIDE)
        if isinstance(decoded, Refusal):
            return None, f"no preview: {decoded.reason}"
        view = decoded.view.copy()
        view.thumbnail((THUMB_SIDE, THUMB_SIDE))
        buf = io.BytesIO()
        view.save(buf, "JPEG", quality=70, optimize=True)
        self.made += 1
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), ""


def _figure(thumbs: _Thumbs, data: bytes | None, caption: str, title: str, alt: str, cls: str = "") -> str:
    uri, why = thumbs.uri(data)
    picture = (f'<img src="{uri}" alt="{esc(alt[:TITLE_CHARS])}" loading="eager">' if uri
               else f'<div class="ph">{esc(why)}</div>')
    klass = f' class="{cls}"' if cls else ""
    return (f'<figure{klass} title="{esc(title[:TITLE_CHARS * 2])}">{picture}'
            f"<figcaption>{caption}</figcaption></figure>")


def _image_caption(key: str, image: dict | None, extra: str = "") -> str:
    parts = [f"<b>{esc(key[:10])}</b>"]
    if image:
        parts.append(esc(f"{image.get('width')}×{image.get('height')} {image.get('format') or ''}"))
    if extra:
        parts.append(extra)
    return "<br>".join(parts)


def _image_title(image: dict | None, row: dict) -> str:
    image = image or {}
    lines = [_clip(str(row.get("url") or image.get("url") or ""))]
    if image.get("alt"):
        lines.append(f"alt: {image['alt']}")
    if row.get("detail"):
        lines.append(str(row["detail"]))
    if row.get("text_text"):
        lines.append(f"text: {row['text_text']}")
    return "\n".join(line for line in lines if line)


def _grid(figures: list[str], empty: str) -> str:
    return f'<div class="grid">{"".join(figures)}</div>' if figures else f'<p class="muted">{esc(empty)}</p>'


def _funnel(stats: dict) -> str:
    rows = []
    for stage in _stage_order(stats):
        for unit, part in stats[stage].items():
            if not isinstance(part, dict) or "input" not in part:
                continue
            n_in, kept = int(part.get("input", 0)), int(part.get("kept", 0))
            rejected = sum(int(v) for v in (part.get("rejected") or {}).values())
            failed = int(part.get("failed", 0))
            scale = 260 / max(n_in, 1)
            bars = "".join(f'<span class="bar{c}" style="width:{max(round(v * scale), 1 if v else 0)}px"></span>'
                           for c, v in (("", kept), (" rej", rejected), (" fail", failed)))
            adds = n_in == kept + rejected + failed
            check = '<span class="ok">adds up</span>' if adds else '<span class="warn">does not add up</span>'
            rows.append(f"<tr><td>{esc(stage)}</td><td>{esc(unit)}</td><td class=n>{n_in}</td><td class=n>{kept}</td>"
                        f"<td class=n>{rejected}</td><td class=n>{failed}</td><td>{bars}</td><td>{check}</td></tr>")
    if not rows:
        return '<p class="muted">stats.json is missing: no stage has reported a funnel.</p>'
    return ("<table><tr><th>stage</th><th>unit</th><th>in</th><th>kept</th><th>rejected</th><th>failed</th>"
            '<th>kept <span class="bar" style="width:10px"></span> rejected <span class="bar rej" style="width:10px">'
            '</span> failed <span class="bar fail" style="width:10px"></span></th><th>check</th></tr>'
            + "".join(rows) + "</table>")


def _stage_order(stats: dict) -> list[str]:
    known = [s for s in R.STAGES if isinstance(stats.get(s), dict)]
    return known + sorted(s for s in stats if s not in R.STAGES and isinstance(stats[s], dict))


def _reason_counts(stats: dict) -> list[tuple[str, str, str, int]]:
    """(stage, kind, reason, count) for every rejection and failure reason in stats.json."""
    found = []
    for stage in _stage_order(stats):
        for part in stats[stage].values():
            if not isinstance(part, dict):
                continue
            for kind, field in (("rejected", "rejected"), ("failed", "failures")):
                for reason, count in sorted((part.get(field) or {}).items()):
                    if count:
                        found.append((stage, kind, reason, int(count)))
    return found


def _reasons_table(reasons: list[tuple[str, str, str, int]], rows_per_reason: Counter) -> str:
    if not reasons:
        return '<p class="muted">Nothing was rejected or failed.</p>'
    body = "".join(
        f'<tr><td>{esc(stage)}</td><td>{esc(kind)}</td><td><a href="#r-{esc(stage)}-{esc(reason)}">'
        f'<span class="reason">{esc(reason)}</span></a></td><td class=n>{count}</td>'
        f"<td class=n>{rows_per_reason.get((stage, reason), '')}</td></tr>"
        for stage, kind, reason, count in reasons)
    return ("<table><tr><th>stage</th><th></th><th>reason</th><th>count (stats.json)</th>"
            "<th>in rejects/ or failed/</th></tr>" + body + "</table>")


def _histogram(title: str, values: Iterable[float], bins: Sequence[float], fmt: Callable[[float], str],
               marks: Sequence[tuple[float, str]] = ()) -> str:
    """Inline SVG bar chart over fixed bins; the last bin is open-ended (>= its lower edge). `marks`: (value,
    label) thresholds, drawn as red lines where the value falls (within its bin, linearly)."""
    counts = [0] * len(bins)
    total = 0
    for v in values:
        total += 1
        i = next((j for j in range(len(bins) - 1) if v < bins[j + 1]), len(bins) - 1)
        counts[i] += 1
    width, height, pad = 420, 180, 28
    bar_w = (width - 2 * pad) / len(counts)
    peak = max(counts) or 1
    bars, labels = [], []
    for i, c in enumerate(counts):
        h = (height - 2 * pad) * c / peak
        x = pad + i * bar_w
        span = f"{fmt(bins[i])} to {fmt(bins[i + 1])}" if i + 1 < len(bins) else f"{fmt(bins[i])} and more"
        bars.append(f'<rect x="{x:.1f}" y="{height - pad - h:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                    f'fill="#4c7bd9"><title>{esc(span)}: {c}</title></rect>')
        if c:
            bars.append(f'<text x="{x + bar_w / 2:.1f}" y="{height - pad - h - 3:.1f}" font-size="10" '
                        f'text-anchor="middle">{c}</text>')
        if len(counts) <= 12 or i % 2 == 0:
            labels.append(f'<text x="{x:.1f}" y="{height - pad + 12}" font-size="9">{esc(fmt(bins[i]))}</text>')
    for value, label in marks:
        i = next((j for j in range(len(bins) - 1) if value < bins[j + 1]), len(bins) - 1)
        within = (value - bins[i]) / (bins[i + 1] - bins[i]) if i + 1 < len(bins) else 0.0
        x = pad + (i + within) * bar_w
        bars.append(f'<line class="threshold" x1="{x:.1f}" y1="{pad - 4}" x2="{x:.1f}" y2="{height - pad}" '
                    f'stroke="#d92d20" stroke-width="2"><title>{esc(label)}: {esc(fmt(value))}</title></line>'
                    f'<text x="{x + 3:.1f}" y="{pad + 4}" font-size="10" fill="#d92d20">{esc(label)} {esc(fmt(value))}</text>')
    return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
            f'<text x="{pad}" y="16" font-size="12" font-weight="600">{esc(title)} (n={total})</text>'
            f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#98a2b3"/>'
            + "".join(bars + labels) + "</svg>")


def _all_table(name: str, title: str, columns: list[str], rows: Iterable[list[Any]], count: int) -> str:
    """Every row (up to TABLE_CAP) in a table that sorts by any column (click its head) and filters as you type,
    folded under a summary line."""
    body = []
    for row in itertools.islice(rows, TABLE_CAP):
        cells = "".join(f"<td class=n>{v}</td>" if isinstance(v, int) else f"<td><code class=url>{esc(v)}</code></td>"
                        for v in row)
        body.append(f'<tr class="row">{cells}</tr>')
    more = (f'<p class="muted">The first {TABLE_CAP} of {count} rows; the Parquet tables under OUT hold every one.</p>'
            if count > TABLE_CAP else "")
    heads = "".join(f"<th>{esc(c)}</th>" for c in columns)
    return (f'<details class="all" id="all-{name}"><summary>{esc(title)}</summary>'
            f'<input class="filter" id="filter-{name}" placeholder="filter rows" aria-label="filter {esc(name)}">'
            f'<table class="all" data-filter="filter-{name}"><tr>{heads}</tr>{"".join(body)}</table>{more}</details>')


def _settings(out: str) -> dict[str, dict[str, Any]]:
    """The text and dedup settings of OUT/config.yaml (empty where it is missing or unreadable)."""
    try:
        config = yaml.safe_load(_read_text(join(out, "config.yaml")) or "") or {}
    except yaml.YAMLError:
        config = {}
    sections: dict[str, dict[str, Any]] = {}
    for section in ("text", "dedup"):
        found = config.get(section) if isinstance(config, dict) else None
        sections[section] = found if isinstance(found, dict) else {}
    return sections


def _inputs(manifests: dict[str, dict]) -> str:
    parts = []
    for stage, manifest in manifests.items():
        inputs = manifest.get("inputs")
        if isinstance(inputs, dict):
            items = [f"{k}: {v}" for k, v in inputs.items()]
        elif isinstance(inputs, list):
            items = [str(v) for v in inputs]
        else:
            continue
        more = f'<li class="muted">… and {len(items) - LIST_CAP} more</li>' if len(items) > LIST_CAP else ""
        parts.append(f"<h3>{esc(stage)}</h3><ul>"
                     + "".join(f'<li><code class="url">{esc(i)}</code></li>' for i in items[:LIST_CAP]) + more + "</ul>")
    return "".join(parts) or '<p class="muted">No stage manifest lists inputs.</p>'


def _read_text(url: str) -> str | None:
    try:
        with fsspec.open(url, "r", encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------------------
# the page


def write_report(out: str) -> str:
    """Write OUT/report.html from whatever stages have run; returns its URL. UserError if OUT holds no run."""
    out = out.rstrip("/")
    stats = read_json(join(out, "stats.json")) or {}
    manifests = {stage: m for stage, folder in STAGE_FOLDERS.items()
                 if isinstance(m := read_json(join(out, folder, MANIFEST)), dict)}
    if not stats and not manifests:
        raise InputError(f"no curate output in {out} (no stats.json, no stage manifest)")
    page = _Page(out, stats, manifests).render()
    url = join(out, "report.html")
    atomic_write(url, page.encode("utf-8"))
    return url


class _Page:
    def __init__(self, out: str, stats: dict, manifests: dict[str, dict]):
        self.out, self.stats, self.manifests = out, stats, manifests
        self.thumbs = _Thumbs()
        self.ran = [s for s in R.STAGES if s in stats or s in manifests or _tables(out, STAGE_FOLDERS[s])]
        self.text = {r["key"]: r for r in _rows(out, "text", ["key", "text_area_fraction", "text_words",
                                                               "text_chars", "text_lines", "text_page", "text_text",
                                                               "light", "heavy", "reason"])}
        self.settings = _settings(out)
        self.dedup = list(_rows(out, "dedup", ["key", "reason", "cluster", "cluster_size", "dup_of"]))

    def render(self) -> str:
        sections = [("funnel", "Funnel", self._funnel()), ("stages", "Stages: time, throughput, bytes", self._stages()),
                    ("sources", "Snapshots and hosts", self._sources()), ("reasons", "Reject reasons", self._reasons()),
                    ("kept", "Kept images", self._kept()), ("rejected", "Rejected images", self._rejected()),
                    ("clusters", "Duplicate clusters", self._clusters()), ("near", "Near misses", self._near()),
                    ("histograms", "Histograms", self._histograms()), ("config", "Config and inputs", self._config())]
        nav = "".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title, _ in sections)
        body = "".join(f'<section id="{sid}"><h2>{esc(title)}</h2>{content}</section>' for sid, title, content in sections)
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>curate report: {esc(self.out)}</title><style>{_CSS}</style>"
                f"<script>{_SCRIPT}</script></head><body><main>"
                f"<h1>curate report</h1><p class=\"muted\">{esc(self.out)}</p>{self._summary()}<nav>{nav}</nav>"
                f"{body}</main></body></html>\n")

    def _summary(self) -> str:
        missing = [s for s in R.STAGES if s not in self.ran]
        ran = ", ".join(esc(s) for s in self.ran) or "none"
        note = (f'<p>Not run yet: <span class="warn" id="not-run">{", ".join(esc(s) for s in missing)}</span>. '
                "Their sections show what earlier stages produced.</p>" if missing else "<p>Every stage has run.</p>")
        return f"<p>Stages run: <b>{ran}</b>.</p>{note}"

    def _stages(self) -> str:
        timings = read_json(join(self.out, "timings.json")) or {}
        rows = []
        for stage in self.ran:
            seconds = float((timings.get(stage) or {}).get("seconds") or 0)
            part = next((v for v in (self.stats.get(stage) or {}).values() if isinstance(v, dict) and "input" in v), {})
            n_in, kept = int(part.get("input", 0)), int(part.get("kept", 0))
            tables = (self.manifests.get(stage) or {}).get("tables") or {}
            written = sum(int(shard.get("bytes") or 0) for shards in tables.values() for shard in shards)
            files = sum(len(shards) for shards in tables.values())
            rate = f"{n_in / seconds:,.1f}" if seconds and n_in else ""
            mb_s = f"{written / seconds / 1e6:,.2f}" if seconds and written else ""
            rows.append(f"<tr><td>{esc(stage)}</td><td class=n>{f'{seconds:,.1f}' if seconds else ''}</td>"
                        f"<td class=n>{n_in}</td><td class=n>{kept}</td><td class=n>{rate}</td><td class=n>{files}</td>"
                        f"<td class=n data-v=\"{written}\">{written / 1e6:,.2f}</td><td class=n>{mb_s}</td></tr>")
        total = sum(float((timings.get(s) or {}).get("seconds") or 0) for s in self.ran)
        note = ('<p class="muted">Seconds: the stage\'s last run, from start to its checked manifest (timings.json; '
                "a stage skipped as up to date keeps the time of the run that made it). Throughput: records in per "
                "second. Written: the stage's files in its manifest.</p>")
        if not timings:
            note += '<p class="muted">timings.json is missing: these outputs predate it.</p>'
        return ("<table><tr><th>stage</th><th>seconds</th><th>in</th><th>kept</th><th>in / s</th><th>files</th>"
                "<th>MB written</th><th>MB / s</th></tr>" + "".join(rows)
                + f"<tr><td><b>total</b></td><td class=n><b>{total:,.1f}</b></td><td colspan=6></td></tr></table>"
                + note)

    def _sources(self) -> str:
        refs = list(_rows(self.out, "refs", ["key", "url", "snapshot"]))
        if not refs:
            return '<p class="muted">No references (extract has not run, or the inputs were pictures).</p>'
        final, where = self._final_kept()
        kept = {r["key"] for r in final}
        snapshots: Counter = Counter()
        snapshots_kept: Counter = Counter()
        hosts: Counter = Counter()
        hosts_kept: Counter = Counter()
        for r in refs:
            snapshot, host = r.get("snapshot") or "(none)", urlsplit(r.get("url") or "").hostname or "(none)"
            snapshots[snapshot] += 1
            hosts[host] += 1
            if r["key"] in kept:
                snapshots_kept[snapshot] += 1
                hosts_kept[host] += 1

        def table(title: str, counts: Counter, kept_counts: Counter, cap: int | None) -> str:
            chosen = sorted(counts, key=lambda k: (-counts[k], k))[:cap]
            body = "".join(f"<tr><td><code class=url>{esc(k)}</code></td><td class=n>{counts[k]}</td>"
                           f"<td class=n>{kept_counts[k]}</td><td class=n>{100 * kept_counts[k] / counts[k]:.0f}%</td></tr>"
                           for k in chosen)
            more = (f'<p class="muted">{len(counts)} in all; the {cap} with the most references shown.</p>'
                    if cap and len(counts) > cap else "")
            return (f"<h3>{esc(title)}</h3><table><tr><th>{esc(title[:-1] if title.endswith('s') else title)}</th>"
                    "<th>references</th><th>kept</th><th>kept %</th></tr>" + body + "</table>" + more)

        return (f'<p class="muted">Distinct image URLs (OUT/refs) and how many of them are kept in {esc(where)}.</p>'
                + table("snapshots", snapshots, snapshots_kept, None) + table("hosts", hosts, hosts_kept, HOSTS))

    def _funnel(self) -> str:
        return (_funnel(self.stats) + '<p class="muted">Each row: records into the stage, and what became of them. '
                "Rejected records carry a reason (next section); failed ones are dead letters in failed/.</p>")

    def _reasons(self) -> str:
        rows: Counter = Counter()
        for folder in ("rejects", "failed"):
            for r in _rows(self.out, folder, ["stage", "reason", "error", "occurrences"]):
                rows[(r.get("stage"), r.get("reason") or r.get("error"))] += int(r.get("occurrences") or 1)
        return _reasons_table(_reason_counts(self.stats), rows)

    def _final_kept(self) -> tuple[list[dict], str]:
        """Rows of the images that are kept so far, and from which stage's output that is."""
        shards = list(_rows(self.out, "shards", ["key", "url", "light", "heavy", "text_text", "text_chars"]))
        if shards:
            return shards, "final shards"
        if self.text:
            return [r for r in self.text.values() if r.get("reason") == R.KEPT], "text stage"
        if self.dedup:
            return [r for r in self.dedup if r["reason"] == R.KEPT], "dedup stage"
        return list(_rows(self.out, "images", ["key", "url"])), "decode stage"

    def _kept(self) -> str:
        kept, where = self._final_kept()
        if not kept:
            return '<p class="muted">No kept images yet (the decode stage has not run).</p>'
        scored = [dict(r, **self.text.get(r["key"], {})) for r in kept]
        if not self.text and not any("light" in r for r in scored):
            groups = [("kept (text not scored yet: the text stage has not run)", scored)]
        else:
            groups = [("with text (light)", [r for r in scored if r.get("light")]),
                      ("without text", [r for r in scored if r.get("light") is False])]
        html_parts = [f"<p>{len(kept)} images kept so far (from the {esc(where)}).</p>"]
        for title, rows in groups:
            if not rows:  # e.g. nothing without text once the light filter ran: no empty section
                continue
            sample = _first(rows, GRID_CAP)
            images = _rows_by_key(self.out, "images", {r["key"] for r in sample}, _IMAGE_COLUMNS)
            figures = [_figure(self.thumbs, images.get(r["key"], {}).get("data"),
                               _image_caption(r["key"], images.get(r["key"]), _text_note(r)),
                               _image_title(images.get(r["key"]), r), (images.get(r["key"]) or {}).get("alt") or "")
                       for r in sample]
            html_parts.append(f"<h3>{esc(title)}: {len(rows)}</h3>" + _grid(figures, "none"))
        return "".join(html_parts)

    def _rejected(self) -> str:
        by_reason: dict[tuple[str, str], list[dict]] = {}
        for r in _rows(self.out, "rejects", ["key", "url", "stage", "reason", "detail"]):
            by_reason.setdefault((r["stage"], r["reason"]), []).append(r)
        for r in _rows(self.out, "failed", ["key", "url", "stage", "error", "detail"]):
            by_reason.setdefault((r["stage"], r["error"]), []).append(r)
        samples = {k: _first(v, GRID_CAP) for k, v in by_reason.items()}
        wanted = {r["key"] for rows in samples.values() for r in rows}
        images = _rows_by_key(self.out, "images", wanted, _IMAGE_COLUMNS)
        originals = _fetched_bytes(self.out, {k for (stage, _), rows in samples.items() if stage == R.DECODE
                                              for k in (r["key"] for r in rows)})
        parts = []
        for stage, kind, reason, count in _reason_counts(self.stats):
            rows = samples.pop((stage, reason), [])
            parts.append(self._reason_block(stage, kind, reason, count, rows, images, originals))
        for (stage, reason), rows in sorted(samples.items()):  # rows whose reason stats.json does not list
            parts.append(self._reason_block(stage, "", reason, len(by_reason[(stage, reason)]), rows, images,
                                            originals))
        if not parts:
            return '<p class="muted">Nothing was rejected.</p>'
        every = [r for rows in by_reason.values() for r in rows]
        return "".join(parts) + _all_table(
            "rejects", f"Every reject and failure ({len(every)} rows of rejects/ and failed/)",
            ["stage", "reason", "key", "url", "detail"],
            ([r["stage"], r.get("reason") or r.get("error") or "", r["key"], _clip(r.get("url") or "", 200),
              str(r.get("detail") or "")[:200]] for r in sorted(every, key=lambda r: (r["stage"], r["key"]))),
            len(every))

    def _reason_block(self, stage: str, kind: str, reason: str, count: int, rows: list[dict], images: dict[str, dict],
                      originals: dict[str, bytes]) -> str:
        head = f'<h3 id="r-{esc(stage)}-{esc(reason)}">{esc(stage)}: <span class="reason">{esc(reason)}</span> ({count})</h3>'
        if not rows:
            where = "failed/" if kind == "failed" else "rejects/"
            return head + f'<p class="muted">counted in stats.json; no row in {where} carries this reason.</p>'
        has_bytes = [r for r in rows if r["key"] in images or r["key"] in originals]
        if has_bytes:
            figures = [_figure(self.thumbs, (images.get(r["key"]) or {}).get("data") or originals.get(r["key"]),
                               _image_caption(r["key"], images.get(r["key"]), esc(_short_keys(r.get("detail"))[:80])),
                               _image_title(images.get(r["key"]), r), (images.get(r["key"]) or {}).get("alt") or "")
                       for r in rows]
            return head + _grid(figures, "")
        items = "".join(f'<tr><td><code class="url">{esc(_clip(r.get("url") or ""))}</code></td>'
                        f'<td>{esc(str(r.get("detail") or "")[:TITLE_CHARS])}</td></tr>' for r in rows)
        return head + f"<table><tr><th>url (no image bytes)</th><th>detail</th></tr>{items}</table>"

    def _clusters(self) -> str:
        if not self.dedup:
            return '<p class="muted">The dedup stage has not run.</p>'
        sizes = {r["cluster"]: r["cluster_size"] for r in self.dedup if (r.get("cluster_size") or 0) > 1}
        by_cluster: dict[str, list[dict]] = {}
        for r in self.dedup:
            by_cluster.setdefault(r["cluster"], []).append(r)
        ordered = sorted(sizes, key=lambda c: (-sizes[c], c))
        chosen = ordered[:CLUSTERS]
        members = {c: _first(by_cluster[c], CLUSTER_CAP) for c in chosen}
        wanted = {r["key"] for rows in members.values() for r in rows} | set(chosen)
        images = _rows_by_key(self.out, "images", wanted, _IMAGE_COLUMNS)
        parts = [f"<p>{len(sizes)} clusters with more than one image; the largest {len(chosen)}, survivor first "
                 "(green border).</p>"]
        for c in chosen:
            rows = sorted(members[c], key=lambda r: (r["key"] != c, r["key"]))
            figures = [_figure(self.thumbs, (images.get(r["key"]) or {}).get("data"),
                               _image_caption(r["key"], images.get(r["key"]), esc(r["reason"])),
                               _image_title(images.get(r["key"]), r), (images.get(r["key"]) or {}).get("alt") or "",
                               "survivor" if r["key"] == c else "")
                       for r in rows]
            parts.append(f'<h3>cluster {esc(c[:10])}: {sizes[c]} images</h3><div class="cluster">{"".join(figures)}</div>')
        exact: Counter = Counter(r["cluster"] for r in self.dedup if r["reason"] == R.DUPLICATE)
        near: Counter = Counter(r["cluster"] for r in self.dedup if r["reason"] == R.NEAR_DUPLICATE)
        parts.append(_all_table("clusters", f"Every cluster ({len(sizes)})",
                                ["survivor", "images", "exact copies", "near copies", "members"],
                                ([c, sizes[c], exact[c], near[c],
                                  " ".join(sorted(r["key"][:10] for r in by_cluster[c] if r["key"] != c))]
                                 for c in ordered), len(sizes)))
        return "".join(parts)

    def _near(self) -> str:
        import numpy as np

        if not self.dedup:
            return '<p class="muted">The dedup stage has not run.</p>'
        radius = int(self.settings["dedup"].get("hamming_radius", DedupConfig.hamming_radius))
        survivors = {r["key"] for r in self.dedup if r["reason"] == R.KEPT}
        hashes = sorted((r["key"], int(r["phash"])) for r in _rows(self.out, "images", ["key", "phash"])
                        if r["key"] in survivors and r.get("phash") is not None)
        compared = hashes[:NEAR_CAP]
        values = np.array([h for _, h in compared], dtype=np.uint64)
        pairs: list[tuple[int, str, str]] = []
        for i in range(len(values) - 1):
            distances = np.bitwise_count(values[i] ^ values[i + 1:])
            for j in np.nonzero((distances > radius) & (distances <= radius + NEAR_MARGIN))[0]:
                pairs.append((int(distances[j]), compared[i][0], compared[i + 1 + int(j)][0]))
        pairs.sort()
        head = (f"<p>{len(pairs)} pairs of survivors whose perceptual hashes differ in {radius + 1} to "
                f"{radius + NEAR_MARGIN} bits (the dedup radius is {radius}: these stayed apart; a larger "
                "`dedup.hamming_radius` would merge them). Keypoint matching may still have joined a pair "
                "into one cluster; it is shown anyway.</p>")
        if len(hashes) > NEAR_CAP:
            head += (f'<p class="muted">Among the first {NEAR_CAP} of {len(hashes)} survivors by key (all pairs '
                     "among them).</p>")
        shown = pairs[:NEAR_SHOWN]
        images = _rows_by_key(self.out, "images", {k for _, a, b in shown for k in (a, b)}, _IMAGE_COLUMNS)
        blocks = []
        for distance, a, b in shown:
            figures = "".join(_figure(self.thumbs, (images.get(k) or {}).get("data"),
                                      _image_caption(k, images.get(k)), _image_title(images.get(k), {}),
                                      (images.get(k) or {}).get("alt") or "") for k in (a, b))
            blocks.append(f'<div class="pair" title="{distance} bits apart">{figures}'
                          f"<span><b>{distance}</b> bits</span></div>")
        table = _all_table("near", f"Every near miss ({len(pairs)})", ["bits", "first", "second"],
                           ([d, a, b] for d, a, b in pairs), len(pairs))
        return head + "".join(blocks) + (table if pairs else "")

    def _histograms(self) -> str:
        sides = list(_rows(self.out, "images", ["width", "height"]))
        charts = []
        text = {**TEXT_DEFAULTS, **self.settings["text"]}
        if self.text:
            values = list(self.text.values())
            charts.append(_histogram("text: readable characters", (int(r.get("text_chars") or 0) for r in values),
                                     CHAR_BINS, lambda v: f"{v:g}",
                                     [(text["light_min_chars"], "light"), (text["heavy_min_chars"], "heavy")]))
            charts.append(_histogram("text: extent (text-shaped lines, in line heights, read or not)",
                                     (float(r.get("text_extent") or 0) for r in values), EXTENT_BINS,
                                     lambda v: f"{v:g}", [(v, name) for v, name in
                                                          ((text["light_min_extent"], "light"),
                                                           (text["heavy_min_extent"], "heavy")) if math.isfinite(v)]))
            charts.append(_histogram("text: lines", (int(r.get("text_lines") or 0) for r in values),
                                     LINE_BINS, lambda v: f"{v:g}", [(text["heavy_min_lines"], "heavy")]))
            charts.append(_histogram("text: page (flat share of the text region)",
                                     (float(r.get("text_page") or 0) for r in values if r.get("text_chars")),
                                     AREA_BINS, lambda v: f"{v:.2f}", [(text["heavy_min_page"], "heavy")]))
            charts.append(_histogram("text area (fraction of the image)",
                                     (float(r.get("text_area_fraction") or 0) for r in self.text.values()),
                                     AREA_BINS, lambda v: f"{v:.2f}"))
            charts.append(_histogram("words (read, and estimated for lines not read)",
                                     (int(r.get("text_words") or 0) for r in self.text.values()),
                                     WORD_BINS, lambda v: f"{v:g}"))
        if sides:
            charts.append(_histogram("image width, px", (int(r["width"] or 0) for r in sides), SIDE_BINS, _px))
            charts.append(_histogram("image height, px", (int(r["height"] or 0) for r in sides), SIDE_BINS, _px))
        note = ('<p class="muted">Each bar counts values from its label up to the next one; the last bar is '
                "open-ended. Hover over a bar for its range. A red line marks a filter's threshold (at least that "
                f"much passes): {describe_rules(TextConfig(**text))} (the page histogram counts pictures with "
                "text).</p>")
        if not self.text:
            note += '<p class="muted">Text area and words: the text stage has not run.</p>'
        return note + (f'<div class="hists">{"".join(charts)}</div>' if charts else
                       '<p class="muted">No decoded images yet.</p>')

    def _config(self) -> str:
        config = _read_text(join(self.out, "config.yaml"))
        if config is not None:
            try:
                config = yaml.safe_dump(yaml.safe_load(config), sort_keys=False, allow_unicode=True)
            except yaml.YAMLError:
                pass  # shown as written
        shown = f"<pre>{esc(config)}</pre>" if config is not None else '<p class="muted">config.yaml is missing.</p>'
        return "<h3>config.yaml</h3>" + shown + "<h3>Inputs per stage</h3>" + _inputs(self.manifests)


_HEX_KEY = re.compile(r"\b[0-9a-f]{32}\b")
_IMAGE_COLUMNS = ["key", "url", "data", "width", "height", "format", "alt"]


def _text_note(row: dict) -> str:
    if "text_chars" not in row and "light" not in row:
        return ""
    flags = " ".join(f for f in ("light", "heavy") if row.get(f))
    note = esc(f"{row.get('text_chars') or 0} chars {flags}".strip())
    snippet = " ".join(str(row.get("text_text") or "").split())
    if snippet:
        note += f'<br><i>“{esc(snippet[:40])}{"…" if len(snippet) > 40 else ""}”</i>'
    return note


def _short_keys(text: Any) -> str:
    """Details name other images by their 32-hex key; the first 10 digits are enough to find them here."""
    return _HEX_KEY.sub(lambda m: m.group(0)[:10], str(text or ""))


def _clip(text: str, n: int = TITLE_CHARS) -> str:
    """A data: URI can be megabytes long: shown clipped."""
    return text if len(text) <= n else f"{text[:n]}… ({len(text)} chars)"


def _px(v: float) -> str:
    return f"{v / 1024:g}k" if v >= 1024 else f"{v:g}"


# ---------------------------------------------------------------------------------------------------------
# CLI


def report_command(args: argparse.Namespace) -> int:
    """`curate report OUT` (registered in curate.commands.cli, which imports this module only when it runs)."""
    fs, local = fsspec.core.url_to_fs(args.out)
    if fs.isfile(local):
        raise UserError(f"{args.out} is a file: name a run's output folder (the one holding stats.json)")
    try:
        path = write_report(args.out)
    except FileNotFoundError as e:
        raise UserError(f"cannot read {args.out}: {e}") from e
    print(path)
    return 0

