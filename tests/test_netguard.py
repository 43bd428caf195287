"""The SSRF guard, on real sockets that never leave loopback.

Every listener here is bound on 127.0.0.0/8 or ::1, and every URL a test opens points at one of them, so even
a broken guard could only ever connect to loopback. Names are mapped by `FakeResolver`; the autouse fixture
makes any real name lookup a test failure. Addresses of other classes are checked without connecting.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import pickle
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from curate.netguard import (
    AddressPolicy,
    BlockedAddress,
    check_url,
    guarded_handlers,
    parse_ip_literal,
    resolve_checked,
)

IP = ipaddress.ip_address
LOOPBACK = AddressPolicy(("127.0.0.1",))


class FakeResolver:
    """getaddrinfo over a fixed table (name -> addresses, or a list of answers, one per call); records calls."""

    def __init__(self, table: dict[str, Any]):
        self.table = table
        self.calls: list[str] = []

    def __call__(self, host: str, port: int, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0):
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answer = self.table[host]
        addresses = answer.pop(0) if isinstance(answer[0], list) else answer  # rebinding: a new answer per call
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]


@pytest.fixture(autouse=True)
def no_real_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def numeric_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        ipaddress.ip_address(host)  # a name here would be a real DNS query: ValueError fails the test
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", numeric_only)


class Counting(http.server.ThreadingHTTPServer):
    """An HTTP server on loopback that counts requests, records Host headers, and redirects per path."""

    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, 0), _Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.port = self.server_address[1]
        self.requests: list[tuple[str, str]] = []  # (path, Host header)
        self.redirects: dict[str, str] = {}
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Counting

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers["Host"]))
        target = self.server.redirects.get(self.path)
        self.send_response(302 if target else 200)
        if target:
            self.send_header("Location", target)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


class Trap:
    """A raw listener that is never meant to be reached: `connections()` counts handshakes that happened."""

    def __init__(self, host: str):
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                return count
            conn.close()
            count += 1


@pytest.fixture
def server() -> Iterator[Counting]:
    s = Counting()
    yield s
    s.stop()


@pytest.fixture
def trap2() -> Iterator[Trap]:
    t = Trap("127.0.0.2")  # Linux routes all of 127/8 to loopback
    yield t
    t.sock.close()


def opener(policy: AddressPolicy, resolver: FakeResolver | None = None, **kw: Any) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(*guarded_handlers(policy, resolver or FakeResolver({}), **kw))


def fetch(op: urllib.request.OpenerDirector, url: str) -> tuple[int, bytes]:
    with op.open(url, timeout=5) as r:
        return r.status, r.read()


def refused(op: urllib.request.OpenerDirector, url: str) -> BlockedAddress:
    with pytest.raises(urllib.error.URLError) as info:
        op.open(url, timeout=5).close()
    assert isinstance(info.value.reason, BlockedAddress), info.value
    return info.value.reason


# --- parse_ip_literal ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("0.0.0.0", "0.0.0.0"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.0.0.0x1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),  # trailing dot
        ("127.0.0.%31", "127.0.0.1"),  # percent-decoded first
        ("\uff11\uff12\uff17\u3002\uff10\u3002\uff10\u3002\uff11", "127.0.0.1"),  # full-width digits and dots
        ("0x", "0.0.0.0"),  # WHATWG: "0x" is the number 0 (browsers turn http://0x/ into http://0.0.0.0/)
        ("8.8.8.8", "8.8.8.8"),
        ("[::1]", "::1"),
        ("::1", "::1"),  # unbracketed, as http.client hands hosts over
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("[::ffff:7f00:1]", "::ffff:7f00:1"),
        ("[64:ff9b::7f00:1]", "64:ff9b::7f00:1"),
        ("[2002:7f00:1::]", "2002:7f00:1::"),
    ],
)
def test_parse_ip_literal_forms(host: str, expected: str) -> None:
    assert parse_ip_literal(host) == IP(expected)


@pytest.mark.parametrize("host", ["example.com", "localhost", "images.test.", "a..", "0x7g", "1.2.3.x", "09a", ""])
def test_parse_ip_literal_names_are_none(host: str) -> None:
    assert parse_ip_literal(host) is None


@pytest.mark.parametrize(
    "host", ["256.1.1.1", "1.2.3.4.5", "1.256.3", "4294967296", "foo.1", "08", "1..2", "[::1", "[foo]", "[fe80::1%25x]"]
)
def test_parse_ip_literal_malformed_raises(host: str) -> None:
    """Hosts WHATWG rejects as malformed addresses raise ValueError (and resolve_checked refuses them)."""
    with pytest.raises(ValueError):
        parse_ip_literal(host)
    with pytest.raises(BlockedAddress, match="malformed IP address"):
        resolve_checked(host, 80, AddressPolicy(), FakeResolver({}))


# --- blocked_reason -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ip", ["8.8.8.8", "93.184.216.34", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::"])
def test_public_addresses_pass(ip: str) -> None:
    assert AddressPolicy().blocked_reason(IP(ip)) is None


@pytest.mark.parametrize(
    ("ip", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("0.1.2.3", "this-network"),
        ("100.64.0.1", "shared"),
        ("192.0.2.1", "documentation"),
        ("2001:db8::1", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("2001::1", "reserved"),  # Teredo
        ("::7f00:1", "reserved"),  # deprecated IPv4-compatible
        ("::ffff:10.0.0.1", "private via IPv4-mapped"),
        ("64:ff9b::a9fe:a9fe", "link-local via NAT64"),
        ("2002:c0a8:101::", "private via 6to4"),
    ],
)
def test_blocked_classes(ip: str, why: str) -> None:
    assert AddressPolicy().blocked_reason(IP(ip)) == why


def test_allow_list() -> None:
    assert LOOPBACK.blocked_reason(IP("127.0.0.1")) is None
    assert LOOPBACK.blocked_reason(IP("::ffff:127.0.0.1")) is None  # the same endpoint on a dual-stack socket
    assert LOOPBACK.blocked_reason(IP("127.0.0.2")) == "loopback"
    assert LOOPBACK.blocked_reason(IP("::1")) == "loopback"
    assert LOOPBACK.blocked_reason(IP("64:ff9b::7f00:1")) == "loopback via NAT64"  # a translator, not us
    wide = AddressPolicy(("127.0.0.0/8", "::1"))
    assert wide.blocked_reason(IP("127.0.0.2")) is None
    assert wide.blocked_reason(IP("::1")) is None
    assert wide.blocked_reason(IP("10.0.0.1")) == "private"


@pytest.mark.parametrize("allow", [("localhost",), ("127.0.0.1/8",), ("127.1",), "127.0.0.1", (2130706433,)])
def test_allow_list_validated(allow: Any) -> None:
    with pytest.raises(ValueError, match="AddressPolicy.allow") as info:
        AddressPolicy(allow)
    assert "\n" not in str(info.value)


def test_policy_and_error_pickle() -> None:
    assert pickle.loads(pickle.dumps(LOOPBACK)) == LOOPBACK
    assert pickle.loads(pickle.dumps(LOOPBACK)).blocked_reason(IP("127.0.0.1")) is None
    err = pickle.loads(pickle.dumps(BlockedAddress("example.test", "127.0.0.2", "loopback")))
    assert (err.host, err.address, err.why) == ("example.test", "127.0.0.2", "loopback")
    assert str(err) == "blocked address 127.0.0.2 for host example.test (loopback)"


# --- resolve_checked and check_url (no connections) ---------------------------------------------------------


def test_resolve_checked_blocks_private_name() -> None:
    resolver = FakeResolver({"intranet.test": ["10.0.0.5"]})
    with pytest.raises(BlockedAddress) as info:
        resolve_checked("intranet.test", 80, AddressPolicy(), resolver)
    assert (info.value.host, info.value.address, info.value.why) == ("intranet.test", "10.0.0.5", "private")
    assert str(info.value) == "blocked address 10.0.0.5 for host intranet.test (private)"


def test_resolve_checked_blocks_if_any_address_is_blocked() -> None:
    resolver = FakeResolver({"mixed.test": ["93.184.216.34", "127.0.0.1"]})
    with pytest.raises(BlockedAddress) as info:
        resolve_checked("mixed.test", 80, AddressPolicy(), resolver)
    assert info.value.address == "127.0.0.1"


def test_resolve_checked_passes_public_names_and_literals() -> None:
    resolver = FakeResolver({"public.test": ["93.184.216.34", "2606:4700::1111"]})
    infos = resolve_checked("public.test", 8080, AddressPolicy(), resolver)
    assert [info[4][:2] for info in infos] == [("93.184.216.34", 8080), ("2606:4700::1111", 8080)]
    literal = resolve_checked("0x5db8d822", 80, AddressPolicy(), resolver)  # 93.184.216.34, not resolved
    assert literal == [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("93.184.216.34", 80))]
    assert resolver.calls == ["public.test"]


def test_resolve_checked_unknown_name_is_gaierror() -> None:
    with pytest.raises(socket.gaierror):
        resolve_checked("nowhere.test", 80, AddressPolicy(), FakeResolver({}))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://0.0.0.0/", "unspecified"),
        ("http://127.1/", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://0x7f000001:8080/x", "loopback"),
        ("http://0177.0.0.1/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback via IPv4-mapped"),
        ("http://[::ffff:7f00:1]/", "loopback via IPv4-mapped"),
        ("http://[64:ff9b::7f00:1]/", "loopback via NAT64"),
        ("https://[2002:7f00:1::]/", "loopback via 6to4"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://user@10.1.2.3/", "private"),
        ("http://intranet.test/a.jpg", "private"),
        ("http://256.1.1.1/", "malformed IP address"),
        ("ftp://example.test/a.jpg", "scheme 'ftp' is not http or https"),
        ("file:///etc/passwd", "scheme 'file' is not http or https"),
        ("http:///a.jpg", "no host in 'http:///a.jpg'"),
    ],
)
def test_check_url_blocks(url: str, why: str) -> None:
    with pytest.raises(BlockedAddress) as info:
        check_url(url, AddressPolicy(), FakeResolver({"intranet.test": ["192.168.0.7"]}))
    assert info.value.why == why


def test_check_url_passes() -> None:
    resolver = FakeResolver({"images.test": ["93.184.216.34"]})
    check_url("https://images.test/a.jpg", AddressPolicy(), resolver)
    check_url("http://8.8.8.8/a.jpg", AddressPolicy(), resolver)
    check_url("http://127.0.0.1:8000/a.jpg", LOOPBACK, resolver)
    assert resolver.calls == ["images.test"]


# --- urllib end to end, loopback only -----------------------------------------------------------------------


def test_direct_request_and_literal_forms(server: Counting) -> None:
    op = opener(LOOPBACK)
    assert fetch(op, f"http://127.0.0.1:{server.port}/a") == (200, b"ok")
    assert fetch(op, f"http://2130706433:{server.port}/b") == (200, b"ok")
    assert server.requests == [("/a", f"127.0.0.1:{server.port}"), ("/b", f"2130706433:{server.port}")]
    err = refused(opener(AddressPolicy()), f"http://2130706433:{server.port}/c")
    assert (err.host, err.address, err.why) == ("2130706433", "127.0.0.1", "loopback")
    assert len(server.requests) == 2


def test_redirect_to_blocked_address_never_connects(server: Counting, trap2: Trap) -> None:
    server.redirects["/r"] = f"http://127.0.0.2:{trap2.port}/"
    err = refused(opener(LOOPBACK), f"http://127.0.0.1:{server.port}/r")
    assert (err.address, err.why) == ("127.0.0.2", "loopback")
    assert server.requests == [("/r", f"127.0.0.1:{server.port}")]
    assert trap2.connections() == 0


def test_redirect_chain_within_allow_list_is_followed(server: Counting) -> None:
    server.redirects["/r"] = f"http://localhost.test:{server.port}/s"
    resolver = FakeResolver({"localhost.test": ["127.0.0.1"]})
    assert fetch(opener(LOOPBACK, resolver), f"http://127.0.0.1:{server.port}/r") == (200, b"ok")
    assert server.requests == [("/r", f"127.0.0.1:{server.port}"), ("/s", f"localhost.test:{server.port}")]


def test_name_resolving_to_blocked_address_never_connects(trap2: Trap) -> None:
    resolver = FakeResolver({"evil.test": ["127.0.0.2"], "both.test": ["127.0.0.1", "127.0.0.2"]})
    err = refused(opener(LOOPBACK, resolver), f"http://evil.test:{trap2.port}/")
    assert str(err) == "blocked address 127.0.0.2 for host evil.test (loopback)"
    err = refused(opener(LOOPBACK, resolver), f"http://both.test:{trap2.port}/")
    assert err.address == "127.0.0.2"
    assert resolver.calls == ["evil.test", "both.test"]
    assert trap2.connections() == 0


def test_rebinding_is_caught_at_connect_time(server: Counting, trap2: Trap) -> None:
    """check_url saw 127.0.0.1; the connection resolves again, checks again, and refuses the new answer."""
    resolver = FakeResolver({"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
    check_url(f"http://rebind.test:{trap2.port}/", LOOPBACK, resolver)
    refused(opener(LOOPBACK, resolver), f"http://rebind.test:{trap2.port}/")
    assert resolver.calls == ["rebind.test", "rebind.test"]  # once per check, once per connection
    assert trap2.connections() == 0


def test_ipv6_loopback_blocked_when_only_ipv4_loopback_allowed() -> None:
    trap6 = Trap("::1")
    try:
        err = refused(opener(LOOPBACK), f"http://[::1]:{trap6.port}/")
        assert (err.address, err.why) == ("::1", "loopback")
        assert trap6.connections() == 0
    finally:
        trap6.sock.close()


def test_ftp_and_file_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    assert refused(opener(LOOPBACK), (tmp_path / "secret.txt").as_uri()).why == "scheme 'file' is not http or https"
    assert refused(opener(LOOPBACK), "ftp://127.0.0.2:1/x").why == "scheme 'ftp' is not http or https"


def test_environment_proxies_ignored(server: Counting, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(urllib.error.URLError, match="Connection refused"):  # a default opener uses the proxy
        urllib.request.build_opener().open(f"http://127.0.0.1:{server.port}/", timeout=5).close()
    assert fetch(opener(LOOPBACK), f"http://127.0.0.1:{server.port}/p") == (200, b"ok")
    assert server.requests == [("/p", f"127.0.0.1:{server.port}")]


def test_installed_opener_governs_urlopen(server: Counting, trap2: Trap, monkeypatch: pytest.MonkeyPatch) -> None:
    """img2dataset's Downloader calls urllib.request.urlopen: an installed opener guards it."""
    monkeypatch.setattr(urllib.request, "_opener", None)  # restored after the test
    urllib.request.install_opener(opener(LOOPBACK))
    server.redirects["/r"] = f"http://127.0.0.2:{trap2.port}/"
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/ok", timeout=5) as r:
        assert r.read() == b"ok"
    with pytest.raises(urllib.error.URLError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/r", timeout=5).close()
    assert isinstance(info.value.reason, BlockedAddress)
    assert "blocked address 127.0.0.2" in str(info.value)  # what img2dataset records as the error
    assert trap2.connections() == 0


# --- HTTPS: connect to the checked address, verify the original name ----------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "images.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("images.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    out = tmp_path_factory.mktemp("tls")
    (out / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return out / "cert.pem", out / "key.pem"


def test_https_uses_original_name_for_sni_and_verification(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert, key)
    sni: list[str | None] = []
    served.sni_callback = lambda sock, name, ctx: sni.append(name)
    server = Counting(tls=served)
    try:
        client = ssl.create_default_context(cafile=str(cert))
        resolver = FakeResolver({"images.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
        op = opener(LOOPBACK, resolver, ssl_context=client)
        assert fetch(op, f"https://images.test:{server.port}/i") == (200, b"ok")
        assert sni == ["images.test"]
        assert server.requests == [("/i", f"images.test:{server.port}")]
        with pytest.raises(urllib.error.URLError) as info:  # same address, a name the certificate does not hold
            op.open(f"https://other.test:{server.port}/", timeout=5).close()
        assert isinstance(info.value.reason, ssl.SSLCertVerificationError)
        assert sni == ["images.test", "other.test"]
        assert len(server.requests) == 1
    finally:
        server.stop()
