"""The sample crawl read back by independent readers: warcio, the standard library's HTML parser, Pillow.

None of these tests uses the generator's own data structures: they read the files it wrote and check
them against truth.parquet, so a generator bug shows up as a disagreement.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import time
import warnings
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageOps
from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from curate import reasons as R
from curate.config import Config
from curate.sample.build import build_sample_crawl
from curate.sample.images import HEAVY_KINDS
from curate.urls import normalize_url

SNAPSHOTS = ("CC-MAIN-2021-04", "CC-MAIN-2023-06")


def _truth(crawl: Path) -> list[dict]:
    return pq.read_table(crawl / "truth.parquet").to_pylist()


def _listing(crawl: Path, snapshot: str, kind: str) -> list[str]:
    return gzip.decompress((crawl / "crawl-data" / snapshot / f"{kind}.paths.gz").read_bytes()).decode().split()


class _Imgs(HTMLParser):
    """Collects <img> attributes, <base href> and <meta name=robots> like a browser would see them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.robots = ""
        self.imgs: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values: dict[str, str] = {}
        for k, v in attrs:
            values.setdefault(k, v or "")  # the first of repeated attributes wins, as in HTML5
        if tag == "base" and self.base is None and values.get("href"):
            self.base = values["href"]
        elif tag == "meta" and values.get("name", "").lower() == "robots":
            self.robots = values.get("content", "")
        elif tag == "img":
            self.imgs.append(values)

    handle_startendtag = handle_starttag


def _charset(content_type: str, body: bytes) -> str:
    for text in (content_type, body[:2048].decode("ascii", "replace")):
        found = re.search(r"charset=[\"']?([\w-]+)", text, re.I)
        if found:
            return found.group(1)
    return "utf-8"


def _largest(srcset: str) -> str:
    best, best_size = "", -1.0
    for candidate in srcset.split(","):
        parts = candidate.split()
        if not parts:
            continue
        size = float(parts[1][:-1]) if len(parts) > 1 else 1.0
        if size > best_size:
            best, best_size = parts[0], size
    return best


def _resolve(base: str, raw: str) -> str:
    joined = urljoin(base, raw.strip())
    if joined.split(":", 1)[0].lower() not in ("http", "https"):
        return raw.strip()
    try:
        return normalize_url(joined)
    except ValueError:
        return joined


def _page_urls(page_url: str, parsed: _Imgs) -> set[str]:
    base = urljoin(page_url, parsed.base) if parsed.base else page_url
    urls = set()
    for img in parsed.imgs:
        raws = [img.get("src", "")]
        raws += [img[a] for a in ("data-src", "data-lazy-src", "data-original") if img.get(a)]
        if img.get("srcset"):
            raws.append(_largest(img["srcset"]))
        urls |= {_resolve(base, raw) for raw in raws if raw.strip()}
    return urls


def _read_warc(path: Path) -> list[dict]:
    """Every record of a WARC file with its offset, type, target and whether its block is complete."""
    out = []
    with path.open("rb") as fh:
        records = ArchiveIterator(fh)
        for record in records:
            block = record.raw_stream.read()
            declared = int(record.rec_headers.get_header("Content-Length"))
            http_len = len(record.http_headers.to_bytes()) if record.http_headers else 0
            out.append({
                "offset": records.get_record_offset(),
                "type": record.rec_type,
                "uri": record.rec_headers.get_header("WARC-Target-URI") or "",
                "complete": http_len + len(block) >= declared,
                "http": record.http_headers,
                "body": block,
            })
    return out


def test_listings_name_existing_files_and_counts_match_records(sample_crawl: Path) -> None:
    records = pq.read_table(sample_crawl / "truth_records.parquet").to_pylist()
    listed = [p for snap in SNAPSHOTS for kind in ("warc", "wat") for p in _listing(sample_crawl, snap, kind)]
    assert len(listed) == len(set(listed)) >= 8
    assert all((sample_crawl / p).is_file() for p in listed)
    assert {r["file"] for r in records} == set(listed)
    assert all(re.fullmatch(r"crawl-data/CC-MAIN-\d{4}-\d{2}/segments/[\d.]+/(warc|wat)/CC-MAIN-\d{14}-\d{14}-\d{5}"
                            r"\.warc(\.wat)?\.gz", p) for p in listed)
    fates = {r["fate"] for r in records}
    assert fates == {"ok", "truncated_record", "not_warc"}


def test_every_warc_reads_cleanly_except_the_planted_broken_ones(sample_crawl: Path) -> None:
    expected = pq.read_table(sample_crawl / "truth_records.parquet").to_pylist()
    by_file: dict[str, list[dict]] = {}
    for row in expected:
        by_file.setdefault(row["file"], []).append(row)
    for rel, rows in by_file.items():
        path = sample_crawl / rel
        if rows[0]["fate"] == "not_warc":
            with pytest.raises(ArchiveLoadFailed), path.open("rb") as fh:
                list(ArchiveIterator(fh))
            continue
        read = _read_warc(path)
        assert [(r["offset"], r["type"], r["uri"]) for r in read] == [
            (r["offset"], r["warc_type"], r["target_uri"]) for r in rows], rel
        assert [not r["complete"] for r in read] == [r["fate"] == "truncated_record" for r in rows], rel
    truncated = [r for r in expected if r["fate"] == "truncated_record"]
    assert len(truncated) == 1 and truncated[0]["warc_type"] == "response" and truncated[0]["kind"] == "warc"


def test_warcinfo_first_and_nutch_record_order(sample_crawl: Path) -> None:
    path = sample_crawl / _listing(sample_crawl, SNAPSHOTS[0], "warc")[0]
    types = [r["type"] for r in _read_warc(path)]
    assert types[0] == "warcinfo"
    triples = [tuple(types[i : i + 3]) for i in range(1, len(types) - 2, 3)]
    assert set(triples) <= {("request", "response", "metadata"), ("request", "revisit", "metadata")}


def _responses(crawl: Path, content_type: str) -> list[tuple[str, dict]]:
    """(file, record) for every complete 200 response of a content type in the readable WARC files."""
    found = []
    for snap in SNAPSHOTS:
        for rel in _listing(crawl, snap, "warc"):
            try:
                read = _read_warc(crawl / rel)
            except ArchiveLoadFailed:
                continue
            found += [(rel, r) for r in read if r["type"] == "response" and r["complete"]
                      and r["http"].get_statuscode() == "200"
                      and (r["http"].get_header("Content-Type") or "").startswith(content_type)]
    return found


def _warc_pages(crawl: Path) -> dict[tuple[str, int], tuple[str, _Imgs, dict]]:
    """(file, offset) -> (page url, parsed HTML, HTTP headers) for every complete HTML response."""
    pages = {}
    for rel, r in _responses(crawl, "text/html"):
        parser = _Imgs()
        parser.feed(r["body"].decode(_charset(r["http"].get_header("Content-Type") or "", r["body"])))
        pages[(Path(rel).name, r["offset"])] = (r["uri"], parser, dict(r["http"].headers))
    return pages


def test_image_urls_in_warc_pages_match_truth(sample_crawl: Path) -> None:
    truth = _truth(sample_crawl)
    found: set[str] = set()
    for url, parsed, _ in _warc_pages(sample_crawl).values():
        found |= _page_urls(url, parsed)
    expected = {r["url"] for r in truth if r["in_warc"] and r["source"] != "inline"}
    assert found == expected
    assert 250 <= len(truth) <= 600  # "a few hundred image URLs" at the default scale


def test_inline_image_records_match_truth(sample_crawl: Path) -> None:
    truth = {r["url"]: r for r in _truth(sample_crawl) if r["source"] == "inline"}
    inline = {r["uri"]: r["body"] for _, r in _responses(sample_crawl, "image/")}
    assert set(inline) == set(truth) and len(inline) >= 3
    for url, body in inline.items():
        with Image.open(io.BytesIO(body)) as image:
            assert image.size == (truth[url]["width"], truth[url]["height"])


def test_page_optouts_are_where_truth_says(sample_crawl: Path) -> None:
    truth = {r["url"]: r for r in _truth(sample_crawl)}
    optout_urls: set[str] = set()
    other_urls: set[str] = set()
    for url, parsed, headers in _warc_pages(sample_crawl).values():
        directives = (parsed.robots + "," + headers.get("X-Robots-Tag", "")).lower()
        optout = bool({"noai", "noimageai"} & {d.strip() for d in directives.split(",")})
        (optout_urls if optout else other_urls).update(_page_urls(url, parsed))
    assert optout_urls and not optout_urls & other_urls
    assert {u for u, r in truth.items() if r["reason"] == R.PAGE_OPTOUT} == optout_urls


def test_wat_links_agree_with_warc_pages(sample_crawl: Path) -> None:
    pages = _warc_pages(sample_crawl)
    checked = 0
    cut_pages = 0
    for snap in SNAPSHOTS:
        for rel in _listing(sample_crawl, snap, "wat"):
            try:
                with (sample_crawl / rel).open("rb") as fh:
                    envelopes = [json.loads(r.content_stream().read()) for r in ArchiveIterator(fh)
                                 if r.rec_type == "metadata"]
            except ArchiveLoadFailed:
                continue
            for doc in envelopes:
                response = doc["Envelope"]["Payload-Metadata"].get("HTTP-Response-Metadata", {})
                if "HTML-Metadata" not in response:
                    continue
                key = (doc["Container"]["Filename"], int(doc["Container"]["Offset"]))
                links = [link for link in response["HTML-Metadata"]["Links"] if link["path"] == "IMG@/src"]
                if key not in pages:  # only the page cut short in the truncated WARC is missing
                    cut_pages += 1
                    continue
                _, parsed, _ = pages[key]
                assert [link["url"] for link in links] == [img.get("src", "") for img in parsed.imgs]
                assert [link.get("alt", "") for link in links] == [img.get("alt", "") for img in parsed.imgs]
                checked += 1
    assert checked == len(pages) and cut_pages == 1


def test_truth_covers_every_planted_case(sample_crawl: Path) -> None:
    truth = _truth(sample_crawl)
    fates = {r["fate"] for r in truth if r["fate"]}
    planted = {R.KEPT, R.DATA_URI, R.BAD_SCHEME, R.UNPARSEABLE_URL, R.PAGE_OPTOUT, R.ROBOTS_DISALLOW, R.HEADER_OPTOUT,
               R.TIMEOUT, R.TOO_LARGE, R.INCOMPLETE_BODY, R.NOT_AN_IMAGE, R.TOO_MANY_REDIRECTS, "http_404",
               "http_500", R.UNSUPPORTED_FORMAT, R.TOO_MANY_PIXELS, R.UNDECODABLE, R.TRUNCATED, R.TOO_SMALL,
               R.BAD_ASPECT_RATIO, R.DUPLICATE, R.NEAR_DUPLICATE}
    assert planted <= fates
    kept = [r for r in truth if r["fate"] == R.KEPT]
    kinds = {r["text_kind"] for r in kept}
    assert kinds == {"none", "document", "chart", "table", "sign", "screenshot"}
    with_text = sum(r["has_text"] for r in kept)
    assert 0.3 <= with_text / len(kept) <= 0.7  # about half, like the web
    assert all(r["heavy"] == (r["text_kind"] in HEAVY_KINDS) for r in kept)
    assert all(r["words"] for r in kept if r["has_text"])
    assert sum(1 for r in truth if r["lookalike_group"] is not None) >= 6
    multi_snapshot = [r for r in truth if len(r["snapshots"]) == 2]
    assert len(multi_snapshot) >= 20  # the snapshots overlap
    assert {r["source"] for r in truth} == {"http", "inline", "other"}
    only_wat = [r for r in truth if r["in_wat"] and not r["in_warc"]]
    only_warc = [r for r in truth if r["in_warc"] and not r["in_wat"]]
    assert only_wat and only_warc  # the cut page; srcset, lazy and inline images


def _decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_served_bytes_agree_with_truth(sample_crawl: Path, served_crawl) -> None:
    """Every downloadable image decodes (or fails) the way its truth row says, read from the real server."""
    import urllib.request

    config = Config().image
    rows = [r for r in _truth(sample_crawl) if r["source"] == "http" and r["fault"] in ("none", "redirect_chain")
            and r["stage"] not in (R.DOWNLOAD,) and r["reason"] != R.PAGE_OPTOUT]
    assert len(rows) >= 200
    for row in rows:
        with urllib.request.urlopen(row["url"], timeout=10) as response:
            data = response.read()
        reason = row["reason"]
        if reason == R.UNDECODABLE:
            with pytest.raises(Exception):  # noqa: B017 - any decoder error will do
                _decoded(data)
            continue
        if reason == R.TRUNCATED:
            assert data[:3] == b"\xff\xd8\xff" and not data.endswith(b"\xff\xd9")
            with pytest.raises(OSError):
                _decoded(data)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the planted bomb: header only
            image = Image.open(io.BytesIO(data))
        with image:
            assert image.format.lower() == {"tiff": "tiff", "bmp": "bmp"}.get(row["format"], row["format"])
            if reason == R.TOO_MANY_PIXELS:
                assert image.width * image.height > config.max_pixels
                continue
            size = ImageOps.exif_transpose(image).size if image.getexif().get(0x0112) else image.size
        assert size == (row["width"], row["height"]), row["url"]
        short, long_ = min(size), max(size)
        assert (reason == R.TOO_SMALL) == (short < config.min_side), row["url"]
        assert (reason == R.BAD_ASPECT_RATIO) == (long_ / short > config.max_aspect_ratio), row["url"]
        assert (reason == R.UNSUPPORTED_FORMAT) == (row["format"] not in config.formats), row["url"]


def test_duplicate_groups_hold_what_truth_says(sample_crawl: Path, served_crawl) -> None:
    import urllib.request

    groups: dict[int, list[dict]] = {}
    for row in _truth(sample_crawl):
        if row["dup_group"] is not None and row["in_warc"] and row["reason"] == R.KEPT:
            groups.setdefault(row["dup_group"], []).append(row)
    kinds = {rows[0]["dup_kind"] for rows in groups.values()}
    assert kinds == {"exact", "pixels", "near"}
    bodies = {}
    for rows in groups.values():
        for row in rows:
            if row["source"] == "inline":
                continue
            with urllib.request.urlopen(row["url"], timeout=10) as response:
                bodies[row["url"]] = response.read()
    for rows in groups.values():
        assert len(rows) >= 2
        survivors = [r for r in rows if r["fate"] == R.KEPT]
        assert len(survivors) == 1
        best = max(r["width"] * r["height"] for r in rows)
        assert survivors[0]["width"] * survivors[0]["height"] == best
        assert all(r["dup_of"] == survivors[0]["url"] for r in rows if r is not survivors[0])
        fetched = [bodies[r["url"]] for r in rows if r["url"] in bodies]
        if rows[0]["dup_kind"] == "exact":
            assert len({hashlib.sha256(b).digest() for b in fetched}) == 1
        elif rows[0]["dup_kind"] == "pixels":
            assert len(set(fetched)) == len(fetched)  # different bytes...
            assert len({_decoded(b).tobytes() for b in fetched}) == 1  # ...same pixels


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_other_bytes(sample_crawl: Path, crawl_port: int, tmp_path: Path) -> None:
    started = time.perf_counter()
    again = build_sample_crawl(tmp_path / "again", seed=0, scale=1, port=crawl_port)
    elapsed = time.perf_counter() - started

    def digests(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    first, second = digests(sample_crawl), digests(tmp_path / "again")
    assert first == second
    assert len(first) > 300
    other = build_sample_crawl(tmp_path / "other", seed=1, scale=1, port=crawl_port)
    third = digests(tmp_path / "other")
    assert third["truth.parquet"] != first["truth.parquet"]
    assert again["image_urls"] > 0 and other["image_urls"] > 0
    print(f"sample crawl build: {elapsed:.1f} s")
