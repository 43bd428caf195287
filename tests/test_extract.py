"""Extract rules without Beam: URL classification, pages, WAT records, inline images, real WARCs."""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from curate import reasons as R
from curate.filters.extract import INLINE_IMAGE, OTHER, PAGE, WAT_PAGE, Context, classify, extract_record, source_name
from curate.records import ImageRef, Rejected
from curate.warc import iter_records

REAL = sorted((Path(__file__).resolve().parents[2] / "shared" / "real-data" / "warc").glob("*.warc*"))
PAGE_URL = "http://Example.com/a/b/page.html"


@pytest.mark.parametrize(
    ("raw", "url", "reason"),
    [
        ("img.jpg", "http://example.com/a/b/img.jpg", None),
        ("../x.jpg", "http://example.com/a/x.jpg", None),
        ("/x.jpg#top", "http://example.com/x.jpg", None),
        ("//cdn.example.com/x.jpg", "http://cdn.example.com/x.jpg", None),
        ("  HTTPS://CDN.Example.com:443/%7Ex.jpg\n", "https://cdn.example.com/~x.jpg", None),
        ("ima\nge.jpg", "http://example.com/a/b/image.jpg", None),  # newlines inside URLs are dropped
        ("data:image/gif;base64,R0lGOD", "data:image/gif;base64,R0lGOD", R.DATA_URI),
        ("javascript:void(0)", "javascript:void(0)", R.BAD_SCHEME),
        ("ftp://example.com/x.gif", "ftp://example.com/x.gif", R.BAD_SCHEME),
        ("blob:http://example.com/1234", "blob:http://example.com/1234", R.BAD_SCHEME),
        ("http://example.com:99999/x.jpg", "http://example.com:99999/x.jpg", R.UNPARSEABLE_URL),
        ("http://[::1/x.jpg", "http://[::1/x.jpg", R.UNPARSEABLE_URL),
    ],
)
def test_classify(raw: str, url: str, reason: str | None) -> None:
    assert classify(PAGE_URL, raw) == (url, reason)


def _records(records: list[tuple[str, str, bytes, list[tuple[str, str]], str]]) -> list:
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    for rtype, uri, body, headers, ctype in records:
        http = StatusAndHeaders("200 OK", headers, protocol="HTTP/1.1") if rtype == "response" else None
        writer.write_record(writer.create_warc_record(
            uri, rtype, payload=io.BytesIO(body), length=len(body), http_headers=http,
            warc_content_type=ctype, warc_headers_dict={"WARC-Date": "2021-01-15T10:00:00Z"}))
    return list(iter_records(io.BytesIO(buf.getvalue())))


CTX = Context("crawl-data/CC-MAIN-2021-04/segments/1/warc/f.warc.gz", "CC-MAIN-2021-04", "curate")


def test_html_page_refs_carry_provenance_and_optout() -> None:
    page = b'<base href="http://cdn.example.com/i/"><img src="a.jpg" alt=" An  alt "><img src="data:,x">'
    optout = b'<meta name="robots" content="noimageai"><img src="b.jpg">'
    records = _records([
        ("response", "http://example.com/p1", page, [("Content-Type", "text/html")], ""),
        ("response", "http://example.com/p2", optout, [("Content-Type", "text/html; charset=utf-8")], ""),
        ("response", "http://example.com/p3", b"<img src=c.jpg>", [("X-Robots-Tag", "noai"),
                                                                    ("Content-Type", "text/html")], ""),
    ])
    kind, items = extract_record(CTX, records[0])
    assert kind == PAGE
    ref, rejected = items
    assert isinstance(ref, ImageRef) and isinstance(rejected, Rejected)
    assert ref.url == "http://cdn.example.com/i/a.jpg" and ref.alt == "An alt" and ref.page_url == "http://example.com/p1"
    assert (ref.snapshot, ref.source_file, ref.record_offset) == (CTX.snapshot, CTX.source_file, records[0].offset)
    assert ref.crawl_date == "2021-01-15T10:00:00Z" and ref.source == "html" and ref.content is None
    assert rejected.reason == R.DATA_URI and rejected.detail == "http://example.com/p1"
    for record in records[1:]:
        kind, items = extract_record(CTX, record)
        assert kind == PAGE and [i.reason for i in items] == [R.PAGE_OPTOUT]


def test_inline_images_keep_their_bytes() -> None:
    gif = b"GIF89a" + b"\x00" * 40
    records = _records([
        ("response", "http://example.com/x.gif", gif, [("Content-Type", "image/gif")], ""),
        ("response", "http://example.com/doc.pdf", b"%PDF-1.4", [("Content-Type", "application/pdf")], ""),
        ("request", "http://example.com/x.gif", b"GET /x.gif HTTP/1.1\r\n\r\n", [], "application/http; msgtype=request"),
    ])
    kind, (ref,) = extract_record(CTX, records[0])
    assert kind == INLINE_IMAGE and ref.source == "inline" and ref.content == gif and ref.page_url == ""
    assert extract_record(CTX, records[1]) == (OTHER, [])
    assert extract_record(CTX, records[2]) == (OTHER, [])


def test_wat_links() -> None:
    envelope = {"Envelope": {
        "WARC-Header-Metadata": {"WARC-Type": "response", "WARC-Target-URI": "http://example.com/dir/p.html",
                                 "WARC-Date": "2021-01-16T00:00:00Z"},
        "Payload-Metadata": {"HTTP-Response-Metadata": {"Headers": {"Content-Type": "text/html"}, "HTML-Metadata": {
            "Head": {"Base": "/static/", "Metas": [{"name": "robots", "content": "index"}]},
            "Links": [{"path": "A@/href", "url": "/other"},
                      {"path": "IMG@/src", "url": "a.jpg", "alt": "first", "title": "t"},
                      {"path": "IMG@/src", "url": "javascript:x()"}]}}}}}
    records = _records([("metadata", "http://example.com/dir/p.html", json.dumps(envelope).encode(), [],
                         "application/json")])
    kind, (ref, rejected) = extract_record(CTX, records[0])
    assert kind == WAT_PAGE and ref.url == "http://example.com/static/a.jpg" and (ref.alt, ref.title) == ("first", "t")
    assert ref.crawl_date == "2021-01-16T00:00:00Z" and ref.source == "wat" and rejected.reason == R.BAD_SCHEME


def test_source_names_are_the_same_on_every_mirror() -> None:
    rel = "crawl-data/CC-MAIN-2021-04/segments/1/warc/f.warc.gz"
    for base in ("https://data.commoncrawl.org/", "s3://commoncrawl/", "/mnt/copy/", "http://127.0.0.1:8000/"):
        assert source_name(base + rel) == rel
    assert source_name("/data/my.warc.gz") == "/data/my.warc.gz"


class _ImgCount(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "img" and dict(attrs).get("src"):
            self.srcs.append(dict(attrs)["src"])


@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_real_warcs_every_img_src_is_accounted_for(path: Path) -> None:
    """Each 2xx HTML page: one reference (kept or rejected) per <img src>, per an independent parser."""
    pages = inline = 0
    with path.open("rb") as fh:
        for record in iter_records(fh):
            kind, items = extract_record(Context(str(path), "", "curate"), record)
            if kind == PAGE:
                pages += 1
                counter = _ImgCount()
                counter.feed(record.payload.decode("utf-8", "replace"))
                srcs = [i for i in items if isinstance(i, Rejected) or i.source == "html"]
                assert len(srcs) >= len(counter.srcs)
                resolved = {i.url for i in items}
                assert all(classify(record.target_uri, s)[0] in resolved for s in counter.srcs)
            inline += kind == INLINE_IMAGE
    expected = {"aut__issue-493.warc": (4, 5), "warcio__example.warc.gz": (1, 0),
                "webarchive-commons__IAH-urls-wget.warc.gz": (2, 3)}[path.name]
    assert (pages, inline) == expected
