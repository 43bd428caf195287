import pickle
import time

import pytest

from curate.robots import (
    MAX_BODY_BYTES,
    OK,
    UNAVAILABLE,
    UNREACHABLE,
    RobotsRules,
    fetch_robots,
    origin_of,
    parse_robots,
    robots_url,
    rules_from_response,
)

ORIGIN = "http://example.com"


def allowed(robots_txt: str, path: str, agent: str = "curate") -> bool:
    return parse_robots(robots_txt, agent, ORIGIN).allowed(ORIGIN + path)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://Example.com:80/a?b", "http://example.com"),
        ("HTTPS://example.com:443/", "https://example.com"),
        ("https://example.com:8443/x", "https://example.com:8443"),
        ("http://example.com:443/x", "http://example.com:443"),  # 443 is only https's default
        ("http://user:pw@Img.Example.com/x.jpg#frag", "http://img.example.com"),
        ("http://[::1]:8000/a", "http://[::1]:8000"),
        ("http://127.0.0.1", "http://127.0.0.1"),
    ],
)
def test_origin_of(url: str, origin: str) -> None:
    assert origin_of(url) == origin


@pytest.mark.parametrize("url", ["/just/a/path", "example.com/a", "http://example.com:99999/", "http://[::1/"])
def test_origin_of_rejects_what_is_not_an_absolute_url(url: str) -> None:
    with pytest.raises(ValueError):
        origin_of(url)


def test_robots_url() -> None:
    assert robots_url("https://example.com:8443") == "https://example.com:8443/robots.txt"


# (robots.txt for curate, path, allowed): RFC 9309 section 5 and Google's documented examples.
MATCHING = [
    # the longest match wins, whichever order the rules come in
    ("User-agent: *\nAllow: /p\nDisallow: /\n", "/page", True),
    ("User-agent: *\nDisallow: /\nAllow: /p\n", "/page", True),
    ("User-agent: *\nDisallow: /\nAllow: /p\n", "/other", False),
    ("User-agent: *\nAllow: /folder\nDisallow: /folder\n", "/folder/page", True),  # tie: allow wins
    ("User-agent: *\nDisallow: /folder\nAllow: /folder\n", "/folder/page", True),
    ("User-agent: *\nAllow: /page\nDisallow: /*.html\n", "/page.html", False),  # /*.html is longer
    ("User-agent: *\nAllow: /page\nDisallow: /*.html\n", "/page.php", True),
    ("User-agent: *\nDisallow: /folder/\nAllow: /folder/page\n", "/folder/page", True),
    ("User-agent: *\nDisallow: /folder/\nAllow: /folder/page\n", "/folder/other", False),
    ("User-agent: *\nDisallow: /folder/\nAllow: /folder/page\n", "/folder", True),
    ("User-agent: *\nAllow: /$\nDisallow: /\n", "/", True),
    ("User-agent: *\nAllow: /$\nDisallow: /\n", "/page.htm", False),
    # `*` and `$`
    ("User-agent: *\nDisallow: /*.gif$\n", "/a.gif", False),
    ("User-agent: *\nDisallow: /*.gif$\n", "/dir/b.GIF", True),  # paths are case-sensitive
    ("User-agent: *\nDisallow: /*.gif$\n", "/a.gif?x=1", True),
    ("User-agent: *\nDisallow: /*.gif$\n", "/a.gifs", True),
    ("User-agent: *\nDisallow: /*?\n", "/a?b=1", False),
    ("User-agent: *\nDisallow: /*?\n", "/a", True),
    ("User-agent: *\nDisallow: /fish*\n", "/fish.html", False),
    ("User-agent: *\nDisallow: /fish*\n", "/fishheads/yummy.html", False),
    ("User-agent: *\nDisallow: /fish*\n", "/Fish.asp", True),
    ("User-agent: *\nDisallow: /*php\n", "/folder/any.php.file.html", False),
    ("User-agent: *\nDisallow: /a*b*c$\n", "/axxbyyc", False),
    ("User-agent: *\nDisallow: /a*b*c$\n", "/axxbyycz", True),
    ("User-agent: *\nDisallow: /a*b*c$\n", "/abcbc", False),  # the last piece is anchored at the end
    ("User-agent: *\nDisallow: /a$b\n", "/a$b", False),  # `$` inside a pattern is a plain character
    ("User-agent: *\nDisallow: /a$b\n", "/a", True),
    ("User-agent: *\nDisallow: *.jpg\n", "/img/x.jpg", False),
    ("User-agent: *\nDisallow: /**\n", "/anything", False),
    # empty disallow: nothing is disallowed
    ("User-agent: *\nDisallow:\n", "/anything", True),
    ("User-agent: *\nDisallow: \nDisallow: /x\n", "/x/y", False),
    # percent-encoding equivalence, both ways, hex case ignored
    ("User-agent: *\nDisallow: /%7Ejoe/\n", "/~joe/index.html", False),
    ("User-agent: *\nDisallow: /~joe/\n", "/%7ejoe/index.html", False),
    ("User-agent: *\nDisallow: /a%2fb\n", "/a%2Fb", False),
    ("User-agent: *\nDisallow: /a%2Fb\n", "/a/b", True),  # an encoded slash is not a slash (RFC 3986)
    ("User-agent: *\nDisallow: /foo/bar/%62%61%7A\n", "/foo/bar/baz", False),
    ("User-agent: *\nDisallow: /foo/bar/ツ\n", "/foo/bar/%E3%83%84", False),
    ("User-agent: *\nDisallow: /foo/bar/%e3%83%84\n", "/foo/bar/ツ", False),
    ("User-agent: *\nDisallow: /with space\n", "/with%20space", False),
    # case: paths are case-sensitive, field names are not
    ("User-agent: *\nDisallow: /Private\n", "/private", True),
    ("User-agent: *\nDisallow: /Private\n", "/Private/x", False),
    ("USER-AGENT: *\nDISALLOW: /x\n", "/x", False),
    # robots.txt itself is always allowed; an empty path is "/"
    ("User-agent: *\nDisallow: /\n", "/robots.txt", True),
    ("User-agent: *\nDisallow: /\n", "", False),
    ("User-agent: *\nDisallow: /$\n", "", False),
    ("User-agent: *\nDisallow: /$\n", "/a", True),
    # the fragment is not part of the request; `#` in the file starts a comment
    ("User-agent: *\nDisallow: /*top\n", "/a#top", True),
    ("User-agent: *\nDisallow: /*#top\n", "/a", False),
    # no rules at all
    ("", "/anything", True),
]


@pytest.mark.parametrize(("robots_txt", "path", "expected"), MATCHING)
def test_matching(robots_txt: str, path: str, expected: bool) -> None:
    assert allowed(robots_txt, path) is expected


TWO_GROUPS = "User-agent: *\nDisallow: /star/\n\nUser-agent: curate\nDisallow: /ours/\n"
SPLIT_GROUPS = "User-agent: curate\nDisallow: /a\n\nUser-agent: *\nDisallow: /b\n\nUser-agent: curate\nDisallow: /c\n"

# (robots.txt, agent, path, allowed)
GROUPS = [
    (TWO_GROUPS, "curate", "/ours/x", False),
    (TWO_GROUPS, "curate", "/star/x", True),  # our group replaces `*`: its rules do not leak in
    (TWO_GROUPS, "otherbot", "/star/x", False),
    (TWO_GROUPS, "otherbot", "/ours/x", True),
    (TWO_GROUPS, "Curate", "/ours/x", False),  # our token is case-insensitive
    ("User-agent: CURATE\nDisallow: /x\n", "curate", "/x", False),  # and so is theirs
    ("User-agent: curate/2.1\nDisallow: /x\n", "curate", "/x", False),  # product token before `/`
    ("User-agent: Curate 2.1\nDisallow: /x\n", "curate", "/x", False),
    ("User-agent: curatebot\nDisallow: /x\n", "curate", "/x", True),  # another crawler: no prefix match
    ("User-agent: curate-bot\nDisallow: /x\n", "curate", "/x", True),
    ("User-agent: cura\nDisallow: /x\n", "curate", "/x", True),
    ("User-agent: curate\nDisallow: /x\n", "curate/1.0", "/x", False),  # our own token is reduced too
    # groups naming us are merged, wherever they are
    (SPLIT_GROUPS, "curate", "/c", False),
    (SPLIT_GROUPS, "curate", "/a", False),
    (SPLIT_GROUPS, "curate", "/b", True),
    ("User-agent: curate\nDisallow: /\nUser-agent: curate\nAllow: /ok\n", "curate", "/ok/1", True),  # merged
    # several user-agent lines share one group, blank lines between them or not
    ("User-agent: a\nUser-agent: curate\n\nUser-agent: b\nDisallow: /x\n", "curate", "/x", False),
    ("User-agent: a\nUser-agent: curate\nUser-agent: b\nDisallow: /x\n", "b", "/x", False),
    ("User-agent: a\nUser-agent: curate\nDisallow: /x\nUser-agent: b\nDisallow: /y\n", "curate", "/y", True),
    ("User-agent: curate\nUser-agent: *\nDisallow: /x\n", "otherbot", "/x", False),
    # `*` is the fallback, also written with a trailing comment-like word
    ("User-agent: *\nDisallow: /x\n", "curate", "/x", False),
    ("User-agent: * everyone\nDisallow: /x\n", "curate", "/x", False),
    # no group for us and no `*`: everything allowed
    ("User-agent: otherbot\nDisallow: /\n", "curate", "/x", True),
    # a group naming us without rules (or an empty disallow) still replaces `*`
    ("User-agent: *\nDisallow: /\n\nUser-agent: curate\nDisallow:\n", "curate", "/x", True),
    ("User-agent: *\nDisallow: /\n\nUser-agent: curate\n", "curate", "/x", True),
    # any other record ends a run of user-agent lines (Google's reading): curate's group here is empty
    ("User-agent: curate\nCrawl-delay: 5\nUser-agent: otherbot\nDisallow: /\n", "curate", "/x", True),
    ("User-agent: curate\nCrawl-delay: 5\nUser-agent: otherbot\nDisallow: /\n", "otherbot", "/x", False),
    # other records inside a group do not end it
    ("User-agent: curate\nDisallow: /a\nSitemap: http://example.com/s.xml\nDisallow: /b\n", "curate", "/b", False),
]


@pytest.mark.parametrize(("robots_txt", "agent", "path", "expected"), GROUPS)
def test_group_selection(robots_txt: str, agent: str, path: str, expected: bool) -> None:
    assert allowed(robots_txt, path, agent) is expected


def test_selected_rules_are_kept_in_file_order_in_canonical_form() -> None:
    text = "User-agent: curate\nDisallow: /%7ea\nUser-agent: *\nDisallow: /star\nUser-agent: curate\nAllow: /é\n"
    assert parse_robots(text, "curate", ORIGIN) == RobotsRules(ORIGIN, OK, (("/~a", False), ("/%C3%A9", True)))


# (robots.txt, path, allowed): the file is read leniently and never raises
ROBUSTNESS = [
    ("User-agent: *\nDisallow: /x", "/x", False),  # no trailing newline
    ("User-agent: *\r\nDisallow: /x\r\n", "/x", False),  # CRLF
    ("User-agent: *\rDisallow: /x\r", "/x", False),  # old Mac CR
    ("\ufeffUser-agent: *\nDisallow: /x\n", "/x", False),  # BOM
    ("  user-agent :\t*  \n\tDISALLOW:   /x   \n", "/x", False),  # whitespace everywhere
    ("User-agent: * # everyone\nDisallow: /x # not /y\n", "/y", True),  # comments
    ("User-agent: * # everyone\nDisallow: /x # not /y\n", "/x", False),
    ("# User-agent: curate\n# Disallow: /\n", "/x", True),
    ("Disallow: /x\nUser-agent: *\nDisallow: /y\n", "/x", True),  # rules before any user-agent: ignored
    ("Disallow: /x\nUser-agent: *\nDisallow: /y\n", "/y", False),
    ("User-agent: *\nthis is not a rule\n:/x\nDisallow /x\nNoindex: /y\n\x00\x01:\nDisallow: /z\n", "/x", True),
    ("User-agent: *\nthis is not a rule\n:/x\nDisallow /x\nNoindex: /y\n\x00\x01:\nDisallow: /z\n", "/z", False),
    ("<html><body>Not found</body></html>", "/x", True),  # a soft 404 page
    ("User-agent: *\nDisalow: /x\n", "/x", False),  # a common typo Google honours
    ("Useragent: *\nDisallow: /x\n", "/x", False),
    ("User-agent: *\nDisallow: /a:b\n", "/a:b", False),  # the value may hold colons
    ("User-agent: *\nDisallow: /\udcff\n", "/x", True),  # a lone surrogate does not raise
    ("User-agent: *\nDisallow: /" + "a" * 20_000 + "\n", "/" + "a" * 100, True),  # cut at 16 KiB
    ("User-agent: *\nDisallow: /" + "a" * 20_000 + "\n", "/" + "a" * 20_000, False),
]


@pytest.mark.parametrize(("robots_txt", "path", "expected"), ROBUSTNESS)
def test_robustness(robots_txt: str, path: str, expected: bool) -> None:
    assert allowed(robots_txt, path) is expected


def test_a_one_megabyte_file_parses_quickly() -> None:
    lines = ["User-agent: *"] + [f"Disallow: /dir{i}/*.php$  # rule {i}" for i in range(40_000)]
    text = "\n".join([*lines, "Allow: /dir7/ok-here.php", ""])
    assert len(text) > 1_000_000
    start = time.perf_counter()
    rules = parse_robots(text, "curate", ORIGIN)
    assert time.perf_counter() - start < 0.5
    assert len(rules.rules) == 40_001
    assert not rules.allowed(ORIGIN + "/dir39999/x.php")
    assert rules.allowed(ORIGIN + "/dir7/ok-here.php")  # longer than /dir7/*.php$
    assert not rules.allowed(ORIGIN + "/dir7/other.php")
    assert rules.allowed(ORIGIN + "/dir1/x.php?y")


def test_hostile_wildcards_stay_fast() -> None:
    rules = parse_robots("User-agent: *\nDisallow: /" + "*a" * 200 + "*b$\n", "curate", ORIGIN)
    start = time.perf_counter()
    assert rules.allowed(ORIGIN + "/" + "a" * 5_000)
    assert time.perf_counter() - start < 0.5


# (status, body, error, expected status, expected detail, /x allowed)
RESPONSES = [
    (200, b"User-agent: *\nDisallow: /x\n", "", OK, "", False),
    (200, b"User-agent: *\nDisallow: /y\n", "", OK, "", True),
    (204, None, "", OK, "", True),
    (200, b"User-agent: *\nDisallow: /\xff\xfex\n", "", OK, "", True),  # invalid UTF-8: replaced, not raised
    (404, b"<html>not found</html>", "", UNAVAILABLE, "HTTP 404", True),
    (403, None, "", UNAVAILABLE, "HTTP 403", True),
    (401, None, "", UNAVAILABLE, "HTTP 401", True),
    (410, None, "", UNAVAILABLE, "HTTP 410", True),
    (301, None, "", UNAVAILABLE, "HTTP 301", True),  # redirects left unresolved (over 5 hops)
    (429, None, "", UNREACHABLE, "HTTP 429", False),  # "slow down" is not "no rules"
    (500, b"User-agent: *\nAllow: /\n", "", UNREACHABLE, "HTTP 500", False),
    (503, None, "", UNREACHABLE, "HTTP 503", False),
    (None, None, "timeout", UNREACHABLE, "timeout", False),
    (None, None, "", UNREACHABLE, "network error", False),
]


@pytest.mark.parametrize(("status", "body", "error", "outcome", "detail", "x_allowed"), RESPONSES)
def test_rules_from_response(
    status: int | None, body: bytes | None, error: str, outcome: str, detail: str, x_allowed: bool
) -> None:
    rules = rules_from_response(ORIGIN, "curate", status, body, error)
    assert (rules.origin, rules.status, rules.detail) == (ORIGIN, outcome, detail)
    assert rules.allowed(ORIGIN + "/x") is x_allowed
    assert rules.allowed(ORIGIN + "/robots.txt")  # always, whatever the outcome


def test_only_the_first_500_kib_of_a_body_are_read() -> None:
    head = b"User-agent: *\nDisallow: /early\n"
    body = head + b"#" * (MAX_BODY_BYTES - len(head)) + b"\nDisallow: /late\n"
    rules = rules_from_response(ORIGIN, "curate", 200, body)
    assert rules.status == OK
    assert rules.rules == (("/early", False),)
    assert rules.detail == f"body truncated to {MAX_BODY_BYTES} of {len(body)} bytes"
    assert rules.allowed(ORIGIN + "/late")


class FakeFetch:
    def __init__(self, status: int | None, body: bytes | None = None, error: str = "") -> None:
        self.answer = (status, body, error)
        self.calls: list[str] = []

    def __call__(self, url: str) -> tuple[int | None, bytes | None, str]:
        self.calls.append(url)
        return self.answer


@pytest.mark.parametrize(
    ("answer", "outcome", "x_allowed"),
    [
        ((200, b"User-agent: curate\nDisallow: /x\n", ""), OK, False),
        ((404, None, ""), UNAVAILABLE, True),
        ((403, None, ""), UNAVAILABLE, True),
        ((500, None, ""), UNREACHABLE, False),
        ((503, None, ""), UNREACHABLE, False),
        ((None, None, "connection refused"), UNREACHABLE, False),
    ],
)
def test_fetch_robots_asks_once(answer: tuple[int | None, bytes | None, str], outcome: str, x_allowed: bool) -> None:
    fetch = FakeFetch(*answer)
    rules = fetch_robots("https://example.com:8443", "curate", fetch)
    assert fetch.calls == ["https://example.com:8443/robots.txt"]
    assert rules.status == outcome
    assert rules.allowed("https://example.com:8443/x") is x_allowed


def test_a_fetch_that_raises_a_network_error_means_unreachable() -> None:
    def fetch(url: str) -> tuple[int | None, bytes | None, str]:
        raise TimeoutError("timed out")

    rules = fetch_robots(ORIGIN, "curate", fetch)
    assert (rules.status, rules.detail) == (UNREACHABLE, "TimeoutError: timed out")
    assert not rules.allowed(ORIGIN + "/x")


SAMPLE_PRIVATE = "User-agent: *\nDisallow: /private/\n"
SAMPLE_EMBARGO = "User-agent: *\nDisallow: /admin/\n\nUser-agent: curate\nDisallow: /embargo/\n"


@pytest.mark.parametrize(
    ("robots_txt", "agent", "path", "expected"),
    [
        (SAMPLE_PRIVATE, "curate", "/private/x", False),
        (SAMPLE_PRIVATE, "curate", "/public/x", True),
        (SAMPLE_EMBARGO, "curate", "/embargo/x", False),
        (SAMPLE_EMBARGO, "otherbot", "/embargo/x", True),
        (SAMPLE_EMBARGO, "curate", "/admin/x", True),  # our own group replaces `*`
        (SAMPLE_EMBARGO, "otherbot", "/admin/x", False),
    ],
)
def test_sample_crawl_files(robots_txt: str, agent: str, path: str, expected: bool) -> None:
    assert allowed(robots_txt, path, agent) is expected


@pytest.mark.parametrize(
    "rules",
    [
        parse_robots(SAMPLE_EMBARGO, "curate", ORIGIN),
        rules_from_response(ORIGIN, "curate", 503, None),
        rules_from_response(ORIGIN, "curate", 404, None),
    ],
)
def test_rules_pickle(rules: RobotsRules) -> None:
    copy = pickle.loads(pickle.dumps(rules))
    assert copy == rules
    assert copy.allowed(ORIGIN + "/embargo/x") is rules.allowed(ORIGIN + "/embargo/x")


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError):
        RobotsRules(ORIGIN, "maybe", ())
