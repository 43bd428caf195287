"""robots.txt: which image URLs an origin lets our crawler fetch (RFC 9309), decided before any request.

The download stage fetches `/robots.txt` once per origin (scheme, host, port) and drops every URL the file
disallows for our user agent token as `robots_disallow`; those URLs are never requested. urllib.robotparser
is not used: it takes the first matching rule instead of the longest, knows no `*`/`$` wildcards and picks
groups wrongly, so it both over- and under-blocks.

What the parser keeps: `user-agent`, `allow` and `disallow` lines (field names case-insensitive, the common
typos `useragent`, `user agent`, `disalow`... accepted, as Google's parser does, because their authors meant
them). What it drops: comments, blank lines, lines without a colon, rules before the first `user-agent`,
sitemap/crawl-delay/host/unknown records (they do end a run of `user-agent` lines, as in Google's parser),
empty `allow:`/`disallow:` values (they allow everything), and anything past 16 KiB on one line. A bad line is
skipped, never an error: a hostile or broken file must not stop a run.

Group selection: a file's user-agent value is reduced to its product token (the leading run of letters, `_`
and `-`, so `curate/2.1` and `Curate 2.1` are `curate`) and compared to ours case-insensitively, whole token:
`curatebot` and `curate-bot` are other crawlers and do not match. All groups naming us are merged; a group
naming us, even one with no rules, replaces the `*` groups entirely; without one the `*` groups apply; without
either, everything is allowed.

Matching: path and query (fragment dropped, empty path `/`) against each pattern; `*` is any sequence, `$` at
the end anchors. Both sides are put in one canonical percent-encoding first (escapes of unreserved characters
decoded, other escapes upper-cased, non-ASCII and spaces encoded as UTF-8), so `%7e`, `%7E` and `~` are equal
while `%2F` and `/` stay different (RFC 3986). The longest matching pattern (canonical form, so equivalent
spellings rank the same) wins, allow on a tie; `/robots.txt` is always allowed. Paths are case-sensitive.

Fetch outcomes: 2xx is parsed (first 500 KiB only); 4xx means no robots.txt, everything allowed
("unavailable"); 5xx, a network error and anything unexpected (an unresolved 3xx is "unavailable" as RFC 9309
allows) mean everything is disallowed ("unreachable"), the cautious reading of a server that cannot answer.
429 is read as 5xx, as Google does: "slow down" is not "no rules". The reason stays in `detail` for the ledger.
An unreachable file disallows *for now* (RFC 9309): its URLs are `robots_unreachable`, retryable
(`--retry-failed` fetches robots.txt again), not `robots_disallow`; an origin the SSRF guard refuses is
`blocked_address` (`refusal`).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from urllib.parse import quote, urlsplit

from curate import reasons as R

OK = "ok"
UNAVAILABLE = "unavailable"  # 4xx: no usable robots.txt, all allowed
UNREACHABLE = "unreachable"  # 5xx, 429, network error: all disallowed
STATUSES = frozenset({OK, UNAVAILABLE, UNREACHABLE})

MAX_BODY_BYTES = 500 * 1024
MAX_LINE_CHARS = 16 * 1024  # Google's parser cuts at ~16 KB too: no real rule is longer

Fetch = Callable[[str], tuple[int | None, bytes | None, str]]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_FIELD_ALIASES = {
    "user-agent": "user-agent",
    "useragent": "user-agent",
    "user agent": "user-agent",
    "allow": "allow",
    "disallow": "disallow",
    "dissallow": "disallow",
    "dissalow": "disallow",
    "disalow": "disallow",
    "diasllow": "disallow",
    "disallaw": "disallow",
}
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_PRODUCT_TOKEN = re.compile(r"[A-Za-z_-]*")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_VISIBLE_ASCII = "".join(map(chr, range(0x21, 0x7F)))  # kept as is; the rest gets percent-encoded


def origin_of(url: str) -> str:
    """`scheme://host[:port]`, lower-cased, default port dropped: "http://Example.com:80/a?b" -> "http://example.com".

    Raises ValueError for a URL without scheme or host, or with an invalid port.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        raise ValueError(f"not a valid URL: {url!r}") from e
    scheme, host = parts.scheme.lower(), parts.hostname
    if not scheme or not host:
        raise ValueError(f"not an absolute URL: {url!r}")
    if ":" in host:  # IPv6 literal: hostname drops the brackets
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def robots_url(origin: str) -> str:
    """Where an origin's robots.txt lives."""
    return origin.rstrip("/") + "/robots.txt"


@dataclass(frozen=True)
class RobotsRules:
    """What one origin's robots.txt says to us. Plain data, so it pickles and compares by value."""

    origin: str
    status: str  # OK | UNAVAILABLE | UNREACHABLE
    rules: tuple[tuple[str, bool], ...]  # (canonical pattern, allow) of the selected group(s), in file order
    detail: str = ""  # why not OK ("HTTP 503", "timeout"), or a note such as a truncated body

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown robots status {self.status!r}, expected one of {sorted(STATUSES)}")

    def allowed(self, url: str) -> bool:
        """May we fetch `url` (a URL of this origin, or a path)?"""
        path = _path_of(url)
        if path.partition("?")[0] == "/robots.txt":
            return True
        if self.status != OK:
            return self.status == UNAVAILABLE
        return _verdict(self.rules, path)


def parse_robots(text: str, agent: str, origin: str) -> RobotsRules:
    """The rules of the group(s) that apply to `agent` (a product token such as "curate") in a robots.txt."""
    selected = _select(_records(text), _product_token(agent))
    return RobotsRules(origin, OK, tuple((_canonical(pattern), allow) for pattern, allow in selected))


def rules_from_response(
    origin: str, agent: str, status: int | None, body: bytes | None, error: str = ""
) -> RobotsRules:
    """Rules from the final response to a robots.txt request; `status` None means the request failed (`error`)."""
    if status is None:
        return RobotsRules(origin, UNREACHABLE, (), error or "network error")
    if 200 <= status < 300:
        data = body or b""
        note = f"body truncated to {MAX_BODY_BYTES} of {len(data)} bytes" if len(data) > MAX_BODY_BYTES else ""
        text = data[:MAX_BODY_BYTES].decode("utf-8", errors="replace")
        return replace(parse_robots(text, agent, origin), detail=note)
    if 300 <= status < 500 and status != 429:
        return RobotsRules(origin, UNAVAILABLE, (), f"HTTP {status}")
    return RobotsRules(origin, UNREACHABLE, (), f"HTTP {status}")


def refusal(rules: RobotsRules) -> str:
    """The reason code for a URL these rules do not allow: `robots_disallow` for a rule of the file;
    `robots_unreachable` when the file could not be fetched (RFC 9309: a full disallow *for now*, so the URL
    stays retryable); `blocked_address` when the SSRF guard refused the origin itself."""
    if rules.status != UNREACHABLE:
        return R.ROBOTS_DISALLOW
    return R.BLOCKED_ADDRESS if "blocked address" in rules.detail else R.ROBOTS_UNREACHABLE


def fetch_robots(origin: str, agent: str, fetch: Fetch) -> RobotsRules:
    """Request `origin`'s robots.txt once through `fetch(url) -> (status, body, error)` and read the answer.

    `fetch` is the caller's HTTP client (redirects, timeouts, SSRF guard). One that raises OSError instead of
    reporting the failure still yields "unreachable" rather than a crash.
    """
    try:
        status, body, error = fetch(robots_url(origin))
    except OSError as e:
        return rules_from_response(origin, agent, None, None, f"{type(e).__name__}: {e}")
    return rules_from_response(origin, agent, status, body, error)


def _records(text: str) -> Iterator[tuple[str, str]]:
    """(field, value) of each `field: value` line; field lower-cased with typos mapped, comment dropped."""
    for line in _LINE_BREAK.split(text.removeprefix("\ufeff")):
        field, colon, value = line[:MAX_LINE_CHARS].partition("#")[0].partition(":")
        field = field.strip().lower()
        if colon and field:
            yield _FIELD_ALIASES.get(field, field), value.strip()


def _select(records: Iterable[tuple[str, str]], token: str) -> list[tuple[str, bool]]:
    """Raw (pattern, allow) rules of the groups naming `token`, else of the `*` groups."""
    ours: list[tuple[str, bool]] = []
    star: list[tuple[str, bool]] = []
    named_us = for_us = for_star = reading_agents = False
    for field, value in records:
        if field == "user-agent":
            if not reading_agents:  # a new group starts
                for_us = for_star = False
                reading_agents = True
            if value == "*" or (value[:1] == "*" and value[1:2].isspace()):
                for_star = True
            elif token and _product_token(value) == token:
                for_us = named_us = True
            continue
        reading_agents = False
        if field in ("allow", "disallow") and value:  # an empty value allows everything: no rule
            rule = (value, field == "allow")
            if for_us:
                ours.append(rule)
            if for_star:
                star.append(rule)
    return ours if named_us else star


def _product_token(agent: str) -> str:
    """The RFC 9309 product token, lower-cased: "Curate/2.1" -> "curate" (leading letters, `_` and `-`)."""
    match = _PRODUCT_TOKEN.match(agent.strip())
    return match.group().lower() if match else ""


def _canonical(text: str) -> str:
    """One percent-encoding for equal URLs: `%7e` and `~` -> `~`, `%2f` -> `%2F`, `é` -> `%C3%A9`, ` ` -> `%20`."""
    text = quote(text, safe=_VISIBLE_ASCII, errors="replace")
    return _ESCAPE.sub(_canonical_escape, text) if "%" in text else text


def _canonical_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def _path_of(url: str) -> str:
    """Canonical path and query of a URL or path; the fragment is not sent to servers, so it never counts."""
    parts = urlsplit(url)
    path = parts.path or "/"
    return _canonical(f"{path}?{parts.query}" if parts.query else path)


def _verdict(rules: Iterable[tuple[str, bool]], path: str) -> bool:
    """Longest matching pattern decides, allow on a tie; no match allows."""
    best = (0, True)
    for pattern, allow in rules:
        if (len(pattern), allow) > best and _matches(pattern, path):
            best = (len(pattern), allow)
    return best[1]


def _matches(pattern: str, path: str) -> bool:
    """Does `pattern` (`*` any sequence, `$` at the end anchors) match a prefix of `path` (all of it with `$`)?

    Leftmost-first search of the literal pieces between `*`s is exact for star-only patterns and linear-ish,
    so a hostile pattern like `/*a*a*a*a*b` cannot make a regex backtrack for seconds.
    """
    anchored = pattern.endswith("$")
    pieces = (pattern[:-1] if anchored else pattern).split("*")
    if not path.startswith(pieces[0]):
        return False
    pos = len(pieces[0])
    if len(pieces) == 1:
        return not anchored or pos == len(path)
    for piece in pieces[1:-1]:
        found = path.find(piece, pos)
        if found < 0:
            return False
        pos = found + len(piece)
    last = pieces[-1]
    if anchored:
        return len(path) - len(last) >= pos and path.endswith(last)
    return path.find(last, pos) >= 0
