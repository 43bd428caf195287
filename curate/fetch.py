"""The HTTP client img2dataset downloads through, with what img2dataset lacks.

img2dataset's `Downloader` fetches with `urllib.request.urlopen`, so the opener installed here governs
every request it makes, redirects included (tests/test_netguard.py checks it). The opener adds:
- the SSRF guard (curate.netguard): every connection, first hop or redirect, goes to a checked address;
- a cap on bytes per image, checked against Content-Length before reading and while reading (a body
  without a length, or that lies, is cut at the cap), and a total deadline per request, redirects
  included (img2dataset's timeout is per socket read: a server trickling a byte a second never trips it);
- a magic-byte check on the first bytes: content that is no image is refused whatever its Content-Type;
- a redirect limit (5 hops).
Refusals raise `FetchRefused` whose message starts with `curate:<reason>`, so the reason survives
img2dataset's `str(err)` into its error column; `classify` turns any error message into a reason code.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.response import addinfourl

from curate import reasons as R
from curate.mime import SNIFF_BYTES, sniff
from curate.netguard import AddressPolicy, guarded_handlers
from curate.robots import MAX_BODY_BYTES, RobotsRules, fetch_robots, origin_of, refusal, robots_url

_CHUNK = 1 << 16
MAX_REDIRECTS = 5
# Retrying these may succeed; the others are answers (404, robots, opt-out, not an image...).
RETRYABLE = frozenset({R.TIMEOUT, R.CONNECTION_ERROR, R.INCOMPLETE_BODY, R.ROBOTS_UNREACHABLE, "http_429",
                       "http_500", "http_502", "http_503", "http_504"})

class FetchRefused(OSError):
    """A response we will not take; the message starts with `curate:<reason>`."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"curate:{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class FetchPolicy:
    timeout: float = 10.0  # per socket operation
    deadline: float = 30.0  # per request, redirects included
    max_bytes: int = 20 * 1024 * 1024
    allow: tuple[str, ...] = ()  # addresses exempt from the SSRF guard (the local sample crawl)
    agent: str = "curate"  # our product token: User-Agent, and the robots.txt group redirects are checked against
    address_policy: AddressPolicy = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "address_policy", AddressPolicy(self.allow))


_started = threading.local()  # when the current thread's request began (img2dataset: one request a thread)


class _Body:
    """A response body read under the cap and the deadline, sniffed once its first bytes are in.

    Reads use `read1` (whatever one receive returns): a plain read of 64 KiB from a server trickling a byte
    a second would block for hours, each receive well inside the socket timeout.
    """

    def __init__(self, response: Any, policy: FetchPolicy, started: float):
        self.response, self.policy, self.started = response, policy, started
        self.received = 0
        self.head: bytes | None = b""  # None once sniffed

    def read(self, amt: int | None = -1) -> bytes:
        whole = amt is None or amt < 0
        limit = self.policy.max_bytes + 1 if whole else int(amt)  # type: ignore[arg-type]
        parts: list[bytes] = []
        size = 0
        while size < limit:
            if time.monotonic() - self.started > self.policy.deadline:
                raise FetchRefused(R.TIMEOUT, f"deadline of {self.policy.deadline:g} s exceeded")
            chunk = self.response.read1(min(_CHUNK, limit - size))
            if not chunk:
                missing = getattr(self.response, "length", None)  # http.client: bytes still owed by Content-Length
                if missing:
                    raise FetchRefused(R.INCOMPLETE_BODY, f"connection closed {missing} bytes short of Content-Length")
                break
            self._sniff(chunk, end=False)
            parts.append(chunk)
            size += len(chunk)
            self.received += len(chunk)
            if self.received > self.policy.max_bytes:
                raise FetchRefused(R.TOO_LARGE, f"body exceeds {self.policy.max_bytes} bytes")
            if not whole:
                break
        if not parts:
            self._sniff(b"", end=True)
        return b"".join(parts)

    def _sniff(self, chunk: bytes, end: bool) -> None:
        if self.head is None:
            return
        self.head += chunk
        if len(self.head) < SNIFF_BYTES and not end:
            return
        if sniff(self.head) is None:
            ctype = self.response.headers.get("Content-Type", "")
            raise FetchRefused(R.NOT_AN_IMAGE, f"content is not an image (Content-Type {ctype!r})")
        self.head = None

    @property
    def closed(self) -> bool:
        return bool(self.response.closed)

    def close(self) -> None:
        self.response.close()


class _Limits(urllib.request.BaseHandler):
    """Stamps each request with its start, and wraps each successful response's body in `_Body`."""

    handler_order = 1001  # after HTTPErrorProcessor: only 2xx responses reach http_response here

    def __init__(self, policy: FetchPolicy):
        self.policy = policy

    def http_request(self, request: urllib.request.Request) -> urllib.request.Request:
        if not getattr(request, "curate_redirect", False):
            _started.value = time.monotonic()
        return request

    https_request = http_request

    def http_response(self, request: urllib.request.Request, response: Any) -> Any:
        if isinstance(getattr(response, "fp", None), _Body):
            return response  # the final hop of a redirect, already wrapped when it was opened
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.policy.max_bytes:
            response.close()
            raise FetchRefused(R.TOO_LARGE, f"Content-Length {declared} exceeds {self.policy.max_bytes} bytes")
        body = _Body(response, self.policy, getattr(_started, "value", time.monotonic()))
        wrapped = addinfourl(body, response.headers, response.url, response.status)  # type: ignore[arg-type]
        return wrapped

    https_response = http_response


class RobotsCache:
    """robots.txt rules per origin for this process, each origin fetched once: shared by the download stage's
    robots step and by the opener's redirect check (thread-safe: img2dataset fetches from a thread pool)."""

    def __init__(self) -> None:
        self._rules: dict[str, RobotsRules] = {}
        self._origins: dict[str, threading.Lock] = {}  # one per origin: its robots.txt is asked once, not per thread
        self._lock = threading.Lock()

    def rules(self, origin: str, policy: FetchPolicy) -> RobotsRules:
        with self._lock:
            origin_lock = self._origins.setdefault(origin, threading.Lock())
        with origin_lock:
            if origin not in self._rules:
                self._rules[origin] = fetch_robots(origin, policy.agent, RobotsGet(policy, policy.agent))
            return self._rules[origin]

    def clear(self) -> None:
        """Forget every origin: a new run asks again (an outage may be over)."""
        with self._lock:
            self._rules.clear()
            self._origins.clear()


ROBOTS = RobotsCache()


class _Redirects(urllib.request.HTTPRedirectHandler):
    """At most MAX_REDIRECTS hops; each hop's target must be allowed by its origin's robots.txt (the first URL
    was checked before the request): a redirect into a disallowed path, or to an origin whose robots.txt
    disallows us, is refused before it is followed."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, policy: FetchPolicy):
        super().__init__()
        self.policy = policy

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            try:
                origin = origin_of(new.full_url)
            except ValueError:
                origin = ""
            rules = ROBOTS.rules(origin, self.policy) if origin else None
            if rules is not None and not rules.allowed(new.full_url):
                fp.close()
                detail = f"{rules.status}{': ' + rules.detail if rules.detail else ''}"
                raise FetchRefused(refusal(rules), f"redirect to {new.full_url}: {robots_url(origin)} ({detail})")
            setattr(new, "curate_redirect", True)  # noqa: B010 - the deadline keeps counting from the first hop
        return new


def build_opener(policy: FetchPolicy) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(*guarded_handlers(policy.address_policy), _Redirects(policy),
                                       _Limits(policy))


def install(policy: FetchPolicy) -> None:
    """Make every urllib request of this process (img2dataset's included) go through our opener."""
    urllib.request.install_opener(build_opener(policy))


_HTTP = re.compile(r"HTTP Error (\d{3})")


def classify(message: str | None) -> str:
    """Reason code for an error message from img2dataset's error column (None or '' means ok)."""
    if not message:
        return R.KEPT
    ours = re.search(r"curate:(\w+)", message)
    if ours:
        return ours.group(1)
    if "infinite loop" in message or "redirect" in message.lower() and "too many" in message.lower():
        return R.TOO_MANY_REDIRECTS
    status = _HTTP.search(message)
    if status:
        return R.http_status(int(status.group(1)))
    if "X-Robots-Tag" in message:
        return R.HEADER_OPTOUT
    if "IncompleteRead" in message or "incomplete" in message.lower():
        return R.INCOMPLETE_BODY
    if "timed out" in message.lower() or "timeout" in message.lower():
        return R.TIMEOUT
    if "blocked address" in message:
        return R.BLOCKED_ADDRESS
    return R.CONNECTION_ERROR


class RobotsGet:
    """GET a robots.txt through the SSRF guard only (it is no image: no magic check; its first MAX_BODY_BYTES
    are read): `(status, body, error)` as `curate.robots.fetch_robots` reads it; any failure is an error."""

    def __init__(self, policy: FetchPolicy, agent_token: str):
        self.timeout, self.agent = policy.timeout, f"Mozilla/5.0 (compatible; {agent_token})"
        self.opener = urllib.request.build_opener(*guarded_handlers(policy.address_policy))

    def __call__(self, url: str) -> tuple[int | None, bytes | None, str]:
        request = urllib.request.Request(url, headers={"User-Agent": self.agent})
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return response.status, response.read(MAX_BODY_BYTES), ""
        except urllib.error.HTTPError as e:
            return e.code, None, str(e)
        except Exception as e:  # noqa: BLE001 - any failure to fetch robots.txt means "unreachable"
            return None, None, f"{type(e).__name__}: {e}"
