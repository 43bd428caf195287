"""The download client against the sample crawl's faults, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate import reasons as R
from curate.fetch import FetchPolicy, build_opener, classify
from curate.mime import sniff

POLICY = FetchPolicy(timeout=2.0, deadline=4.0, max_bytes=20 * 1024 * 1024, allow=("127.0.0.1",))


def _fetch(url: str, policy: FetchPolicy = POLICY) -> tuple[str, bytes]:
    """(reason, body) the way img2dataset calls urlopen: open, then read() all."""
    opener = build_opener(policy)
    try:
        with opener.open(url, timeout=policy.timeout) as response:
            return R.KEPT, response.read()
    except Exception as e:  # noqa: BLE001 - img2dataset keeps str(err); so do we
        return classify(str(e)), b""


def _rows(crawl: Path) -> list[dict]:
    return pq.read_table(crawl / "truth.parquet").to_pylist()


OPENER_FAULTS = {"http_404", "http_500", "slow", "trickle", "truncated_body", "html_as_jpeg", "jpeg_as_html",
                 "redirect_chain", "redirect_loop", "oversize", "oversize_no_length", "redirect_blocked"}


@pytest.mark.slow
def test_every_fault_ends_with_the_truths_reason(sample_crawl: Path, served_crawl) -> None:
    rows = [r for r in _rows(sample_crawl) if r["fault"] in OPENER_FAULTS]
    assert {r["fault"] for r in rows} == OPENER_FAULTS
    for row in rows:
        started = time.monotonic()
        reason, body = _fetch(row["url"])
        elapsed = time.monotonic() - started
        assert reason == row["reason"], (row["fault"], row["url"], reason)
        if reason == R.KEPT:
            assert sniff(body) is not None and len(body) > 1000
        if row["fault"] == "trickle":
            assert POLICY.deadline <= elapsed < POLICY.deadline + POLICY.timeout + 1
        if row["fault"] in ("oversize", "html_as_jpeg"):
            assert elapsed < 1.0  # refused on the headers / first bytes, not after reading the body


def test_plain_images_pass_and_bytes_match(sample_crawl: Path, served_crawl) -> None:
    rows = [r for r in _rows(sample_crawl) if r["fault"] == "none" and r["source"] == "http"
            and r["stage"] != R.EXTRACT][:20]
    for row in rows:
        reason, body = _fetch(row["url"])
        assert reason == R.KEPT and len(body) > 0


def test_the_guard_is_on_by_default(sample_crawl: Path, served_crawl) -> None:
    row = next(r for r in _rows(sample_crawl) if r["fault"] == "none" and r["source"] == "http")
    before = len(served_crawl.requests)
    reason, _ = _fetch(row["url"], FetchPolicy())
    assert reason == R.BLOCKED_ADDRESS
    time.sleep(0.2)
    assert not [r for r in served_crawl.requests[before:] if r["path"] in row["url"]]


def test_cap_applies_without_content_length(sample_crawl: Path, served_crawl) -> None:
    row = next(r for r in _rows(sample_crawl) if r["fault"] == "oversize_no_length")
    small = FetchPolicy(timeout=2, deadline=10, max_bytes=100_000, allow=("127.0.0.1",))
    assert _fetch(row["url"], small)[0] == R.TOO_LARGE


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (None, R.KEPT),
        ("HTTP Error 404: Not Found", "http_404"),
        ("HTTP Error 302: The HTTP server returned a redirect error that would lead to an infinite loop.", R.TOO_MANY_REDIRECTS),
        ("The read operation timed out", R.TIMEOUT),
        ("<urlopen error timed out>", R.TIMEOUT),
        ("IncompleteRead(1234 bytes read, 1234 more expected)", R.INCOMPLETE_BODY),
        ("Use of image disallowed by X-Robots-Tag directive", R.HEADER_OPTOUT),
        ("<urlopen error blocked address 10.0.0.1 for host x (private)>", R.BLOCKED_ADDRESS),
        ("curate:too_large: body exceeds 10 bytes", R.TOO_LARGE),
        ("<urlopen error [Errno 111] Connection refused>", R.CONNECTION_ERROR),
    ],
)
def test_classify(message: str | None, reason: str) -> None:
    assert classify(message) == reason


def test_sniff() -> None:
    assert sniff(b"\xff\xd8\xff\xe0" + b"\x00" * 12) == "image/jpeg"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff(b"<!DOCTYPE html>") is None and sniff(b"") is None


def test_redirect_to_a_blocked_address_never_connects(sample_crawl: Path, served_crawl) -> None:
    """The redirect points at 127.0.0.2 (loopback, not allowed): a listener there must see no connection."""
    import socket
    from urllib.parse import urlsplit

    row = next(r for r in _rows(sample_crawl) if r["fault"] == "redirect_blocked")
    route = served_crawl.hosts["cdn"].routes[urlsplit(row["url"]).path]
    target = urlsplit(route.redirect)
    with socket.socket() as listener:
        listener.bind((target.hostname, target.port))
        listener.listen()
        listener.settimeout(0.5)
        assert _fetch(row["url"])[0] == R.BLOCKED_ADDRESS
        with pytest.raises(TimeoutError):
            listener.accept()


def test_slow_host_past_the_deadline(sample_crawl: Path, served_crawl) -> None:
    """The 1.5 s delay passes the default policy; with a 1 s budget it is a timeout, ended in time."""
    row = next(r for r in _rows(sample_crawl) if r["fault"] == "slow")
    tight = FetchPolicy(timeout=1.0, deadline=1.0, allow=("127.0.0.1",))
    started = time.monotonic()
    assert _fetch(row["url"], tight)[0] == R.TIMEOUT
    assert time.monotonic() - started < 1.5


def test_robots_txt_is_asked_once_per_origin_by_many_threads() -> None:
    """img2dataset's fetch threads and the robots step share one cache: 8 threads asking for one origin at once
    make one request (a slow robots.txt used to be fetched by every thread that missed the cache)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from curate.fetch import RobotsCache

    asked = []

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            asked.append(self.path)
            time.sleep(0.3)
            body = b"User-agent: *\nDisallow: /private/\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin, cache = f"http://127.0.0.1:{server.server_port}", RobotsCache()
    try:
        rules: list = []
        threads = [threading.Thread(target=lambda: rules.append(cache.rules(origin, POLICY))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.shutdown()
        server.server_close()
    assert asked == ["/robots.txt"] and len(rules) == 8 and len({id(r) for r in rules}) == 1
    assert not rules[0].allowed(f"{origin}/private/a.jpg") and rules[0].allowed(f"{origin}/a.jpg")
