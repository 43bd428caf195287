import hashlib

import pytest

from curate.urls import normalize_url, url_key


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTP://Example.COM/a.jpg", "http://example.com/a.jpg"),
        ("http://example.com:80/a.jpg", "http://example.com/a.jpg"),
        ("https://example.com:443/a.jpg", "https://example.com/a.jpg"),
        ("http://example.com:8080/a.jpg", "http://example.com:8080/a.jpg"),
        ("http://example.com", "http://example.com/"),
        ("http://example.com/a.jpg#frag", "http://example.com/a.jpg"),
        ("http://example.com/%7Euser/%41.jpg", "http://example.com/~user/A.jpg"),
        ("http://example.com/caf%c3%a9.jpg", "http://example.com/caf%C3%A9.jpg"),
        ("http://example.com/café.jpg", "http://example.com/caf%C3%A9.jpg"),
        ("http://example.com/a b.jpg", "http://example.com/a%20b.jpg"),
        ("http://example.com/a/./b/../c.jpg", "http://example.com/a/c.jpg"),
        ("http://example.com/../../c.jpg", "http://example.com/c.jpg"),
        ("http://example.com/dir/", "http://example.com/dir/"),
        ("http://example.com/a%2Fb.jpg", "http://example.com/a%2Fb.jpg"),  # an encoded slash stays encoded
        ("http://example.com/a.jpg?w=1&h=2", "http://example.com/a.jpg?w=1&h=2"),  # query order kept
        ("http://example.com/a.jpg?q=%e2%9c%93", "http://example.com/a.jpg?q=%E2%9C%93"),
        ("http://bücher.example/a.jpg", "http://xn--bcher-kva.example/a.jpg"),
        ("http://[::1]:8080/a.jpg", "http://[::1]:8080/a.jpg"),
        ("http://127.0.0.1:18701/img/x.jpg", "http://127.0.0.1:18701/img/x.jpg"),
        ("  http://example.com/a.jpg  ", "http://example.com/a.jpg"),
        ("http://example.com/100%.jpg", "http://example.com/100%25.jpg"),
        # Hosts through UTS 46 / IDNA 2008, non-transitional (what browsers resolve): sharp s is its own
        # letter (IDNA 2003 mapped it to "ss": another domain), full-width and compatibility forms map.
        ("http://faß.de/x.jpg", "http://xn--fa-hia.de/x.jpg"),
        ("http://xn--fa-hia.de/x.jpg", "http://xn--fa-hia.de/x.jpg"),
        ("http://BÜCHER.de/", "http://xn--bcher-kva.de/"),
        ("http://ＥＸＡＭＰＬＥ.com/", "http://example.com/"),
        ("http://example。com/", "http://example.com/"),
        ("http://Ⅷ.com/", "http://viii.com/"),
        ("http://a_b.Example.com/x.jpg", "http://a_b.example.com/x.jpg"),  # ASCII names as they are, lower-cased
        # Dot segments exactly as RFC 3986 section 5.2.4 removes them (paths of its 5.4 examples); empty
        # segments are kept: "/a//b/../c" is "/a//c", not "/a/c".
        ("http://example.com/a//b/../c", "http://example.com/a//c"),
        ("http://example.com/a/b/c/./../../g", "http://example.com/a/g"),  # section 5.2.4's own example
        ("http://a/mid/content=5/../6", "http://a/mid/6"),
        ("http://a/b/c/../../../g", "http://a/g"),
        ("http://a/./g", "http://a/g"),
        ("http://a/b/c/g.", "http://a/b/c/g."),
        ("http://a/b/c/.g", "http://a/b/c/.g"),
        ("http://a/b/c/g..", "http://a/b/c/g.."),
        ("http://a/b/c/..g", "http://a/b/c/..g"),
        ("http://a/b/c/./../g", "http://a/b/g"),
        ("http://a/b/c/./g/.", "http://a/b/c/g/"),
        ("http://a/b/c/g/./h", "http://a/b/c/g/h"),
        ("http://a/b/c/g/../h", "http://a/b/c/h"),
        ("http://a/b/c/..", "http://a/b/"),
        ("http://a//", "http://a//"),
    ],
)
def test_normalize_url(raw: str, expected: str) -> None:
    assert normalize_url(raw) == expected


def test_normalize_is_idempotent() -> None:
    for raw in ("HTTP://Example.COM:80/./a/../caf%c3%a9 x.jpg?q=%7e#f", "http://bücher.example/ä?x=ö"):
        once = normalize_url(raw)
        assert normalize_url(once) == once


@pytest.mark.parametrize("raw", ["http:///nohost.jpg", "http://127.0.0.1:99999/x.jpg", "/relative/only.jpg"])
def test_invalid_urls_raise(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_url(raw)


def test_keys_are_stable_lowercase_hex() -> None:
    key = url_key("http://example.com/a.jpg")
    assert key == url_key("http://example.com/a.jpg")
    assert len(key) == 32 and set(key) <= set("0123456789abcdef")
    assert key != url_key("http://example.com/b.jpg")
    assert key == hashlib.sha256(b"http://example.com/a.jpg").hexdigest()[:32]
