"""From crawl records to image references: the rules of the extract stage, without Beam.

A WARC `response` with HTML gives one reference per `<img>` URL candidate (see curate/html.py), resolved
against `<base href>` or the page URL and normalized; a `response` whose payload is an image is an
inline image (bytes kept, no download); a WAT `metadata` record gives its `IMG@/src` links. Every
reference leaves as an `ImageRef` or a `Rejected` (data_uri, bad_scheme, unparseable_url, page_optout).
Other records (requests, metadata, revisits, redirects, error pages, non-HTML bodies) carry no image
references and are only counted, by kind.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urljoin

from curate import reasons as R
from curate.filters.optout import page_opts_out
from curate.html import parse_page
from curate.mime import SNIFF_BYTES, sniff
from curate.records import ImageRef, Rejected
from curate.urls import normalize_url, url_key
from curate.warc import CrawlRecord

MAX_ALTS = 5  # distinct alt texts kept per URL
MAX_REJECT_URL = 512  # data: URIs can be megabytes; the key is computed from the whole URL

# Record kinds, counted per file (stats.json: extract.records).
PAGE = "html_page"
INLINE_IMAGE = "inline_image"
WAT_PAGE = "wat_page"
OTHER = "no_images"  # requests, metadata, revisits, warcinfo, redirects, error pages, non-HTML bodies

# Formats a captured response counts as an image in (icons, AVIF and HEIC captures are left to download).
_CAPTURED_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/bmp", "image/tiff", "image/webp"})


def _is_image(payload: bytes) -> bool:
    return sniff(payload[:SNIFF_BYTES]) in _CAPTURED_IMAGE_TYPES


def _is_html(record: CrawlRecord) -> bool:
    ctype = record.http_header("Content-Type").split(";")[0].strip().lower()
    if ctype in ("text/html", "application/xhtml+xml"):
        return True
    if ctype:
        return False
    return record.payload.lstrip()[:1] == b"<"  # no Content-Type: sniff


def _clean(raw: str) -> str:
    # The URL standard strips leading/trailing C0 controls and spaces and removes tabs and newlines anywhere.
    return raw.strip(" \t\n\r\f\x00").replace("\t", "").replace("\n", "").replace("\r", "")


def classify(base: str, raw: str) -> tuple[str, str | None]:
    """(URL, None) for a fetchable normalized http(s) URL, else (what was written, reject reason)."""
    raw = _clean(raw)
    if raw[:5].lower() == "data:":
        return raw, R.DATA_URI
    try:
        joined = urljoin(base, raw)
    except ValueError:
        return raw, R.UNPARSEABLE_URL
    scheme = joined.split(":", 1)[0].lower() if ":" in joined else ""
    if scheme not in ("http", "https"):
        return (joined if scheme else raw), R.BAD_SCHEME
    try:
        return normalize_url(joined), None
    except ValueError:
        return joined, R.UNPARSEABLE_URL


def source_name(file_url: str) -> str:
    """How provenance names a crawl file: from `crawl-data/` on when it has CommonCrawl's layout (the same on
    every mirror: https, s3, a local copy), else the URL as given."""
    at = file_url.find("crawl-data/")
    return file_url[at:] if at >= 0 else file_url


class Context:
    """Where a record came from: enough to fill every provenance field of its references."""

    def __init__(self, source_file: str, snapshot: str, agent: str):
        self.source_file, self.snapshot, self.agent = source_file, snapshot, agent


def _refs(ctx: Context, offset: int, date: str, page_url: str, base: str, optout: bool,
          candidates: list[tuple[str, str, str]], source: str) -> list[ImageRef | Rejected]:
    out: list[ImageRef | Rejected] = []
    for raw, alt, title in candidates:
        url, reason = classify(base, raw)
        if reason is None and optout:
            reason = R.PAGE_OPTOUT
        if reason is not None:
            out.append(Rejected(url_key(url), url[:MAX_REJECT_URL], R.EXTRACT, reason, page_url))
        else:
            out.append(ImageRef(url_key(url), url, alt, title, page_url, ctx.snapshot, ctx.source_file, offset,
                                date, source))
    return out


def _page_base(page_url: str, base_href: str | None) -> str:
    if not base_href:
        return page_url
    try:
        return urljoin(page_url, _clean(base_href))
    except ValueError:
        return page_url


def from_html(ctx: Context, record: CrawlRecord) -> list[ImageRef | Rejected]:
    page = parse_page(record.payload, record.http_header("Content-Type"))
    url = record.target_uri
    optout = page_opts_out(page.robots, record.http_header_values("X-Robots-Tag"), ctx.agent)
    candidates = [(img.raw, img.alt, img.title) for img in page.images]
    return _refs(ctx, record.offset, record.date, url, _page_base(url, page.base_href), optout, candidates, "html")


def from_wat(ctx: Context, record: CrawlRecord) -> list[ImageRef | Rejected] | None:
    """References of a WAT record describing an HTML page; None if it describes anything else.

    Provenance points at the WAT record itself (file and offset); its WARC-Date is the capture's.
    """
    envelope = json.loads(record.payload)["Envelope"]
    response = envelope.get("Payload-Metadata", {}).get("HTTP-Response-Metadata", {})
    html = response.get("HTML-Metadata")
    if not html:
        return None
    warc = envelope.get("WARC-Header-Metadata", {})
    page_url = warc.get("WARC-Target-URI") or record.target_uri
    head = html.get("Head", {})
    robots = [m.get("content", "").lower() for m in head.get("Metas", []) if m.get("name", "").lower() == "robots"]
    x_robots = [v for k, v in response.get("Headers", {}).items() if k.lower() == "x-robots-tag"]
    optout = page_opts_out(robots, x_robots, ctx.agent)
    candidates = [(link.get("url", ""), " ".join(link.get("alt", "").split()), " ".join(link.get("title", "").split()))
                  for link in html.get("Links", []) if link.get("path") == "IMG@/src"]
    base = _page_base(page_url, head.get("Base"))
    return _refs(ctx, record.offset, warc.get("WARC-Date") or record.date, page_url, base, optout, candidates, "wat")


LIST_ROW = "list_row"  # a row of a URL list: one reference


def from_list_row(ctx: Context, number: int, raw: str, caption: str) -> ImageRef | Rejected:
    """A URL list's row: its URL judged as a page's would be (absolute http(s) only), its caption as alt text;
    provenance names the list and the row number (as `record_offset`)."""
    url, reason = classify(raw, raw)
    if reason is not None:
        return Rejected(url_key(url or f"{ctx.source_file}#{number}"), url[:MAX_REJECT_URL], R.EXTRACT, reason,
                        f"{ctx.source_file}#{number}")
    return ImageRef(url_key(url), url, caption, "", "", ctx.snapshot, ctx.source_file, number, "", "list")


def extract_record(ctx: Context, record: CrawlRecord) -> tuple[str, list[ImageRef | Rejected]]:
    """The record's kind and the references it yields (possibly none)."""
    if record.warc_type == "response" and record.http_status is not None and 200 <= record.http_status < 300:
        if _is_html(record):
            return PAGE, from_html(ctx, record)
        if _is_image(record.payload):
            url, reason = classify(record.target_uri, record.target_uri)
            if reason is not None:
                return OTHER, []
            content = record.payload if not record.crawler_truncated else None  # cut by the crawler: download it
            return INLINE_IMAGE, [ImageRef(url_key(url), url, "", "", "", ctx.snapshot, ctx.source_file,
                                           record.offset, record.date, "inline", content)]
    if record.warc_type == "metadata" and record.content_type.split(";")[0].strip() == "application/json":
        refs = from_wat(ctx, record)
        return (OTHER, []) if refs is None else (WAT_PAGE, refs)
    return OTHER, []


def _order(ref: ImageRef) -> tuple:
    return (ref.crawl_date, ref.page_url, ref.source_file, ref.record_offset)


class RefMerge:
    """URL dedup: the earliest reference (crawl date, then page URL) represents the URL; occurrences are
    summed; up to MAX_ALTS distinct alt texts are kept, earliest first; inline bytes, if any reference
    carried them, ride along so the image is never downloaded. Commutative and associative, so the result
    does not depend on how a runner splits the work. A Beam CombineFn's four methods, without Beam
    (curate.pipelines.extract.MergeRefs)."""

    def create_accumulator(self) -> tuple[ImageRef | None, int, dict[str, tuple], bytes | None]:
        return None, 0, {}, None

    def add_input(self, acc: tuple, ref: ImageRef) -> tuple:
        alts = {ref.alt: _order(ref)} if ref.alt else {}
        content = (ref.content, _order(ref)) if ref.content is not None else None
        return self.merge_accumulators([acc, (ref, ref.occurrences, alts, content)])

    def merge_accumulators(self, accs: Iterable[tuple]) -> tuple:
        best, total, content = None, 0, None
        alts: dict[str, tuple] = {}
        for ref, n, more_alts, more_content in accs:
            total += n
            if ref is not None and (best is None or _order(ref) < _order(best)):
                best = ref
            for alt, order in more_alts.items():
                if alt not in alts or order < alts[alt]:
                    alts[alt] = order
            if more_content is not None and (content is None or more_content[1] < content[1]):
                content = more_content
        alts = dict(sorted(alts.items(), key=lambda kv: (kv[1], kv[0]))[:MAX_ALTS])
        return best, total, alts, content

    def extract_output(self, acc: tuple) -> ImageRef:
        best, total, alts, content = acc
        ordered = tuple(alt for alt, _ in sorted(alts.items(), key=lambda kv: (kv[1], kv[0])))
        return best._replace(occurrences=total, alts=ordered, alt=best.alt or (ordered[0] if ordered else ""),
                             content=content[0] if content else None)
