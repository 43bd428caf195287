"""Write the sample crawl's WARC and WAT files with warcio, laid out and shaped like CommonCrawl's.

WARC: a warcinfo record, then per capture a request, a response and a metadata record (Nutch's order);
inline images are responses whose payload is the image; a revisit stands in for an unchanged page in
the later snapshot; a redirect and a 404 page appear as real crawls have them. Every record is its own
gzip member, so offsets are seekable. WAT: one JSON metadata record per WARC record, with the
`Envelope` -> `Payload-Metadata` -> `HTTP-Response-Metadata` -> `HTML-Metadata` -> `Links` structure
CommonCrawl writes (`IMG@/src` entries carry the raw attribute value, alt and title).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import uuid
from dataclasses import dataclass, field
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from curate.sample.pages import page_bytes
from curate.sample.plan import Img, Page, Plan, sub_seed


@dataclass
class Capture:
    """One thing a crawler fetched: a page, an inline image, a redirect or an error page."""

    url: str
    date: str
    status: int
    body: bytes
    headers: list[tuple[str, str]]
    page: Page | None = None
    image: Img | None = None
    revisit_of: str | None = None  # date of the earlier capture, for revisit records


@dataclass
class WrittenRecord:
    offset: int
    warc_type: str
    target_uri: str
    record_id: str
    capture: Capture | None = None
    http_headers: list[tuple[str, str]] = field(default_factory=list)


def _record_id(seed: int, *parts: str) -> str:
    return f"<urn:uuid:{uuid.UUID(int=sub_seed(seed, '|'.join(parts)) << 96 | sub_seed(seed, 'x' + '|'.join(parts)))}>"


def _http_date(iso: str) -> str:
    return format_datetime(dt.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC), usegmt=True)


def page_capture(plan: Plan, page: Page, snapshot: int) -> Capture:
    body = page_bytes(page, plan)
    date = page.dates[snapshot]
    ctype = f"text/html; charset={page.charset}" if page.charset_where == "http" else "text/html"
    headers = [("Date", _http_date(date)), ("Server", "nginx/1.18.0"), ("Content-Type", ctype),
               ("X-Crawler-Content-Encoding", "gzip"), ("Content-Length", str(len(body))),
               ("Cache-Control", "max-age=600"), ("Set-Cookie", f"sid={hashlib.sha1(page.url.encode()).hexdigest()[:16]}; Path=/; HttpOnly")]
    if page.optout == "header":
        headers.append(("X-Robots-Tag", "noimageai"))
    if snapshot == 1 and page.revisit:
        return Capture(page.url, date, 200, b"", headers[:3], page=page, revisit_of=page.dates[0])
    return Capture(page.url, date, 200, body, headers, page=page)


def image_capture(img: Img) -> Capture:
    data = img.data or b""
    mime = {"jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp"}.get(img.fmt or "", "application/octet-stream")
    headers = [("Date", _http_date(img.inline_date)), ("Server", "Apache"), ("Content-Type", mime),
               ("Content-Length", str(len(data))), ("Accept-Ranges", "bytes")]
    return Capture(img.url, img.inline_date, 200, data, headers, image=img)


def other_captures(plan: Plan, snapshot: int, date: str) -> list[Capture]:
    """A redirect and a 404 page: real crawls are full of them, and they carry no images."""
    base = plan.host_url("news")
    not_found = b"<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>"
    return [
        Capture(f"{base}/old-home-{snapshot}", date, 301, b"",
                [("Date", _http_date(date)), ("Location", f"{base}/"), ("Content-Length", "0")]),
        Capture(f"{base}/missing-page-{snapshot}.html", date, 404, not_found,
                [("Date", _http_date(date)), ("Content-Type", "text/html"), ("Content-Length", str(len(not_found)))]),
    ]


class CrawlFileWriter:
    """Writes one WARC file of captures and remembers every record's offset for the WAT and the truth."""

    def __init__(self, path: Path, plan: Plan, snapshot_id: str, warc_version: str):
        self.path, self.plan, self.snapshot_id = path, plan, snapshot_id
        self.fh = path.open("wb")
        self.writer = WARCWriter(self.fh, gzip=True, warc_version=warc_version)
        self.records: list[WrittenRecord] = []
        self.info_id = _record_id(plan.seed, path.name, "warcinfo")

    def _write(self, record: Any, capture: Capture | None) -> WrittenRecord:
        offset = self.fh.tell()
        self.writer.write_record(record)
        headers = record.rec_headers
        http = list(record.http_headers.headers) if record.http_headers else []
        written = WrittenRecord(offset, headers.get_header("WARC-Type"), headers.get_header("WARC-Target-URI") or "",
                                headers.get_header("WARC-Record-ID"), capture, http)
        self.records.append(written)
        return written

    def warcinfo(self, date: str) -> None:
        info = (f"isPartOf: {self.snapshot_id}\r\npublisher: curate sample crawl\r\n"
                "description: Synthetic crawl laid out like CommonCrawl for tests and demos\r\n"
                "software: Apache Nutch 1.19 (modified)\r\nformat: WARC File Format 1.1\r\n"
                "robots: checked via crawler-commons\r\n").encode()
        record = self.writer.create_warc_record(
            "", "warcinfo", payload=io.BytesIO(info), length=len(info),
            warc_content_type="application/warc-fields",
            warc_headers_dict={"WARC-Record-ID": self.info_id, "WARC-Date": date, "WARC-Filename": self.path.name})
        self._write(record, None)

    def capture(self, cap: Capture) -> None:
        rid = _record_id(self.plan.seed, self.path.name, cap.url, cap.date)
        req_id = _record_id(self.plan.seed, self.path.name, cap.url, cap.date, "request")
        common = {"WARC-Date": cap.date, "WARC-Warcinfo-ID": self.info_id, "WARC-IP-Address": "127.0.0.1"}
        host = cap.url.split("/")[2]
        path = "/" + cap.url.split("/", 3)[3] if cap.url.count("/") >= 3 else "/"
        request_headers = StatusAndHeaders(f"GET {path} HTTP/1.1", [
            ("User-Agent", "CCBot/2.0 (https://commoncrawl.org/faq/)"), ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
            ("Accept-Language", "en-US,en;q=0.5"), ("Accept-Encoding", "br,gzip"), ("Host", host), ("Connection", "Keep-Alive")],
            is_http_request=True)
        self._write(self.writer.create_warc_record(cap.url, "request", http_headers=request_headers,
                                                   warc_headers_dict={**common, "WARC-Record-ID": req_id}), None)
        reason = {200: "OK", 301: "Moved Permanently", 404: "Not Found"}[cap.status]
        http_headers = StatusAndHeaders(f"{cap.status} {reason}", list(cap.headers), protocol="HTTP/1.1")
        fields = {**common, "WARC-Record-ID": rid, "WARC-Concurrent-To": req_id}
        if cap.revisit_of:
            payload_digest = "sha1:" + hashlib.sha1(page_bytes(cap.page, self.plan)).hexdigest()  # type: ignore[arg-type]
            record = self.writer.create_revisit_record(cap.url, payload_digest, cap.url, cap.revisit_of,
                                                       http_headers=http_headers, warc_headers_dict=fields)
        else:
            record = self.writer.create_warc_record(cap.url, "response", payload=io.BytesIO(cap.body),
                                                    length=len(cap.body), http_headers=http_headers,
                                                    warc_headers_dict=fields)
            ctype = dict(cap.headers).get("Content-Type", "").split(";")[0]
            if ctype:
                record.rec_headers.add_header("WARC-Identified-Payload-Type", ctype)
        self._write(record, cap)
        meta = (f"fetchTimeMs: {sub_seed(self.plan.seed, rid) % 900 + 40}\r\n"
                + (f"charset-detected: {cap.page.charset.upper()}\r\n" if cap.page else "")
                + 'languages-cld2: {"reliable":true,"text-bytes":4096,"languages":[{"code":"en","code-iso-639-3":"eng","text-covered":0.97,"score":900.0,"name":"ENGLISH"}]}\r\n').encode()
        self._write(self.writer.create_warc_record(
            cap.url, "metadata", payload=io.BytesIO(meta), length=len(meta), warc_content_type="application/warc-fields",
            warc_headers_dict={**common, "WARC-Record-ID": _record_id(self.plan.seed, rid, "meta"),
                               "WARC-Concurrent-To": rid}), cap)

    def close(self) -> None:
        self.fh.close()


# ---------------------------------------------------------------------------------------------------------
# WAT


def _links(page: Page) -> list[dict[str, str]]:
    links: list[dict[str, str]] = [{"path": "A@/href", "url": "/privacy", "text": "Privacy"}]
    for tag in page.tags:
        for ref in tag.refs:
            if ref.attr != "src":
                continue
            link = {"path": "IMG@/src", "url": ref.raw}
            if tag.alt:
                link["alt"] = tag.alt
            if tag.title:
                link["title"] = tag.title
            links.append(link)
    return links


def _html_metadata(page: Page) -> dict[str, Any]:
    head: dict[str, Any] = {"Title": page.title, "Metas": [{"name": "viewport", "content": "width=device-width, initial-scale=1"}],
                            "Link": [{"path": "LINK@/href", "url": "/static/site.css", "rel": "stylesheet"}]}
    if page.robots_meta:
        head["Metas"].append({"name": "robots", "content": page.robots_meta})
    if page.base_href:
        head["Base"] = page.base_href
    return {"Head": head, "Links": _links(page)}


def wat_envelope(warc_name: str, rec: WrittenRecord) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "Format": "WARC",
        "WARC-Header-Metadata": {"WARC-Type": rec.warc_type, "WARC-Target-URI": rec.target_uri,
                                 "WARC-Record-ID": rec.record_id},
        "Payload-Metadata": {},
    }
    cap = rec.capture
    if rec.warc_type in ("response", "revisit") and cap is not None:
        envelope["WARC-Header-Metadata"]["WARC-Date"] = cap.date
        status = {200: "OK", 301: "Moved Permanently", 404: "Not Found"}[cap.status]
        response: dict[str, Any] = {
            "Response-Message": {"Version": "HTTP/1.1", "Status": str(cap.status), "Reason": status},
            "Headers": {k: v for k, v in rec.http_headers},
            "Entity-Length": str(len(cap.body)),
        }
        if cap.page is not None and rec.warc_type == "response":
            response["HTML-Metadata"] = _html_metadata(cap.page)
        envelope["Payload-Metadata"] = {"Actual-Content-Type": "application/http; msgtype=response",
                                        "HTTP-Response-Metadata": response}
    return {"Container": {"Filename": warc_name, "Compressed": True, "Offset": str(rec.offset)}, "Envelope": envelope}


def write_wat(path: Path, warc_name: str, records: list[WrittenRecord], plan: Plan, warc_version: str) -> list[WrittenRecord]:
    """One WAT file for one WARC file. Returns the WAT's own records (offsets) for the truth table."""
    written = []
    with path.open("wb") as fh:
        writer = WARCWriter(fh, gzip=True, warc_version=warc_version)
        first_date = next((r.capture.date for r in records if r.capture), "2021-01-15T00:00:00Z")
        info = f"isPartOf: WAT of {warc_name}\r\nsoftware: curate sample crawl\r\n".encode()
        wat_info_id = _record_id(plan.seed, path.name, "warcinfo")
        offset = fh.tell()
        writer.write_record(writer.create_warc_record(
            "", "warcinfo", payload=io.BytesIO(info), length=len(info), warc_content_type="application/warc-fields",
            warc_headers_dict={"WARC-Record-ID": wat_info_id, "WARC-Date": first_date, "WARC-Filename": path.name}))
        written.append(WrittenRecord(offset, "warcinfo", "", wat_info_id))
        for rec in records:
            body = json.dumps(wat_envelope(warc_name, rec), ensure_ascii=False, separators=(",", ":")).encode()
            rid = _record_id(plan.seed, path.name, rec.record_id)
            date = rec.capture.date if rec.capture else first_date
            target = rec.target_uri or warc_name
            record = writer.create_warc_record(
                target, "metadata", payload=io.BytesIO(body), length=len(body), warc_content_type="application/json",
                warc_headers_dict={"WARC-Record-ID": rid, "WARC-Date": date, "WARC-Refers-To": rec.record_id})
            offset = fh.tell()
            writer.write_record(record)
            written.append(WrittenRecord(offset, "metadata", target, rid, rec.capture))
    return written
