"""robots.txt outages are a retryable state, not a verdict; an origin the SSRF guard refuses is named so;
`X-Robots-Tag: none` forbids what noindex forbids.

A server on 127.0.0.1 whose robots.txt answers 503 (an outage), then 200; an origin on 127.0.0.2, which the
guard refuses (only 127.0.0.1 is allowed). RFC 9309 reads an unreachable robots.txt as a full disallow *for
now*: the URLs are `robots_unreachable` and retryable, and `--retry-failed` fetches them once robots.txt is back.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curate import reasons as R
from curate.config import load_config
from curate.pipelines import download
from curate.tables import REF_SCHEMA
from curate.urls import url_key
from tests.conftest import parquet_rows

pytestmark = pytest.mark.slow


class _Site:
    def __init__(self) -> None:
        self.robots_status = 503
        buf = io.BytesIO()
        Image.new("RGB", (96, 64), (200, 30, 30)).save(buf, format="JPEG")
        self.jpeg = buf.getvalue()
        self.requests: list[str] = []


Respond = Callable[[str], tuple[int, dict[str, str], bytes]]  # path -> status, headers, body


def _serve(respond: Respond, log: list[str]) -> ThreadingHTTPServer:
    """A server on 127.0.0.1 answering GETs with `respond`; each request is logged as PORT/path."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            log.append(f"{self.server.server_address[1]}{self.path}")
            status, headers, body = respond(self.path)
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _stop(*servers: ThreadingHTTPServer) -> None:
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def site() -> Iterator[tuple[_Site, int]]:
    """robots.txt allows everything, with the status `state.robots_status`; /tagged/<d1_d2>.jpg answers with
    `X-Robots-Tag: d1, d2`; any other path is a JPEG."""
    state = _Site()

    def respond(path: str) -> tuple[int, dict[str, str], bytes]:
        state.requests.append(path)
        if path == "/robots.txt":
            return state.robots_status, {"Content-Type": "text/plain"}, b"User-agent: *\nAllow: /\n"
        headers = {"Content-Type": "image/jpeg"}
        if path.startswith("/tagged/"):
            headers["X-Robots-Tag"] = path[len("/tagged/"):-len(".jpg")].replace("_", ", ")
        return 200, headers, state.jpeg

    server = _serve(respond, [])
    try:
        yield state, server.server_address[1]
    finally:
        _stop(server)


def _refs(out: Path, urls: list[str]) -> None:
    rows = [{"key": url_key(u), "url": u, "alt": "", "title": "", "page_url": "", "snapshot": "", "source_file": "",
             "record_offset": 0, "crawl_date": "", "source": "html", "content": None, "occurrences": 1, "alts": []}
            for u in urls]
    (out / "refs").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=REF_SCHEMA), out / "refs" / "refs-00000-of-00001.parquet")


def test_an_outage_is_retryable_and_a_blocked_origin_is_named(site: tuple[_Site, int], tmp_path: Path) -> None:
    state, port = site
    ours = [f"http://127.0.0.1:{port}/img/{i}.jpg" for i in range(3)]
    blocked = f"http://127.0.0.2:{port}/img/x.jpg"
    out = tmp_path / "out"
    _refs(out, [*ours, blocked])
    config = load_config(None, {"download.allow_private_hosts": "127.0.0.1", "download.timeout": 2,
                                "download.deadline": 3})

    manifest = download.run(str(out), config)
    ledger = {r["url"]: r for r in parquet_rows(out / "ledger")}
    assert {u: (ledger[u]["reason"], ledger[u]["retryable"]) for u in ours} == {
        u: (R.ROBOTS_UNREACHABLE, True) for u in ours}
    assert "HTTP 503" in ledger[ours[0]]["detail"]
    assert (ledger[blocked]["reason"], ledger[blocked]["retryable"]) == (R.BLOCKED_ADDRESS, False)
    assert manifest["funnel"]["references"]["rejected"] == {R.ROBOTS_UNREACHABLE: 3, R.BLOCKED_ADDRESS: 1}
    assert not [p for p in state.requests if p != "/robots.txt"]  # nothing fetched while robots.txt is down

    assert download.run(str(out), config)["skipped"] is True  # a plain rerun keeps the record ...
    state.robots_status = 200  # ... and once the site is back, --retry-failed fetches exactly the outage's URLs
    retried = download.run(str(out), config, retry_failed=True)
    assert retried["retried"] == 3
    after = {r["url"]: r["reason"] for r in parquet_rows(out / "ledger")}
    assert after == {**{u: R.KEPT for u in ours}, blocked: R.BLOCKED_ADDRESS}
    assert sorted(p for p in state.requests if p != "/robots.txt") == [f"/img/{i}.jpg" for i in range(3)]
    assert retried["funnel"]["references"] == {"input": 4, "kept": 3, "rejected": {R.BLOCKED_ADDRESS: 1}, "failed": 0}


def test_x_robots_tag_none_means_noindex_nofollow(site: tuple[_Site, int], tmp_path: Path) -> None:
    state, port = site
    state.robots_status = 200
    tagged = {d: f"http://127.0.0.1:{port}/tagged/{d}.jpg" for d in ("none", "noindex", "nofollow", "noarchive")}
    out = tmp_path / "out"
    _refs(out, list(tagged.values()))
    config = load_config(None, {"download.allow_private_hosts": "127.0.0.1"})
    download.run(str(out), config)
    ledger = {r["url"]: r["reason"] for r in parquet_rows(out / "ledger")}
    assert {d: ledger[u] for d, u in tagged.items()} == {
        "none": R.HEADER_OPTOUT, "noindex": R.HEADER_OPTOUT, "nofollow": R.KEPT, "noarchive": R.KEPT}


def _site(robots: bytes, redirects: dict[str, str], jpeg: bytes) -> Respond:
    def respond(path: str) -> tuple[int, dict[str, str], bytes]:
        if path in redirects:
            return 302, {"Location": redirects[path]}, b""
        if path == "/robots.txt":
            return 200, {"Content-Type": "text/plain"}, robots
        return 200, {"Content-Type": "image/jpeg"}, jpeg
    return respond


def test_robots_txt_is_checked_at_every_redirect(tmp_path: Path) -> None:
    """An allowed URL redirecting into a disallowed path, or to another origin whose robots.txt disallows us,
    is refused before the redirect is followed (the README's promise: disallowed URLs are never requested)."""
    jpeg, log = _Site().jpeg, []
    other = _serve(_site(b"User-agent: *\nDisallow: /\n", {}, jpeg), log)
    port2 = other.server_address[1]
    redirects = {"/in.jpg": "/private/x.jpg", "/out.jpg": f"http://127.0.0.1:{port2}/y.jpg", "/fine.jpg": "/ok.jpg"}
    main = _serve(_site(b"User-agent: *\nDisallow: /private/\n", redirects, jpeg), log)
    port = main.server_address[1]
    try:
        urls = {name: f"http://127.0.0.1:{port}/{name}.jpg" for name in ("in", "out", "fine")}
        out = tmp_path / "out"
        _refs(out, list(urls.values()))
        download.run(str(out), load_config(None, {"download.allow_private_hosts": "127.0.0.1"}))
        ledger = {r["url"]: r for r in parquet_rows(out / "ledger")}
        assert {n: ledger[u]["reason"] for n, u in urls.items()} == {
            "in": R.ROBOTS_DISALLOW, "out": R.ROBOTS_DISALLOW, "fine": R.KEPT}
        assert "redirect to" in ledger[urls["in"]]["detail"]
        assert f"{port}/private/x.jpg" not in log and f"{port2}/y.jpg" not in log  # never requested
        assert log.count(f"{port}/robots.txt") == 1 and log.count(f"{port2}/robots.txt") == 1
    finally:
        _stop(main, other)


def test_the_retry_key_set_is_read_by_the_job_not_carried_in_its_graph(tmp_path: Path) -> None:
    """`--retry-failed` over a ledger of 20 retryable rows and one of 20,000 builds job graphs of the same size:
    the keys are read from the ledger files by the workers and joined with the refs there."""
    import apache_beam as beam

    from curate.tables import LEDGER_SCHEMA

    sizes = []
    for folder, n in (("a", 20), ("b", 20_000)):
        ledger = tmp_path / folder / "download-00000-of-00001.parquet"
        ledger.parent.mkdir()
        rows = [{"key": url_key(f"http://h.example/{i}.jpg"), "url": f"http://h.example/{i}.jpg",
                 "reason": R.TIMEOUT, "detail": "", "retryable": True, "shard": "", "sample_key": ""} for i in range(n)]
        pq.write_table(pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA), ledger)
        p = beam.Pipeline()
        download.build(p, [str(tmp_path / "refs.parquet")], str(tmp_path / "out"), load_config(), first_shard=1,
                       old_ledger=[str(ledger)])
        sizes.append(len(p.to_runner_api().SerializeToString()))
    assert sizes[0] > 10_000 and abs(sizes[1] - sizes[0]) < 1_000  # 20,000 keys would add ~700 kB
