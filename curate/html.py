"""Decode an HTML page and find its images, the way a browser would.

Charset: byte-order mark, then the HTTP `Content-Type` charset, then `<meta charset>` /
`<meta http-equiv>` in the first 1024 bytes (read with the HTML parser, not a regular expression), then
UTF-8 if the bytes are valid UTF-8, else windows-1252 (what browsers fall back to). Labels are mapped as
the WHATWG Encoding standard maps them (`iso-8859-1` is windows-1252, `shift_jis` is windows-31j ...).

Parsing: lexbor (through selectolax), an HTML5 parser, so malformed markup, repeated attributes and
entities come out as browsers see them. Per `<img>` we take `src`, the largest `srcset` candidate, and
the lazy-loading variants (`data-src`, `data-lazy-src`, `data-original`, `data-srcset` ...), each with
the element's `alt` and `title`; `<picture><source srcset>` candidates too. URLs are returned raw (as
written, entities decoded): resolving and normalizing them is the caller's job.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser

LAZY_ATTRS = ("data-src", "data-lazy-src", "data-original", "data-lazy", "data-url")
LAZY_SRCSET_ATTRS = ("data-srcset", "data-lazy-srcset")
MAX_TEXT = 1000  # alt/title longer than this are cut: captions, not essays

# WHATWG encoding labels whose Python codec differs (the rest are looked up by name).
_LABELS = {
    "iso-8859-1": "cp1252", "iso8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "l1": "cp1252",
    "us-ascii": "cp1252", "ascii": "cp1252", "windows-1252": "cp1252", "x-cp1252": "cp1252",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932", "ms_kanji": "cp932",
    "windows-31j": "cp932", "csshiftjis": "cp932",
    "gb2312": "gbk", "gb_2312-80": "gbk", "x-gbk": "gbk", "chinese": "gbk",
    "euc-kr": "cp949", "ks_c_5601-1987": "cp949", "utf8": "utf-8", "unicode-1-1-utf-8": "utf-8",
    "tis-620": "cp874", "iso-8859-11": "cp874", "iso-8859-9": "cp1254", "latin5": "cp1254",
}


@dataclass(frozen=True)
class ImgCandidate:
    raw: str  # URL as written (entities decoded, surrounding whitespace kept for the resolver)
    attr: str  # src | srcset | data-src ... | source-srcset
    alt: str
    title: str


@dataclass(frozen=True)
class ParsedPage:
    charset: str  # the Python codec used
    base_href: str | None
    robots: tuple[str, ...]  # contents of <meta name="robots"> (lower-cased)
    images: tuple[ImgCandidate, ...]


def codec_for(label: str | None) -> str | None:
    """Python codec for an encoding label, or None if unknown."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    if label in _LABELS:
        return _LABELS[label]
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def _content_type_charset(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset":
            return codec_for(value)
    return None


def _meta_charset(head: bytes) -> str | None:
    """HTML's prescan, done by the parser on the first 1024 bytes read as Latin-1."""
    tree = LexborHTMLParser(head[:1024].decode("latin-1"))
    for meta in tree.css("meta"):
        attrs = meta.attributes
        if attrs.get("charset"):
            return codec_for(attrs["charset"])
        if (attrs.get("http-equiv") or "").lower() == "content-type" and attrs.get("content"):
            found = _content_type_charset(attrs["content"] or "")
            if found:
                return found
    return None


def decode_html(body: bytes, content_type: str = "") -> tuple[str, str]:
    """The page as text and the codec used."""
    for bom, name in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if body.startswith(bom):
            return body[len(bom):].decode(name, "replace"), name
    codec = _content_type_charset(content_type) or _meta_charset(body)
    if codec in ("utf-16", "utf-16-le", "utf-16-be", "utf_16"):  # a meta tag read as ASCII cannot be UTF-16
        codec = "utf-8"
    if codec:
        return body.decode(codec, "replace"), codec
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return body.decode("cp1252", "replace"), "cp1252"


def srcset_candidates(srcset: str) -> list[tuple[str, float, str]]:
    """(url, size, unit) per candidate of a srcset, parsed as the HTML standard does (URLs may hold commas)."""
    out: list[tuple[str, float, str]] = []
    i, n = 0, len(srcset)
    while i < n:
        while i < n and (srcset[i].isspace() or srcset[i] == ","):
            i += 1
        start = i
        while i < n and not srcset[i].isspace():
            i += 1
        url = srcset[start:i]
        if not url:
            break
        descriptor = ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            start, depth = i, 0
            while i < n and (srcset[i] != "," or depth):
                depth += {"(": 1, ")": -1}.get(srcset[i], 0)
                i += 1
            descriptor = srcset[start:i].strip()
        size, unit = 1.0, "x"
        token = descriptor.split()[0] if descriptor else ""
        if token[-1:] in ("w", "x", "h"):
            try:
                size, unit = float(token[:-1]), token[-1]
            except ValueError:
                pass
        out.append((url, size, unit))
    return out


def largest_srcset(srcset: str) -> str | None:
    """The candidate a browser on the largest screen would pick: widest `w`, else highest density."""
    candidates = srcset_candidates(srcset)
    if not candidates:
        return None
    widths = [c for c in candidates if c[2] == "w"]
    pool = widths or [c for c in candidates if c[2] == "x"] or candidates
    return max(pool, key=lambda c: c[1])[0]


def _text(value: str | None) -> str:
    return " ".join((value or "").split())[:MAX_TEXT]


def _img_candidates(attrs: dict[str, str | None], alt: str, title: str) -> list[ImgCandidate]:
    out = []
    if attrs.get("src"):
        out.append(ImgCandidate(attrs["src"] or "", "src", alt, title))
    for name in ("srcset",) + LAZY_SRCSET_ATTRS:
        value = attrs.get(name)
        best = largest_srcset(value) if value else None
        if best:
            out.append(ImgCandidate(best, name, alt, title))
    for name in LAZY_ATTRS:
        if attrs.get(name):
            out.append(ImgCandidate(attrs[name] or "", name, alt, title))
    return out


def parse_page(body: bytes, content_type: str = "") -> ParsedPage:
    text, codec = decode_html(body, content_type)
    tree = LexborHTMLParser(text)
    base = tree.css_first("base[href]")
    robots = tuple(
        (m.attributes.get("content") or "").lower()
        for m in tree.css("meta[name]")
        if (m.attributes.get("name") or "").strip().lower() == "robots"
    )
    images: list[ImgCandidate] = []
    for node in tree.css("img, picture > source"):
        attrs = node.attributes
        if node.tag == "source":
            best = largest_srcset(attrs.get("srcset") or "")
            if best:
                images.append(ImgCandidate(best, "source-srcset", "", ""))
            continue
        images += _img_candidates(attrs, _text(attrs.get("alt")), _text(attrs.get("title")))
    return ParsedPage(codec, base.attributes.get("href") if base else None, robots, tuple(images))
