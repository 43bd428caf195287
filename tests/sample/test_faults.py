"""Each planted server fault of the sample crawl, met over real HTTP on 127.0.0.1.

The rows come from truth.parquet, so every fault the generator plants is exercised; timings are checked
within generous bounds (they are behaviour, not performance).
"""

from __future__ import annotations

import http.client
import socket
import time
import urllib.error
import urllib.request
import urllib.robotparser
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest

from curate.config import Config


def _rows(crawl: Path, fault: str) -> list[dict]:
    rows = [r for r in pq.read_table(crawl / "truth.parquet").to_pylist() if r["fault"] == fault]
    assert rows, f"no {fault} planted"
    return rows


def _get(url: str, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_http_errors(sample_crawl: Path, served_crawl) -> None:
    for row in _rows(sample_crawl, "http_404"):
        assert _get(row["url"])[0] == 404
    for row in _rows(sample_crawl, "http_500"):
        assert _get(row["url"])[0] == 500


def test_slow_response_arrives_after_its_delay(sample_crawl: Path, served_crawl) -> None:
    row = _rows(sample_crawl, "slow")[0]
    started = time.monotonic()
    status, headers, body = _get(row["url"])
    elapsed = time.monotonic() - started
    assert status == 200 and body[:3] == b"\xff\xd8\xff"
    assert 1.5 <= elapsed < 3.0


def test_trickle_defeats_a_per_read_timeout(sample_crawl: Path, served_crawl) -> None:
    """One byte a second: a 2-second socket timeout never fires, yet the body would take hours."""
    row = _rows(sample_crawl, "trickle")[0]
    parts = urlsplit(row["url"])
    with socket.create_connection((parts.hostname, parts.port), timeout=2.0) as sock:
        sock.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        received = b""
        started = time.monotonic()
        while time.monotonic() - started < 3.5:
            received += sock.recv(65536)  # raises socket.timeout if the server ever pauses > 2 s
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0]
    assert 1 <= len(body) <= 5 and length > 1000


def test_truncated_body_is_shorter_than_declared(sample_crawl: Path, served_crawl) -> None:
    for row in _rows(sample_crawl, "truncated_body"):
        with pytest.raises(http.client.IncompleteRead) as info:
            _get(row["url"])
        assert 0 < len(info.value.partial) < info.value.expected + len(info.value.partial)


def test_content_type_lies_both_ways(sample_crawl: Path, served_crawl) -> None:
    for row in _rows(sample_crawl, "html_as_jpeg"):
        status, headers, body = _get(row["url"])
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        assert body.lstrip().lower().startswith(b"<!doctype html") or body.lstrip().startswith(b"<html")
    for row in _rows(sample_crawl, "jpeg_as_html"):
        status, headers, body = _get(row["url"])
        assert status == 200 and headers["Content-Type"].startswith("text/html") and body[:3] == b"\xff\xd8\xff"


def test_x_robots_tag_on_images(sample_crawl: Path, served_crawl) -> None:
    directives = set(Config().download.disallowed_header_directives)
    for row in _rows(sample_crawl, "x_robots_tag"):
        status, headers, body = _get(row["url"])
        assert status == 200 and body[:3] == b"\xff\xd8\xff"
        assert directives & {d.strip() for d in headers["X-Robots-Tag"].split(",")}


def test_robots_txt_disallows_for_our_agent(sample_crawl: Path, served_crawl) -> None:
    agent = Config().download.user_agent_token
    rows = _rows(sample_crawl, "robots_disallow") + _rows(sample_crawl, "robots_disallow_agent")
    for row in rows:
        parts = urlsplit(row["url"])
        robots = urllib.robotparser.RobotFileParser(f"{parts.scheme}://{parts.netloc}/robots.txt")
        robots.read()
        assert not robots.can_fetch(agent, row["url"])
        assert _get(row["url"])[0] == 200  # the server itself does not enforce robots.txt
    agent_only = _rows(sample_crawl, "robots_disallow_agent")[0]
    parts = urlsplit(agent_only["url"])
    robots = urllib.robotparser.RobotFileParser(f"{parts.scheme}://{parts.netloc}/robots.txt")
    robots.read()
    assert robots.can_fetch("SomeOtherBot", agent_only["url"])  # the rule is for our agent only


def test_redirect_chains_end_at_the_image_and_loops_do_not(sample_crawl: Path, served_crawl) -> None:
    for row in _rows(sample_crawl, "redirect_chain"):
        with urllib.request.urlopen(row["url"], timeout=10) as response:
            assert response.url != row["url"] and response.read()[:3] == b"\xff\xd8\xff"
        parts = urlsplit(row["url"])
        hops, url = 0, row["url"]
        while True:  # count the hops by hand
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
            conn.request("GET", urlsplit(url).path)
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status not in (301, 302, 303, 307, 308):
                break
            hops += 1
            url = urllib.request.urljoin(url, response.headers["Location"])
        assert hops == 3 and response.status == 200
    for row in _rows(sample_crawl, "redirect_loop"):
        with pytest.raises(urllib.error.HTTPError, match="infinite loop|redirect"):
            urllib.request.urlopen(row["url"], timeout=10)


def test_oversized_bodies_start_like_jpeg(sample_crawl: Path, served_crawl) -> None:
    cap = Config().download.max_bytes
    for fault, has_length in (("oversize", True), ("oversize_no_length", False)):
        for row in _rows(sample_crawl, fault):
            with urllib.request.urlopen(row["url"], timeout=10) as response:
                declared = response.headers.get("Content-Length")
                assert (declared is not None) == has_length
                if has_length:
                    assert int(declared) > cap
                prefix = response.read(cap + 1)
            assert prefix[:3] == b"\xff\xd8\xff" and len(prefix) == cap + 1


def test_crawl_files_are_served(sample_crawl: Path, served_crawl) -> None:
    listing = sample_crawl / "crawl-data" / "CC-MAIN-2021-04" / "warc.paths.gz"
    status, _, body = _get(served_crawl.url("crawl", "/crawl-data/CC-MAIN-2021-04/warc.paths.gz"))
    assert status == 200 and body == listing.read_bytes()
