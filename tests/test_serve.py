"""curate.sample.serve against real sockets on 127.0.0.1: files, faults, the access log, stopping, errors."""

from __future__ import annotations

import gzip
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import ProxyHandler, Request, build_opener

import pytest

from curate.sample.serve import BIND, PortMismatch, SampleServer, ServeError, free_port_block

REPO = Path(__file__).resolve().parents[1]
OPENER = build_opener(ProxyHandler({}))  # never through a proxy: 127.0.0.1 only
SECRET = b"TOP SECRET: outside every host root"
IMG_A = bytes.fromhex("ffd8ffe0") + bytes(range(256)) * 4
IMG_C = bytes(range(200)) * 5  # 1000 bytes
DRIP = b"abc"
LONG_DRIP = bytes(200)
HUGE = 64 * 1024 * 1024
SMALL_OVERSIZE = 300_000
N_HOSTS = 3


def make_crawl(root: Path, base: int) -> Path:
    """A tiny sample crawl in `root` on ports base..base+2: the crawl, photos and cdn hosts."""
    photos, cdn = root / "hosts" / "photos", root / "hosts" / "cdn"
    files = {
        root / "secret.txt": SECRET,
        root / "crawl" / "warc.paths.gz": gzip.compress(b"crawl/x.warc.gz\n", mtime=0),
        root / "crawl" / "x.warc.gz": gzip.compress(b"WARC/1.0\r\n", mtime=0),
        photos / "robots.txt": b"User-agent: *\nDisallow: /private/\n",
        photos / "a.jpg": IMG_A,
        photos / "café.jpg": IMG_C,
        photos / "sub" / "b.jpg": IMG_C,
        cdn / "img" / "a.jpg": IMG_A,
        cdn / "img" / "b.bin": DRIP,
        cdn / "img" / "long.bin": LONG_DRIP,
        cdn / "img" / "c.jpg": IMG_C,
        cdn / "img" / "d.jpg": IMG_A,
        cdn / "err.html": b"<html>not an image</html>",
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (photos / "link.txt").symlink_to(root / "secret.txt")
    hosts = {
        "bind": BIND,
        "base_port": base,
        "hosts": {
            "crawl": {"port": base, "root": "."},
            "photos": {"port": base + 1, "root": "hosts/photos"},
            "cdn": {"port": base + 2, "root": "hosts/cdn"},
        },
        "routes": {"photos": {"/r/3.jpg": {"redirect": "/a.jpg", "code": 307}}, "cdn": cdn_routes(base)},
    }
    (root / "hosts.json").write_text(json.dumps(hosts, indent=1))
    return root


def cdn_routes(base: int) -> dict[str, Any]:
    return {
        "/img/gone.jpg": {"status": 404},
        "/img/boom.jpg": {"status": 500},
        "/img/slow.jpg": {"delay": 0.5, "file": "img/a.jpg"},
        "/img/drip.jpg": {"trickle": {"interval": 0.5, "bytes": 1}, "file": "img/b.bin"},
        "/img/drip-long.jpg": {"trickle": {"interval": 0.1, "bytes": 1}, "file": "img/long.bin"},
        "/img/cut.jpg": {"truncate": 0.5, "file": "img/c.jpg"},
        "/img/fake.jpg": {"file": "err.html", "content_type": "image/jpeg"},
        "/img/noai.jpg": {"file": "img/d.jpg", "headers": {"X-Robots-Tag": "noai"}},
        "/r/1.jpg": {"redirect": "/r/2.jpg", "code": 301},
        "/r/2.jpg": {"redirect": f"http://{BIND}:{base + 1}/r/3.jpg", "code": 302},
        "/loop/a.jpg": {"redirect": "/loop/b.jpg", "code": 302},
        "/loop/b.jpg": {"redirect": "/loop/a.jpg", "code": 302},
        "/img/huge.jpg": {"oversize": HUGE},
        "/img/huge2.jpg": {"oversize": HUGE, "length": False},
        "/img/big.jpg": {"oversize": SMALL_OVERSIZE},
        "/img/big2.jpg": {"oversize": SMALL_OVERSIZE, "length": False},
    }


def free_base() -> int:
    # below Linux's ephemeral range (32768+), so client sockets cannot grab a port in between
    return free_port_block(N_HOSTS, start=20000, end=32000)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleServer]:
    root = make_crawl(tmp_path_factory.mktemp("crawl"), free_base())
    with SampleServer(root) as server:
        yield server


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[SampleServer]:
    """A server of its own, for tests that count requests or stop it."""
    server = SampleServer(make_crawl(tmp_path / "crawl", free_base()), access_log=tmp_path / "access.jsonl")
    with server:
        yield server


def fetch(url: str, method: str = "GET") -> tuple[int, http.client.HTTPMessage, bytes]:
    """Status, headers and body, for error statuses too."""
    try:
        with OPENER.open(Request(url, method=method), timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


def raw(
    server: SampleServer, host: str, target: str, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """One GET over a plain socket, the target sent byte for byte; read to EOF."""
    with socket.create_connection((BIND, server.hosts[host].port), timeout=timeout) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode("latin-1"))
        data = b"".join(iter(lambda: sock.recv(65536), b""))
    return parse(data)


def parse(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body


def record_for(server: SampleServer, path: str, timeout: float = 3.0) -> dict[str, Any]:
    """The access-log record of `path`, once its response has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in server.requests if r["path"] == path]
        if found:
            return found[-1]
        time.sleep(0.02)
    raise AssertionError(f"no access-log record for {path}")


def threads_of(server: SampleServer) -> list[str]:
    """Names of the live threads serving `server`'s ports."""
    ports = {f"-{host.port}" for host in server.hosts.values()}
    return [t.name for t in threading.enumerate() if any(p in t.name for p in ports)]


# ----------------------------------------------------------------------------------------- static files


def test_static_file_status_body_and_headers(sample: SampleServer) -> None:
    status, headers, body = fetch(sample.url("photos", "/a.jpg"))
    assert (status, body) == (200, IMG_A)
    assert headers["Content-Type"] == "image/jpeg"
    assert headers["Content-Length"] == str(len(IMG_A))
    assert headers["Server"] == "curate-sample"
    assert headers["Connection"] == "close"
    assert headers["Date"].endswith(" GMT")


@pytest.mark.parametrize(
    ("host", "path", "ctype"),
    [
        ("photos", "/robots.txt", "text/plain"),
        ("crawl", "/crawl/warc.paths.gz", "application/gzip"),
        ("crawl", "/crawl/x.warc.gz", "application/octet-stream"),
    ],
)
def test_content_type_from_the_extension(sample: SampleServer, host: str, path: str, ctype: str) -> None:
    status, headers, _ = fetch(sample.url(host, path))
    assert (status, headers["Content-Type"]) == (200, ctype)


def test_percent_encoded_path_and_query_string(sample: SampleServer) -> None:
    assert fetch(sample.url("photos", "/caf%C3%A9.jpg"))[::2] == (200, IMG_C)
    assert fetch(sample.url("photos", "/a.jpg?v=2#frag"))[::2] == (200, IMG_A)


@pytest.mark.parametrize("path", ["/nope.jpg", "/", "/sub", "/sub/", "/" + "x" * 5000 + ".jpg"])
def test_missing_files_and_directories_are_404(sample: SampleServer, path: str) -> None:
    status, headers, body = fetch(sample.url("photos", path))
    assert status == 404
    assert headers["Content-Type"] == "text/html"
    assert b"404" in body


@pytest.mark.parametrize(
    "target", ["/../../secret.txt", "/%2e%2e/%2E%2E/secret.txt", "/..%2F..%2Fsecret.txt", "/link.txt"]
)
def test_paths_out_of_the_root_are_refused(sample: SampleServer, target: str) -> None:
    status, _, body = raw(sample, "photos", target)
    assert status in (403, 404)
    assert SECRET not in body


def test_dots_that_stay_inside_the_root_are_fine(sample: SampleServer) -> None:
    assert raw(sample, "photos", "/sub/../a.jpg")[::2] == (200, IMG_A)


def test_head_sends_headers_only(sample: SampleServer) -> None:
    status, headers, body = fetch(sample.url("photos", "/a.jpg"), method="HEAD")
    assert (status, body, headers["Content-Length"]) == (200, b"", str(len(IMG_A)))


def test_other_methods_and_bad_requests_are_refused(sample: SampleServer) -> None:
    assert fetch(sample.url("photos", "/a.jpg"), method="POST")[0] == 501
    with socket.create_connection((BIND, sample.hosts["photos"].port), timeout=5) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert parse(b"".join(iter(lambda: sock.recv(65536), b"")))[0] == 400
    assert record_for(sample, "")["status"] == 400


# ------------------------------------------------------------------------------------------------ routes


def test_status_routes(sample: SampleServer) -> None:
    assert fetch(sample.url("cdn", "/img/gone.jpg"))[0] == 404
    status, headers, body = fetch(sample.url("cdn", "/img/boom.jpg"))
    assert (status, headers["Content-Type"]) == (500, "text/html")
    assert b"500 Internal Server Error" in body


def test_routes_match_the_decoded_path_too(sample: SampleServer) -> None:
    assert fetch(sample.url("cdn", "/img/b%6Fom.jpg?x=1"))[0] == 500


def test_file_with_content_type_override(sample: SampleServer) -> None:
    status, headers, body = fetch(sample.url("cdn", "/img/fake.jpg"))
    assert (status, headers["Content-Type"], body) == (200, "image/jpeg", b"<html>not an image</html>")


def test_extra_headers(sample: SampleServer) -> None:
    status, headers, body = fetch(sample.url("cdn", "/img/noai.jpg"))
    assert (status, headers["X-Robots-Tag"], body) == (200, "noai", IMG_A)


def test_delay(sample: SampleServer) -> None:
    began = time.monotonic()
    status, _, body = fetch(sample.url("cdn", "/img/slow.jpg"))
    elapsed = time.monotonic() - began
    assert (status, body) == (200, IMG_A)
    assert 0.5 <= elapsed < 1.5


def test_trickle_keeps_every_read_short_and_the_body_slow(sample: SampleServer) -> None:
    gaps, data = [], b""
    with socket.create_connection((BIND, sample.hosts["cdn"].port), timeout=2.0) as sock:
        began = last = time.monotonic()
        sock.sendall(b"GET /img/drip.jpg HTTP/1.1\r\nHost: x\r\n\r\n")
        while piece := sock.recv(65536):  # a 2 s per-read timeout never fires
            gaps.append(time.monotonic() - last)
            last = time.monotonic()
            data += piece
        total = last - began
    status, headers, body = parse(data)
    assert (status, headers["Content-Length"], body) == (200, str(len(DRIP)), DRIP)
    assert gaps[0] < 0.4  # status and headers come at once
    assert len(gaps) >= 1 + len(DRIP)  # then the body byte by byte
    assert total >= len(DRIP) * 0.5 - 0.05


def test_truncate_raises_incomplete_read(sample: SampleServer) -> None:
    with OPENER.open(sample.url("cdn", "/img/cut.jpg"), timeout=10) as resp:
        assert resp.headers["Content-Length"] == str(len(IMG_C))
        with pytest.raises(http.client.IncompleteRead) as caught:
            resp.read()
    assert caught.value.partial == IMG_C[: len(IMG_C) // 2]


def test_truncate_sends_exactly_the_fraction(sample: SampleServer) -> None:
    status, headers, body = raw(sample, "cdn", "/img/cut.jpg")
    assert (status, headers["Content-Length"], body) == (200, str(len(IMG_C)), IMG_C[:500])
    assert record_for(sample, "/img/cut.jpg")["complete"] is False


def test_redirect_chain_is_followed_across_hosts(sample: SampleServer) -> None:
    with OPENER.open(sample.url("cdn", "/r/1.jpg"), timeout=10) as resp:
        assert (resp.status, resp.url, resp.read()) == (200, sample.url("photos", "/a.jpg"), IMG_A)
    status, headers, _ = raw(sample, "cdn", "/r/1.jpg")
    assert (status, headers["Location"]) == (301, "/r/2.jpg")
    assert record_for(sample, "/r/3.jpg")["status"] == 307


def test_redirect_loop_hits_urllibs_limit(sample: SampleServer) -> None:
    with pytest.raises(HTTPError) as caught:
        OPENER.open(sample.url("cdn", "/loop/a.jpg"), timeout=10)
    with caught.value as error:
        assert error.code == 302
        assert "infinite loop" in str(error.reason)


@pytest.mark.parametrize(("path", "declared"), [("/img/huge.jpg", str(HUGE)), ("/img/huge2.jpg", None)])
def test_oversize_is_streamed_not_held(sample: SampleServer, path: str, declared: str | None) -> None:
    tracemalloc.start()
    try:
        with OPENER.open(sample.url("cdn", path), timeout=10) as resp:
            assert resp.headers["Content-Type"] == "image/jpeg"
            assert resp.headers["Content-Length"] == declared
            first = resp.read(3)
            read = len(first) + sum(len(resp.read(65536)) for _ in range(80))  # ~5 MB, then hang up
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert first == b"\xff\xd8\xff"
    assert read >= 5_000_000
    assert peak < 16 * 1024 * 1024  # server and client together, nowhere near the declared 64 MiB
    record = record_for(sample, path)
    assert (record["status"], record["complete"]) == (200, False)
    assert read <= record["bytes"] < HUGE


@pytest.mark.parametrize(("path", "declared"), [("/img/big.jpg", True), ("/img/big2.jpg", False)])
def test_oversize_body_has_exactly_its_size(sample: SampleServer, path: str, declared: bool) -> None:
    status, headers, body = raw(sample, "cdn", path)
    assert (status, "Content-Length" in headers, len(body)) == (200, declared, SMALL_OVERSIZE)
    assert body.startswith(bytes.fromhex("ffd8ffe000104a464946"))


# ------------------------------------------------------------------------------ access log and stopping


def test_access_log_in_memory_and_as_json_lines(fresh: SampleServer) -> None:
    fetch(fresh.url("photos", "/a.jpg"))
    fetch(fresh.url("photos", "/missing.jpg?q=1"), method="HEAD")
    boom = fetch(fresh.url("cdn", "/img/boom.jpg"))[2]
    records = fresh.wait_for_requests(3)
    fresh.stop()
    assert fresh.access_log is not None
    from_file = [json.loads(line) for line in fresh.access_log.read_text().splitlines()]
    assert from_file == records
    got = sorted((r["host"], r["method"], r["path"], r["status"], r["bytes"], r["complete"]) for r in records)
    assert got == [
        ("cdn", "GET", "/img/boom.jpg", 500, len(boom), True),
        ("photos", "GET", "/a.jpg", 200, len(IMG_A), True),
        ("photos", "HEAD", "/missing.jpg?q=1", 404, 0, True),
    ]
    assert all(r["start"] > 1e9 and 0 <= r["duration"] < 5 for r in records)


def test_client_leaving_a_trickle_frees_the_server(fresh: SampleServer) -> None:
    with socket.create_connection((BIND, fresh.hosts["cdn"].port), timeout=2.0) as sock:
        sock.sendall(b"GET /img/drip-long.jpg HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    record = record_for(fresh, "/img/drip-long.jpg")  # the handler noticed and ended by itself
    assert record["complete"] is False
    assert record["bytes"] < len(LONG_DRIP)
    began = time.monotonic()
    fresh.stop()
    assert time.monotonic() - began < 2.0
    assert not threads_of(fresh)


@pytest.mark.parametrize("path", ["/img/drip-long.jpg", "/img/huge2.jpg"])
def test_stop_is_prompt_mid_response(fresh: SampleServer, path: str) -> None:
    with socket.create_connection((BIND, fresh.hosts["cdn"].port), timeout=5.0) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        time.sleep(0.3)  # the oversize fills the socket buffers and blocks in send; the trickle waits
        began = time.monotonic()
        fresh.stop()
        assert time.monotonic() - began < 2.0
    assert not threads_of(fresh)
    assert record_for(fresh, path)["complete"] is False


def test_a_stopped_server_can_start_again(fresh: SampleServer) -> None:
    fresh.stop()
    fresh.start()
    assert fetch(fresh.url("photos", "/a.jpg"))[::2] == (200, IMG_A)


def test_serve_forever_prints_hosts_and_stops_on_sigterm(tmp_path: Path) -> None:
    root = make_crawl(tmp_path, free_base())
    code = "import sys; from curate.sample.serve import serve_forever; serve_forever(sys.argv[1])"
    with subprocess.Popen(
        [sys.executable, "-c", code, str(root)], cwd=REPO, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(N_HOSTS)]
        server = SampleServer(root)  # only for its urls; not started
        assert lines[2].split() == ["cdn", server.url("cdn"), "->", str((root / "hosts/cdn").resolve())]
        assert fetch(server.url("photos", "/a.jpg"))[::2] == (200, IMG_A)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0


# ---------------------------------------------------------------------------------------------- errors


def test_port_mismatch(sample: SampleServer) -> None:
    base = sample.config.base_port
    assert SampleServer(sample.root, port=base).config.base_port == base
    with pytest.raises(PortMismatch, match=f"built for base port {base}, not {base + 7}") as caught:
        SampleServer(sample.root, port=base + 7)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ServeError)
    assert "\n" not in str(caught.value)


def test_missing_or_invalid_hosts_json(tmp_path: Path) -> None:
    with pytest.raises(ServeError, match="hosts.json: not found"):
        SampleServer(tmp_path)
    (tmp_path / "hosts.json").write_text("{nope")
    with pytest.raises(ServeError, match="invalid JSON at line 1"):
        SampleServer(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bind": "0.0.0.0"}, "served on 127.0.0.1 only"),
        ({"routes": {"cdn": {"/x": {"delai": 1}}}}, "keys among"),
        ({"routes": {"cdn": {"/x": {"file": "img/none.jpg"}}}}, "is not a file inside"),
        ({"routes": {"cdn": {"/x": {"file": "../../secret.txt"}}}}, "is not a file inside"),
        ({"routes": {"cdn": {"/x": {"redirect": "/y", "code": 200}}}}, "code must be one of"),
        ({"routes": {"cdn": {"/x": {"trickle": {"interval": 0, "bytes": 1}}}}}, "interval must be > 0"),
        ({"routes": {"cdn": {"/x": {"truncate": 1.5, "file": "img/a.jpg"}}}}, "fraction"),
        ({"routes": {"nohost": {}}}, "keyed by host names"),
        ({"hosts": {"a": {"port": 99999, "root": "."}}, "routes": {}}, "port number"),
    ],
)
def test_bad_hosts_json_is_refused_with_one_line(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    make_crawl(tmp_path, 20000)
    config = json.loads((tmp_path / "hosts.json").read_text())
    (tmp_path / "hosts.json").write_text(json.dumps(config | change))
    with pytest.raises(ServeError, match=message) as caught:
        SampleServer(tmp_path)
    assert "\n" not in str(caught.value)


def test_a_taken_port_fails_start_and_frees_the_others(tmp_path: Path) -> None:
    base = free_base()
    server = SampleServer(make_crawl(tmp_path, base))
    with socket.socket() as squatter:
        squatter.bind((BIND, base + 2))
        squatter.listen()
        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{base + 2} for host 'cdn'"):
            server.start()
    assert free_port_block(N_HOSTS, start=base, end=base + N_HOSTS) == base


def test_free_port_block() -> None:
    base = free_port_block(4, start=20000, end=32000, seed=7)
    assert 20000 <= base <= 32000 - 4
    assert free_port_block(4, start=20000, end=32000, seed=7) == base
    for port in range(base, base + 4):
        with socket.socket() as sock:
            sock.bind((BIND, port))
    with pytest.raises(ValueError, match="no block of 5 ports"):
        free_port_block(5, start=100, end=103)
