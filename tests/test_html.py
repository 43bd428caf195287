import pytest

from curate.html import codec_for, decode_html, largest_srcset, parse_page, srcset_candidates


@pytest.mark.parametrize(
    ("body", "content_type", "codec", "text"),
    [
        ("café".encode("cp1252"), "text/html; charset=windows-1252", "cp1252", "café"),
        ("café".encode("cp1252"), "text/html; charset=ISO-8859-1", "cp1252", "café"),  # WHATWG: latin-1 is 1252
        ('<meta charset="shift_jis"><p>東京'.encode("cp932"), "text/html", "cp932", "東京"),
        ('<meta http-equiv="Content-Type" content="text/html; charset=gb2312"><p>中文'.encode("gbk"), "", "gbk", "中文"),
        ("\ufeffhé".encode("utf-8"), "text/html; charset=cp1252", "utf-8", "hé"),  # the BOM wins
        ("naïve".encode(), "text/html", "utf-8", "naïve"),  # undeclared, valid UTF-8
        ("naïve".encode("cp1252"), "text/html", "cp1252", "naïve"),  # undeclared, not UTF-8: browsers' fallback
        (b"ok", "text/html; charset=no-such-charset", "utf-8", "ok"),
    ],
)
def test_charset(body: bytes, content_type: str, codec: str, text: str) -> None:
    decoded, used = decode_html(body, content_type)
    assert used == codec and text in decoded


def test_http_charset_beats_meta() -> None:
    body = '<meta charset="utf-8"><p>café'.encode("cp1252")
    assert decode_html(body, "text/html; charset=windows-1252")[1] == "cp1252"


def test_codec_labels() -> None:
    assert codec_for("Shift_JIS") == "cp932" and codec_for('"UTF-8"') == "utf-8" and codec_for("bogus") is None


@pytest.mark.parametrize(
    ("srcset", "largest"),
    [
        ("a.jpg 320w, b.jpg 640w, c.jpg 1024w", "c.jpg"),
        ("c.jpg 1024w, a.jpg 320w", "c.jpg"),
        ("a.jpg, b.jpg 2x, c.jpg 1.5x", "b.jpg"),
        ("https://res.example/w_300,h_200/x.jpg 300w, https://res.example/w_900,h_600/x.jpg 900w",
         "https://res.example/w_900,h_600/x.jpg"),
        ("  one.jpg  ", "one.jpg"),
        ("", None),
    ],
)
def test_largest_srcset(srcset: str, largest: str | None) -> None:
    assert largest_srcset(srcset) == largest


def test_srcset_candidates_keep_commas_inside_urls() -> None:
    assert [c[0] for c in srcset_candidates("a,b.jpg 1x,c.jpg 2x")] == ["a,b.jpg", "c.jpg"]


def test_parse_page_finds_every_kind_of_image() -> None:
    html = b"""<!doctype html><html><head><base href="/static/"><meta name="ROBOTS" content="NoAI, index">
    </head><body>
    <IMG SRC=plain.jpg ALT="caf&eacute; &amp; cr&#232;me" title=" spaced   out ">
    <img src="small.jpg" srcset="small.jpg 320w, big.jpg 1280w" alt="responsive">
    <img src="data:image/gif;base64,R0lGOD" data-src="lazy.jpg" alt="lazy">
    <img data-lazy-srcset="l1.jpg 1x, l2.jpg 2x">
    <picture><source srcset="p1.webp 600w, p2.webp 1200w"><img src="p.jpg"></picture>
    <div><img src="unclosed.jpg" alt=a></span></div><img src="first.jpg" src="second.jpg">
    </body></html>"""
    page = parse_page(html, "text/html")
    assert page.base_href == "/static/" and page.robots == ("noai, index",)
    found = [(i.raw, i.attr, i.alt) for i in page.images]
    assert found == [
        ("plain.jpg", "src", "café & crème"),
        ("small.jpg", "src", "responsive"), ("big.jpg", "srcset", "responsive"),
        ("data:image/gif;base64,R0lGOD", "src", "lazy"), ("lazy.jpg", "data-src", "lazy"),
        ("l2.jpg", "data-lazy-srcset", ""),
        ("p2.webp", "source-srcset", ""), ("p.jpg", "src", ""),
        ("unclosed.jpg", "src", "a"), ("first.jpg", "src", ""),
    ]
    assert page.images[0].title == "spaced out"
