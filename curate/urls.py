"""URL normalization and the stable keys derived from it.

Two spellings of one resource must give one key, so references found on different pages, in different
snapshots or on different runners meet in the URL-dedup step. We normalize as RFC 3986 section 6.2.2
describes (case, percent-encoding, dot segments as section 5.2.4 removes them) plus the scheme-based rules
(default ports, empty path), host names through UTS 46 / IDNA 2008 (the `idna` package),
and drop fragments, which never reach the server. We do not reorder or strip query parameters: that
changes the resource on real sites.
"""

from __future__ import annotations

import hashlib
from urllib.parse import SplitResult, urlsplit, urlunsplit

import idna

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Characters allowed unencoded in a path or query (RFC 3986 pchar plus '/' and '?').
_ALLOWED = _UNRESERVED | frozenset("!$&'()*+,;=:@/?")
_HEX = frozenset("0123456789abcdefABCDEF")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _normalize_component(text: str) -> str:
    """Decode escapes of unreserved characters, upper-case the others, encode what must be encoded."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "%" and i + 2 < len(text) and text[i + 1] in _HEX and text[i + 2] in _HEX:
            decoded = chr(int(text[i + 1 : i + 3], 16))
            out.append(decoded if decoded in _UNRESERVED else "%" + text[i + 1 : i + 3].upper())
            i += 3
            continue
        if ch in _ALLOWED:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, step by step: '.' and '..' segments resolved, every other segment kept as it
    is, empty ones too ('/a//b/../c' is '/a//c': a double slash is part of the resource's name). An empty
    path is '/' (section 6.2.3, for http and https)."""
    source, output = path, list[str]()
    while source:
        if source.startswith("../"):
            source = source[3:]
        elif source.startswith("./"):
            source = source[2:]
        elif source.startswith("/./"):
            source = source[2:]
        elif source == "/.":
            source = "/"
        elif source.startswith("/../"):
            source = source[3:]
            if output:
                output.pop()
        elif source == "/..":
            source = "/"
            if output:
                output.pop()
        elif source in (".", ".."):
            source = ""
        else:
            end = source.find("/", 1)
            end = len(source) if end < 0 else end
            output.append(source[:end])
            source = source[end:]
    return "".join(output) or "/"


def _hostname(host: str) -> str:
    """The host as DNS asks for it: an ASCII name lower-cased (underscores and all, as browsers keep them),
    an internationalized one through UTS 46 and IDNA 2008, non-transitional ('faß.de' is xn--fa-hia.de, not
    fass.de: another domain). A name IDNA refuses is left lower-cased; its fetch fails and says so."""
    if host.isascii():
        return host.lower()
    try:
        return idna.encode(host, uts46=True, transitional=False).decode("ascii")
    except idna.IDNAError:
        return host.lower()


def _host(parts: SplitResult) -> str:
    host = _hostname(parts.hostname or "")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        host = f"{host}:{port}"
    if parts.username is not None:
        auth = parts.username + (f":{parts.password}" if parts.password is not None else "")
        host = f"{auth}@{host}"
    return host


def normalize_url(url: str) -> str:
    """The canonical spelling of an absolute http(s) URL.

    Raises ValueError for a URL without a host or with an invalid port.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if not parts.hostname:
        raise ValueError(f"URL has no host: {url!r}")
    path = _remove_dot_segments(_normalize_component(parts.path))
    query = _normalize_component(parts.query)
    return urlunsplit((scheme, _host(parts), path, query, ""))


def url_key(normalized_url: str) -> str:
    """Stable 128-bit key (32 lower-case hex digits) of a normalized URL."""
    return hashlib.sha256(normalized_url.encode("utf-8")).hexdigest()[:32]
