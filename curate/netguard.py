"""The SSRF guard of the download stage: no request reaches an address that is not on the public internet.

Image URLs come from pages anyone can write, so a URL (or a redirect) may point at this machine, the cluster's
network or a cloud metadata service. Blocked, unless the policy's allow-list names the address:
- loopback (127/8, ::1), unspecified and "this network" (0/8, ::), private (10/8, 172.16/12, 192.168/16,
  fc00::/7, local-use NAT64 64:ff9b:1::/48), shared CGNAT space (100.64/10), link-local (169.254/16,
  fe80::/10: metadata services live there), multicast, broadcast, documentation, benchmarking, reserved
  (240/4, IETF protocol assignments, everything outside IPv6 global unicast 2000::/3) and anything else
  Python's `ipaddress` calls non-global;
- IPv6 forms that carry an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16)
  when the IPv4 address inside is blocked.

Hosts are read the way browsers read them (WHATWG URL host parsing: `127.1`, `2130706433`, `0x7f000001`,
`0177.0.0.1`, `[::ffff:7f00:1]` are all 127.0.0.1); a host WHATWG rejects as a malformed address is refused,
never handed to the system resolver, whose reading may differ. A name is refused if ANY of its addresses is.

The check happens when a connection is made (`guarded_handlers`), so every redirect hop is checked, and the
connection goes to the very address that was checked: resolve once, check all, connect to a checked address,
with the original Host header and, for HTTPS, SNI and certificate verification for the original name. No
window for DNS rebinding. Proxies are never used (a proxy would hide the target), ftp:// is refused (urllib
follows redirects to it and its handler would connect unguarded) and so is file:// (local files).
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., Sequence[tuple[Any, ...]]]  # socket.getaddrinfo's signature and results

_V4 = tuple(
    (ipaddress.IPv4Network(net), why)
    for net, why in (
        ("0.0.0.0/32", "unspecified"),
        ("0.0.0.0/8", "this-network"),  # Linux connects 0.0.0.0 to the local host
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "reserved"),  # deprecated 6to4 relay anycast
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_V6 = tuple(
    (ipaddress.IPv6Network(net), why)
    for net, why in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "private"),  # local-use NAT64
        ("100::/64", "reserved"),  # discard-only
        ("2001::/23", "reserved"),  # IETF protocol assignments: Teredo, benchmarking, ORCHID ...
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "reserved"),  # SRv6 SIDs
        ("fc00::/7", "private"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "reserved"),  # deprecated site-local
        ("ff00::/8", "multicast"),
    )
)
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})  # full stops IDNA reads as "."
_RADIX_DIGITS = {10: frozenset("0123456789"), 8: frozenset("01234567"), 16: frozenset("0123456789abcdef")}


class BlockedAddress(OSError):
    """A connection the guard refused; urllib surfaces it as `URLError(reason=BlockedAddress(...))`."""

    def __init__(self, host: str, address: str, why: str):
        super().__init__(f"blocked address {address or '-'} for host {host or '-'} ({why})")
        self.host, self.address, self.why = host, address, why

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (Beam dead letters, worker processes)
        return (type(self), (self.host, self.address, self.why))


@dataclass(frozen=True)
class AddressPolicy:
    """What the guard lets through: global addresses, plus the IPs and CIDR networks in `allow`."""

    allow: tuple[str, ...] = ()
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.allow, str):
            raise ValueError(f"AddressPolicy.allow must be a tuple of IPs or CIDRs, not the string {self.allow!r}")
        networks = []
        for entry in self.allow:
            try:
                if not isinstance(entry, str):
                    raise TypeError(f"expected a string, got {type(entry).__name__}")
                networks.append(ipaddress.ip_network(entry, strict=True))
            except (TypeError, ValueError) as e:
                raise ValueError(f"AddressPolicy.allow: {entry!r} is not an IP or CIDR network: {e}") from e
        object.__setattr__(self, "allow", tuple(self.allow))
        object.__setattr__(self, "_networks", tuple(networks))

    def blocked_reason(self, ip: IPAddress) -> str | None:
        """Why `ip` is blocked ("loopback", "private", "loopback via NAT64" ...), or None if it may be reached."""
        if any(ip in net for net in self._networks):
            return None
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        if mapped is not None and any(mapped in net for net in self._networks):
            return None  # ::ffff:a.b.c.d on a dual-stack socket is a.b.c.d itself
        return _reason(ip)


def _reason(ip: IPAddress) -> str | None:
    if isinstance(ip, ipaddress.IPv4Address):
        why = next((why for net, why in _V4 if ip in net), None)
        return why or (None if ip.is_global else "non-global")
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        inner, via = embedded
        why = _reason(inner)
        return f"{why} via {via}" if why else None
    why = next((why for net6, why in _V6 if ip in net6), None)
    if why is None and ip not in _GLOBAL_UNICAST:
        why = "reserved"
    return why or (None if ip.is_global else "non-global")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    return None


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a browser reads in a URL host, None if the host is a domain name.

    IPv4 follows the WHATWG URL standard: 1 to 4 dot-separated numbers, each decimal, octal (leading 0) or
    hex (0x, where a bare "0x" is 0), the last filling the remaining bytes; a trailing dot is ignored;
    percent-escapes and full-width forms are decoded first. IPv6 is bracketed or bare (as http.client passes
    it). Raises ValueError where WHATWG fails the host as a malformed address: a host ending in a number that
    is no valid IPv4 (`256.1.1.1`, `1.2.3.4.5`, `foo.1`, `08`), or a bad IPv6 (`[::1`, `[::1%25eth0]`, `[foo]`).
    """
    if host.startswith("["):
        if not host.endswith("]") or "%" in host:
            raise ValueError(f"malformed IPv6 literal {host!r}")
        return ipaddress.IPv6Address(host[1:-1])
    if ":" in host:
        return ipaddress.IPv6Address(host)
    name = unicodedata.normalize("NFKC", urllib.parse.unquote(host)).translate(_DOTS).lower()
    parts = name.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    last = parts[-1]
    if not (last.isascii() and last.isdigit()) and _ipv4_number(last) is None:
        return None  # a domain name: WHATWG's "ends in a number" test says no
    numbers = [_ipv4_number(part) for part in parts]
    if len(numbers) > 4 or None in numbers:
        raise ValueError(f"malformed IPv4 address {host!r}")
    *head, tail = [n for n in numbers if n is not None]
    if any(n > 255 for n in head) or tail >= 256 ** (4 - len(head)):
        raise ValueError(f"IPv4 address {host!r} out of range")
    return ipaddress.IPv4Address(sum(n << (8 * (3 - i)) for i, n in enumerate(head)) + tail)


def _ipv4_number(text: str) -> int | None:
    radix, digits = 10, text
    if text[:2] == "0x":
        radix, digits = 16, text[2:]
    elif len(text) > 1 and text[0] == "0":
        radix, digits = 8, text[1:]
    if not text or any(c not in _RADIX_DIGITS[radix] for c in digits):
        return None
    return int(digits, radix) if digits else 0


def resolve_checked(
    host: str, port: int, policy: AddressPolicy, resolver: Resolver = socket.getaddrinfo
) -> list[tuple]:
    """getaddrinfo-style results for `host`, every address checked.

    Raises BlockedAddress if any address is blocked (or the host is a malformed address), socket.gaierror if
    the name does not resolve. IP literals are parsed here, never passed to the resolver.
    """
    try:
        literal = parse_ip_literal(host)
    except ValueError as e:
        raise BlockedAddress(host, host, "malformed IP address") from e
    if literal is not None:
        family = socket.AF_INET if literal.version == 4 else socket.AF_INET6
        sockaddr = (str(literal), port) if literal.version == 4 else (str(literal), port, 0, 0)
        infos: list[tuple] = [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]
    else:
        infos = list(resolver(host, port, 0, socket.SOCK_STREAM))
        if not infos:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} resolved to no address")
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            raise BlockedAddress(host, str(sockaddr), f"not an IP address family ({family})")
        try:
            ip = ipaddress.ip_address(sockaddr[0])
        except ValueError as e:
            raise BlockedAddress(host, str(sockaddr[0]), "unparsable address") from e
        why = policy.blocked_reason(ip)
        if why is not None:
            raise BlockedAddress(host, str(ip), why)
    return infos


def check_url(url: str, policy: AddressPolicy, resolver: Resolver = socket.getaddrinfo) -> None:
    """Raise BlockedAddress early for a URL that the guard would refuse (resolves names: pass a resolver).

    Only a first filter: a name may resolve elsewhere later, and redirects go anywhere. The check at connect
    time (`guarded_handlers`) is the one that protects.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise BlockedAddress(url, "", f"malformed URL: {e}") from e
    if parts.scheme.lower() not in ("http", "https"):
        raise BlockedAddress(parts.hostname or "", "", f"scheme {parts.scheme!r} is not http or https")
    if not parts.hostname:
        raise BlockedAddress("", "", f"no host in {url!r}")
    default = 443 if parts.scheme.lower() == "https" else 80
    resolve_checked(parts.hostname, port or default, policy, resolver)


@dataclass(frozen=True)
class _Guard:
    policy: AddressPolicy
    resolver: Resolver

    def connect(self, host: str, port: int, timeout: Any, source_address: Any) -> socket.socket:
        """A socket connected to a checked address of host (socket.create_connection, checked)."""
        error: OSError | None = None
        for family, _, _, _, sockaddr in resolve_checked(host, port, self.policy, self.resolver):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                if timeout is None or isinstance(timeout, int | float):  # else http.client's "default" sentinel
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as e:
                sock.close()
                error = e
        assert error is not None  # resolve_checked never returns an empty list
        raise error

    def factory(self, cls: type[http.client.HTTPConnection]) -> Callable[..., http.client.HTTPConnection]:
        def make(host: str, **kwargs: Any) -> http.client.HTTPConnection:
            conn = cls(host, **kwargs)
            conn.guard = self  # type: ignore[attr-defined]
            return conn

        return make


class _GuardedHTTPConnection(http.client.HTTPConnection):
    guard: _Guard

    def connect(self) -> None:
        tunnel = getattr(self, "_tunnel_host", None)
        if tunnel:  # CONNECT through a proxy: the proxy, not us, would pick the address
            raise BlockedAddress(tunnel, self.host, "proxies are not allowed")
        self.sock = self.guard.connect(self.host, self.port, self.timeout, getattr(self, "source_address", None))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _GuardedHTTPSConnection(http.client.HTTPSConnection, _GuardedHTTPConnection):
    """HTTPSConnection.connect wraps the socket from _GuardedHTTPConnection.connect with server_hostname=host."""


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, guard: _Guard):
        super().__init__()
        self.guard = guard

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self.guard.factory(_GuardedHTTPConnection), req)


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, guard: _Guard, context: ssl.SSLContext):
        super().__init__(context=context)
        self.guard, self.ssl_context = guard, context

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self.guard.factory(_GuardedHTTPSConnection), req, context=self.ssl_context)


class _RefuseFTP(urllib.request.FTPHandler):
    def ftp_open(self, req: urllib.request.Request) -> Any:
        raise urllib.error.URLError(BlockedAddress(req.host, "", "scheme 'ftp' is not http or https"))


class _RefuseFile(urllib.request.FileHandler):
    def file_open(self, req: urllib.request.Request) -> Any:
        raise urllib.error.URLError(BlockedAddress(req.host, "", "scheme 'file' is not http or https"))


def guarded_handlers(
    policy: AddressPolicy, resolver: Resolver = socket.getaddrinfo, ssl_context: ssl.SSLContext | None = None
) -> list[urllib.request.BaseHandler]:
    """Handlers for `urllib.request.build_opener` that check every connection (redirects included).

    HTTP and HTTPS connect to a checked address; ProxyHandler({}) ignores environment proxies; ftp:// and
    file:// are refused. `ssl_context` defaults to `ssl.create_default_context()` (verifying).
    """
    guard = _Guard(policy, resolver)
    return [
        urllib.request.ProxyHandler({}),
        _GuardedHTTPHandler(guard),
        _GuardedHTTPSHandler(guard, ssl_context or ssl.create_default_context()),
        _RefuseFTP(),
        _RefuseFile(),
    ]
