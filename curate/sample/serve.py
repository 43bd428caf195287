"""Serve a sample crawl over real HTTP on 127.0.0.1: one port per fake host, faults on demand.

The sample crawl lays out a fake CommonCrawl and several fake image hosts in a directory DIR and describes
them in DIR/hosts.json. This module serves every host on its own port of 127.0.0.1 (robots.txt is per
origin, so hosts differ by port) so that the download stage and its guards meet real sockets and real
faults: robots.txt, X-Robots-Tag, slow and trickling bodies, short bodies, redirect chains and loops,
bodies larger than any cap, HTML dressed up as JPEG.

hosts.json (written by the generator, only read here)::

    {"bind": "127.0.0.1", "base_port": 18700,
     "hosts": {"crawl": {"port": 18700, "root": "."}, "cdn": {"port": 18702, "root": "hosts/cdn"}},
     "routes": {"cdn": {"/img/gone.jpg": {"status": 404}, "/r/1.jpg": {"redirect": "/r/2.jpg", "code": 301}}}}

Pages embed absolute URLs, so a crawl is served on the ports it was built for and no other (`PortMismatch`).
Host roots are relative to DIR. Everything is checked when hosts.json is read: unknown route keys, bad
values or combinations, and route files that do not exist are a `ServeError`, not a surprise at request time.

Each request, per host:

- The path is taken without its query string and fragment. A route is looked up by the raw path first,
  then by the percent-decoded path. Without a route, ROOT/<decoded path> is served: 200, Content-Type
  from the extension (Python's built-in table, never the system's mime.types, so every machine
  answers alike; `.warc.gz`, `.wat.gz`, `.wet.gz` are application/octet-stream, other `.gz`
  application/gzip), Content-Length. Missing files, directories and `/` answer 404 (no listings). A path
  that resolves outside the host root (`..`, encoded `..`, a symlink out) answers 403 and is never read.
- GET and HEAD only (anything else: 501). HEAD sends the headers GET would send, without a body.
- Route keys:

  ``status N``            answer N (200..599) with a small HTML body, or with `file`'s bytes when given.
  ``file F``              serve F (relative to the host root) instead of the path's file.
  ``content_type T``      override the Content-Type (default: from F's extension; image/jpeg for oversize).
  ``headers {K: V}``      add these headers.
  ``delay S``             wait S seconds before sending anything, then answer as usual.
  ``trickle {"interval": S, "bytes": B}``  send status and headers (full Content-Length) at once, then B
                          body bytes every S seconds (the first after S seconds) until the body is done or
                          the client leaves.
  ``truncate F``          declare the full Content-Length, send int(F * size) body bytes, close.
  ``redirect U``, ``code C``  (301, 302, 303, 307, 308; default 302) Location: U exactly as given.
  ``oversize N``, ``length false``  N body bytes made on the fly 64 KiB at a time, never held whole nor
                          written to disk: a JPEG SOI + APP0 (JFIF) header, then zeros. With Content-Length,
                          or with `"length": false` without one, the end marked by closing the connection.

  `redirect` excludes `file`, `oversize` and `status`; `file` and `oversize` exclude each other, and so do
  `trickle` and `truncate`. `delay`, `headers`, `trickle` and `truncate` combine with any body (file,
  generated, or the small HTML page of a status or redirect). A route wins over a file at the same path.

- Every response carries Server: curate-sample, Date and Connection: close (one response per connection).
- Every request is recorded (host, method, path as requested, status, body bytes actually sent, whether
  the whole body went out, start time, duration) in memory, and appended as a JSON line to the access log
  file when one is given. A record is written when its response ends: `wait_for_requests` waits for them.
- `stop()` returns promptly even mid-trickle or mid-oversize: loops watch a stop event, open connections
  are shut down, handler threads are joined.

What it does not do: TLS, keep-alive, chunked encoding, ranges, conditional requests, compression,
listings, uploads, or listening anywhere but 127.0.0.1. It resolves no names and contacts nothing. It is a
test fixture and a demo, not a web server.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import random
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field, fields
from http.client import responses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, cast
from urllib.parse import unquote

from curate.errors import UserError

BIND = "127.0.0.1"
SERVER_NAME = "curate-sample"
HOSTS_FILE = "hosts.json"

_CHUNK = 64 * 1024
_IO_TIMEOUT = 30.0  # a client that neither reads nor writes for this long is dropped
_POLL = 0.1  # accept-loop poll: bounds how long shutdown() waits per host
_STOP_GRACE = 1.5  # stop() waits at most this long for handler threads
_PORT_TRIES = 200
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_NO_BODY = frozenset({204, 304})
_HTML = "text/html"
_JPEG_HEAD = bytes.fromhex("ffd8ffe000104a46494600010100000100010000")  # SOI + APP0 JFIF 1.1
_OPAQUE = (".warc.gz", ".wat.gz", ".wet.gz")
_MIME = mimetypes.MimeTypes()  # Python's built-in table only: /etc/mime.types differs between machines


class ServeError(UserError):
    """The sample crawl cannot be served: hosts.json missing or invalid, a port taken."""


class PortMismatch(ServeError, ValueError):
    """Asked to serve a crawl on a base port other than the one its pages were built for."""


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Route:
    """One special path of one host (see the module docstring for the meaning of each field)."""

    status: int = 200
    file: Path | None = None
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    trickle: tuple[float, int] | None = None  # (interval seconds, bytes per send)
    truncate: float | None = None
    redirect: str | None = None
    code: int = 302
    oversize: int | None = None
    length: bool = True


_ROUTE_KEYS = frozenset(f.name for f in fields(Route))  # the keys a route may have in hosts.json


@dataclass(frozen=True)
class Host:
    """A fake origin: a name, its port on 127.0.0.1, the directory it serves and its routes."""

    name: str
    port: int
    root: Path
    routes: Mapping[str, Route] = field(default_factory=dict)


@dataclass(frozen=True)
class SampleHosts:
    """hosts.json, checked."""

    base_port: int
    hosts: Mapping[str, Host]


def load_hosts(root: str | Path) -> SampleHosts:
    """Read and check DIR/hosts.json; any problem is a one-line `ServeError`."""
    root = Path(root)
    raw = _read_json(root / HOSTS_FILE)
    if not isinstance(raw, dict):
        raise ServeError(f"{root / HOSTS_FILE}: expected a JSON object")
    bind = raw.get("bind", BIND)
    if bind != BIND:
        raise ServeError(f"{root / HOSTS_FILE}: bind is {bind!r}; the sample crawl is served on {BIND} only")
    base_port = _port(raw.get("base_port"), "base_port")
    hosts_raw, routes_raw = raw.get("hosts"), raw.get("routes", {})
    if not isinstance(hosts_raw, dict) or not hosts_raw:
        raise ServeError(f"{root / HOSTS_FILE}: 'hosts' must be a non-empty object")
    if not isinstance(routes_raw, dict) or not set(routes_raw) <= set(hosts_raw):
        raise ServeError(f"{root / HOSTS_FILE}: 'routes' must be an object keyed by host names")
    hosts = {name: _host(root, name, spec, routes_raw.get(name, {})) for name, spec in hosts_raw.items()}
    ports = [host.port for host in hosts.values()]
    if len(set(ports)) != len(ports):
        raise ServeError(f"{root / HOSTS_FILE}: two hosts share a port: {sorted(ports)}")
    return SampleHosts(base_port, hosts)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ServeError(f"{path}: not found; is {path.parent} a sample crawl?") from e
    except json.JSONDecodeError as e:
        raise ServeError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ServeError(f"{path}: unreadable: {e}") from e


def _port(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ServeError(f"{HOSTS_FILE} {where}: expected a port number 1..65535, got {value!r}")
    return value


def _host(root: Path, name: str, spec: Any, routes: Any) -> Host:
    where = f"hosts.{name}"
    if not isinstance(spec, dict) or not isinstance(spec.get("root"), str):
        raise ServeError(f"{HOSTS_FILE} {where}: expected {{'port': N, 'root': 'dir'}}, got {spec!r}")
    host_root = (root / spec["root"]).resolve()
    if not host_root.is_dir():
        raise ServeError(f"{HOSTS_FILE} {where}: root {host_root} is not a directory")
    if not isinstance(routes, dict):
        raise ServeError(f"{HOSTS_FILE} routes.{name}: expected an object of path -> route")
    parsed = {path: _route(host_root, f"routes.{name}[{path!r}]", path, r) for path, r in routes.items()}
    return Host(name, _port(spec.get("port"), f"{where}.port"), host_root, parsed)


def _route(host_root: Path, where: str, path: str, spec: Any) -> Route:
    def bad(why: str) -> ServeError:
        return ServeError(f"{HOSTS_FILE} {where}: {why}")

    if not path.startswith("/"):
        raise bad("a route path starts with '/'")
    if not isinstance(spec, dict) or not set(spec) <= _ROUTE_KEYS:
        raise bad(f"expected an object with keys among {sorted(_ROUTE_KEYS)}, got {spec!r}")
    if "redirect" in spec and {"file", "oversize", "status"} & set(spec):
        raise bad("'redirect' excludes 'file', 'oversize' and 'status'")
    if ("code" in spec and "redirect" not in spec) or ("length" in spec and "oversize" not in spec):
        raise bad("'code' goes with 'redirect', 'length' with 'oversize'")
    if {"file", "oversize"} <= set(spec) or {"trickle", "truncate"} <= set(spec):
        raise bad("'file' and 'oversize' exclude each other, and so do 'trickle' and 'truncate'")
    try:
        return Route(
            status=_status(spec.get("status", 200)),
            file=None if "file" not in spec else _route_file(host_root, spec["file"]),
            content_type=None if "content_type" not in spec else _header_value(spec["content_type"]),
            headers=_headers(spec.get("headers", {})),
            delay=_number(spec.get("delay", 0.0), 0.0),
            trickle=None if "trickle" not in spec else _trickle(spec["trickle"]),
            truncate=None if "truncate" not in spec else _fraction(spec["truncate"]),
            redirect=None if "redirect" not in spec else _header_value(spec["redirect"]),
            code=_redirect_code(spec.get("code", 302)),
            oversize=None if "oversize" not in spec else int(_number(spec["oversize"], 1, integer=True)),
            length=_flag(spec.get("length", True)),
        )
    except (TypeError, ValueError) as e:
        raise bad(str(e)) from e


def _number(value: Any, minimum: float, integer: bool = False) -> float:
    wrong_type = isinstance(value, bool) or not isinstance(value, int if integer else (int, float))
    if wrong_type or value < minimum:
        raise ValueError(f"expected {'an integer' if integer else 'a number'} >= {minimum}, got {value!r}")
    return float(value)


def _status(value: Any) -> int:
    status = int(_number(value, 200, integer=True))
    if status > 599:
        raise ValueError(f"status must be 200..599, got {status}")
    return status


def _redirect_code(value: Any) -> int:
    if value not in _REDIRECT_CODES or isinstance(value, bool):
        raise ValueError(f"code must be one of {sorted(_REDIRECT_CODES)}, got {value!r}")
    return int(value)


def _fraction(value: Any) -> float:
    fraction = _number(value, 0.0)
    if fraction >= 1:
        raise ValueError(f"truncate is a fraction of the body in [0, 1), got {value!r}")
    return float(fraction)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _trickle(value: Any) -> tuple[float, int]:
    if not isinstance(value, dict) or set(value) != {"interval", "bytes"}:
        raise ValueError(f"trickle is {{'interval': seconds, 'bytes': n}}, got {value!r}")
    interval = _number(value["interval"], 0.0)
    if interval <= 0:
        raise ValueError(f"trickle interval must be > 0, got {interval!r}")
    return float(interval), int(_number(value["bytes"], 1, integer=True))


def _header_value(value: Any) -> str:
    if not isinstance(value, str) or "\r" in value or "\n" in value or not value.isascii():
        raise ValueError(f"expected a one-line ASCII string, got {value!r}")
    return value


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise TypeError(f"headers must be an object of name -> value, got {value!r}")
    return tuple((_header_value(k), _header_value(str(v))) for k, v in value.items())


def _route_file(host_root: Path, value: Any) -> Path:
    if not isinstance(value, str):
        raise TypeError(f"file must be a path relative to the host root, got {value!r}")
    path = _confine(host_root, value)
    if path is None or not path.is_file():
        raise ValueError(f"file {value!r} is not a file inside {host_root}")
    return path


# ------------------------------------------------------------------------------------------- responses


def content_type(name: str) -> str:
    """The Content-Type served for a file name (the same on every machine)."""
    lower = name.lower()
    if lower.endswith(_OPAQUE):
        return "application/octet-stream"
    if lower.endswith(".gz"):
        return "application/gzip"
    return _MIME.guess_type(lower, strict=False)[0] or "application/octet-stream"


def _confine(root: Path, decoded: str) -> Path | None:
    """ROOT/decoded, or None when it would leave ROOT (after `..` and symlinks) or holds a NUL."""
    if "\x00" in decoded:
        return None
    target = (root / decoded.lstrip("/")).resolve()
    return target if target.is_relative_to(root) else None


@dataclass(frozen=True)
class _Body:
    """A response body of known size, produced `step` bytes at a time on demand."""

    size: int
    chunks: Callable[[int], Generator[bytes, None, None]]
    length: bool = True  # send Content-Length (else the end is marked by closing the connection)


def _bytes_body(data: bytes) -> _Body:
    def chunks(step: int) -> Generator[bytes, None, None]:
        for start in range(0, len(data), step):
            yield data[start : start + step]

    return _Body(len(data), chunks)


def _file_body(path: Path) -> _Body:
    def chunks(step: int) -> Generator[bytes, None, None]:
        with path.open("rb") as f:
            while piece := f.read(step):
                yield piece

    return _Body(path.stat().st_size, chunks)


def _oversize_body(size: int, length: bool) -> _Body:
    def chunks(step: int) -> Generator[bytes, None, None]:
        filler = bytes(step)
        lead = _JPEG_HEAD + filler
        for start in range(0, size, step):
            n = min(step, size - start)
            yield lead[start : start + n] if start < len(_JPEG_HEAD) else filler[:n]

    return _Body(size, chunks, length)


def _html(status: int) -> bytes:
    title = f"{status} {responses.get(status, '')}".strip()
    return f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>\n".encode()


class _AccessLog:
    """Request records in memory, optionally mirrored as JSON lines to a file; thread-safe."""

    def __init__(self) -> None:
        self._records: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._file: IO[str] | None = None

    def open(self, path: Path | None) -> None:
        if path is not None:
            try:
                self._file = Path(path).open("a", encoding="utf-8")  # noqa: SIM115 - open until close()
            except OSError as e:
                raise ServeError(f"{path}: cannot open the access log: {e.strerror or e}") from e

    def close(self) -> None:
        with self._changed:
            if self._file is not None:
                self._file.close()
                self._file = None

    def add(self, record: dict[str, Any]) -> None:
        with self._changed:
            self._records.append(record)
            if self._file is not None:
                self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
                self._file.flush()
            self._changed.notify_all()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._changed:
            return [dict(record) for record in self._records]

    def wait(self, n: int, timeout: float) -> list[dict[str, Any]]:
        with self._changed:
            self._changed.wait_for(lambda: len(self._records) >= n, timeout)
            return [dict(record) for record in self._records]


class _Handler(BaseHTTPRequestHandler):
    """One request on one connection of one host; see the module docstring for what it answers."""

    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # so even a garbled request line gets a status line and headers
    timeout = _IO_TIMEOUT
    _status: int | None = None
    _sent = 0
    _complete = False

    @property
    def _site(self) -> _HostServer:
        return cast(_HostServer, self.server)

    def version_string(self) -> str:
        return SERVER_NAME

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the base class's stderr log: the access log records every request."""

    def handle(self) -> None:
        start, began = time.time(), time.perf_counter()
        try:
            self.handle_one_request()
        finally:
            if getattr(self, "raw_requestline", b""):
                self._record(start, time.perf_counter() - began)

    def _record(self, start: float, duration: float) -> None:
        self._site.log.add(
            {
                "host": self._site.host.name,
                "method": self.command or "",
                "path": getattr(self, "path", ""),
                "status": self._status,
                "bytes": self._sent,
                "complete": self._complete,
                "start": round(start, 6),
                "duration": round(duration, 6),
            }
        )

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = int(code)  # the base class passes HTTPStatus members
        super().send_response(code, message)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.close_connection = True
        code = int(code)
        self._respond(code, _HTML, _bytes_body(_html(code)), (), None, self.command == "HEAD")

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, head: bool) -> None:
        raw = self.path.split("#", 1)[0].split("?", 1)[0]
        decoded = unquote(raw)
        route = self._site.host.routes.get(raw) or self._site.host.routes.get(decoded)
        if route is not None:
            self._serve_route(route, head)
        else:
            self._serve_file(decoded, head)

    def _serve_file(self, decoded: str, head: bool) -> None:
        try:
            target = _confine(self._site.host.root, decoded)
            found = target is not None and target.is_file()
        except OSError:  # a name too long, a symlink loop: nothing to serve
            target, found = self._site.host.root, False
        if target is None:
            return self.send_error(403)
        try:
            body = _file_body(target) if found else None
        except OSError:  # gone since is_file()
            body = None
        if body is None:
            return self.send_error(404)
        self._respond(200, content_type(target.name), body, (), None, head)

    def _serve_route(self, route: Route, head: bool) -> None:
        if route.delay and self._site.stopping.wait(route.delay):
            self.close_connection = True  # stopping: leave without a word
            return
        if route.redirect is not None:
            headers = (("Location", route.redirect), *route.headers)
            self._respond(route.code, _HTML, _bytes_body(_html(route.code)), headers, route, head)
            return
        if route.oversize is not None:
            body, ctype = _oversize_body(route.oversize, route.length), "image/jpeg"
        elif route.file is not None:
            body, ctype = _file_body(route.file), content_type(route.file.name)
        else:
            body, ctype = _bytes_body(_html(route.status)), _HTML
        self._respond(route.status, route.content_type or ctype, body, route.headers, route, head)

    def _respond(
        self,
        status: int,
        ctype: str,
        body: _Body,
        headers: tuple[tuple[str, str], ...],
        route: Route | None,
        head: bool,
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            if body.length:
                self.send_header("Content-Length", str(body.size))
            self.send_header("Connection", "close")
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            if head or status in _NO_BODY:
                self._complete = True
            else:
                self._write_body(body, route)
        except OSError:  # the client left (reset, broken pipe, timeout) or stop() shut the socket
            pass
        self.close_connection = True

    def _write_body(self, body: _Body, route: Route | None) -> None:
        limit = body.size
        if route is not None and route.truncate is not None:
            limit = int(body.size * route.truncate)
        pause, step = (0.0, _CHUNK) if route is None or route.trickle is None else route.trickle
        with contextlib.closing(body.chunks(step)) as pieces:
            for piece in pieces:
                room = limit - self._sent
                if room <= 0 or self._site.stopping.wait(pause):
                    return
                self.wfile.write(piece[:room])
                self._sent += min(len(piece), room)
        self._complete = self._sent == body.size


class _HostServer(ThreadingHTTPServer):
    """One host's listener. Tracks its connections and threads so that `close` is prompt and complete."""

    daemon_threads = True

    def __init__(self, host: Host, log: _AccessLog, stopping: threading.Event) -> None:
        self.host, self.log, self.stopping = host, log, stopping
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        super().__init__((BIND, host.port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call socket.getfqdn(): a name lookup we neither need nor want.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = BIND, self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        worker = threading.Thread(
            target=self._work,
            args=(request, client_address),
            name=f"curate-serve-{self.host.name}-{self.host.port}",
            daemon=True,
        )
        with self._lock:
            self._open.add(request)
            self._workers.add(worker)
        worker.start()

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._workers.discard(threading.current_thread())

    def shutdown_request(self, request: Any) -> None:
        with self._lock:  # forget it before closing, so close() never touches a closed socket
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client leaving is no error
            super().handle_error(request, client_address)

    def close(self, deadline: float) -> None:
        """Stop accepting, cut open connections, wait for handler threads until `deadline` (monotonic)."""
        self.shutdown()
        self.server_close()
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            workers = list(self._workers)
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))


# ------------------------------------------------------------------------------------------------ API


class SampleServer:
    """Serve the sample crawl in `root` on 127.0.0.1, one port per host of its hosts.json.

    hosts.json is read and checked here (`ServeError`, `PortMismatch`); ports are bound by `start()`.
    Usable as a context manager; can be started again after `stop()`.
    """

    def __init__(self, root: str | Path, port: int | None = None, access_log: Path | None = None) -> None:
        self.root = Path(root)
        self.config = load_hosts(self.root)
        if port is not None and port != self.config.base_port:
            raise PortMismatch(
                f"{self.root} was built for base port {self.config.base_port}, not {port}: its pages embed "
                f"absolute URLs, so rebuild the sample crawl for port {port} or serve it without a port"
            )
        self.access_log = access_log
        self._log = _AccessLog()
        self._stopping = threading.Event()
        self._servers: list[_HostServer] = []
        self._threads: list[threading.Thread] = []

    @property
    def hosts(self) -> Mapping[str, Host]:
        return self.config.hosts

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A copy of the access log: one dict per finished request, in the order they finished."""
        return self._log.snapshot()

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The access log once it holds at least `n` records, or as it is after `timeout` seconds."""
        return self._log.wait(n, timeout)

    def url(self, host: str, path: str = "/") -> str:
        """http://127.0.0.1:PORT/PATH for a host name; `path` is used as given (quote it yourself)."""
        if host not in self.hosts:
            raise ServeError(f"no host {host!r} in {self.root / HOSTS_FILE}; hosts: {', '.join(self.hosts)}")
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        return f"http://{BIND}:{self.hosts[host].port}{path}"

    def start(self) -> Self:
        if self._servers:
            raise ServeError("the sample server is already running")
        self._stopping.clear()
        self._log.open(self.access_log)
        try:
            for host in self.hosts.values():
                self._servers.append(self._bind(host))
        except ServeError:
            for server in self._servers:
                server.server_close()
            self._servers = []
            self._log.close()
            raise
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": _POLL},
                daemon=True,
                name=f"curate-serve-{server.host.name}-{server.host.port}-accept",
            )
            thread.start()
            self._threads.append(thread)
        return self

    def _bind(self, host: Host) -> _HostServer:
        try:
            return _HostServer(host, self._log, self._stopping)
        except OSError as e:
            why = e.strerror or str(e)
            raise ServeError(f"cannot listen on {BIND}:{host.port} for host {host.name!r}: {why}") from e

    def stop(self) -> None:
        """Stop every host, in-flight responses included (within ~`_STOP_GRACE` s); idempotent."""
        self._stopping.set()
        deadline = time.monotonic() + _STOP_GRACE
        for server in self._servers:
            server.close(deadline)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._servers, self._threads = [], []
        self._log.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve_forever(root: str | Path, port: int | None = None, access_log: Path | None = None) -> None:
    """Serve until Ctrl-C or SIGTERM, printing one line per host; then stop cleanly."""
    with SampleServer(root, port, access_log) as server, _sigterm_interrupts():
        width = max(len(name) for name in server.hosts)
        for name, host in server.hosts.items():
            print(f"{name:<{width}}  {server.url(name)}  -> {host.root}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Make SIGTERM raise KeyboardInterrupt (main thread only; elsewhere signals cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def free_port_block(n: int, start: int = 20000, end: int = 60000, seed: int | None = None) -> int:
    """A base port P with start <= P and P + n <= end such that P..P+n-1 are all bindable on 127.0.0.1 now.

    Free now, not reserved: another process may take one before it is used. Ports are probed with
    SO_REUSEADDR, as the servers bind them.
    """
    if n < 1 or not 1 <= start <= end - n or end > 65536:
        raise ValueError(f"no block of {n} ports fits in [{start}, {end})")
    rng = random.Random(seed)
    for _ in range(_PORT_TRIES):
        base = rng.randrange(start, end - n + 1)
        if all(_bindable(port) for port in range(base, base + n)):
            return base
    raise ServeError(f"found no {n} free consecutive ports on {BIND} in [{start}, {end})")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((BIND, port))
        except OSError:
            return False
    return True
