"""What a user names -> the crawl files to read: snapshot IDs, presets, month ranges, paths, globs, listings.

Keeps: every file a CommonCrawl listing (`<base>/crawl-data/<ID>/{warc,wat}.paths.gz`) names, in listing
order (the first `max_files` per snapshot when asked), and every file a path, glob or `*.paths.gz` listing
given directly names, sorted within each input. Each comes out as a `CrawlFile`: the fsspec URL to open,
the snapshot ID found in its path and its kind (warc or wat, by name).

Drops: duplicates (the same URL twice, the same snapshot twice), blank listing lines and, from globs,
directories. Nothing is dropped silently otherwise: an unknown snapshot item, a missing listing, a path
that does not exist or a glob that matches nothing is a one-line `InputError`, because a run that quietly
reads less than it was told to is worse than one that stops.

Base URLs are any fsspec URL (https://, s3://, file://, memory://, a plain local path). Listings and files
are streamed, never read whole nor cached on disk; over HTTP a file is one GET (no HEAD, no ranges).
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import io
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import aiohttp
import fsspec
from fsspec.core import split_protocol, url_to_fs

from curate.errors import InputError
from curate.urllists import is_url_list

DEFAULT_BASE_URL = "https://data.commoncrawl.org/"
SOURCES = ("warc", "wat")

PRESETS: dict[str, tuple[str, ...]] = {
    # Web-SSL / MetaCLIP: the crawls of January 2021 to January 2023.
    "web-ssl": tuple(
        [f"CC-MAIN-2021-{w}" for w in ("04", "10", "17", "21", "25", "31", "39", "43", "49")]
        + [f"CC-MAIN-2022-{w}" for w in ("05", "21", "27", "33", "40", "49")]
        + ["CC-MAIN-2023-06"]
    ),
}

# Real CommonCrawl main crawls by year (ISO week of each ID). Used ONLY to expand month ranges
# ("2021-01..2021-06"); an ID named explicitly need not be listed here. Extend it as crawls are published.
_CATALOG = {
    2018: "05 09 13 17 22 26 30 34 39 43 47 51",
    2019: "04 09 13 18 22 26 30 35 39 43 47 51",
    2020: "05 10 16 24 29 34 40 45 50",
    2021: "04 10 17 21 25 31 39 43 49",
    2022: "05 21 27 33 40 49",
    2023: "06 14 23 40 50",
    2024: "10 18 22 26 30 33 38 42 46 51",
    2025: "05 08 13 18 21 26 30 33 38 43 47 51",
}
KNOWN_SNAPSHOTS: tuple[str, ...] = tuple(f"CC-MAIN-{y}-{w}" for y, weeks in _CATALOG.items() for w in weeks.split())

_ID = re.compile(r"CC-MAIN-(\d{4})-(\d{2})")
_MONTH = r"(\d{4})-(\d{2})"
_RANGE = re.compile(rf"{_MONTH}(?:\.\.{_MONTH})?")
_IN_PATH = re.compile(r"(?:^|/)crawl-data/(CC-MAIN-\d{4}-\d{2})(?=/|$)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GLOB = re.compile(r"[*?\[]")
_HTTP_BUFFER = 1 << 20


@dataclass(frozen=True)
class CrawlFile:
    """One WARC or WAT file, or URL list, to read."""

    url: str  # full fsspec URL or local path
    snapshot: str  # CC-MAIN-YYYY-WW from the path ("crawl-data/<ID>/"), or ""
    kind: str  # "warc", "wat" or "urls"


# ----------------------------------------------------------------------------------------- snapshots


def snapshot_month(snapshot_id: str) -> str:
    """ "CC-MAIN-2021-04" -> "2021-01": the month of the Monday of ISO week WW of YYYY."""
    match = _ID.fullmatch(snapshot_id)
    if match is None:
        raise InputError(f"not a snapshot ID: {snapshot_id!r} (expected CC-MAIN-YYYY-WW)")
    year, week = int(match[1]), int(match[2])
    try:
        monday = datetime.date.fromisocalendar(year, week, 1)
    except ValueError as e:
        raise InputError(f"not a snapshot ID: {snapshot_id!r}: {year} has no ISO week {week}") from e
    return f"{monday:%Y-%m}"


def resolve_snapshots(spec: str) -> list[str]:
    """Comma-separated IDs, preset names and month ranges -> snapshot IDs, de-duplicated, first seen first."""
    out: dict[str, None] = {}
    for item in (part.strip() for part in spec.split(",")):
        if item:
            out.update(dict.fromkeys(_resolve_item(item)))
    if not out:
        raise InputError(f"no snapshot named in {spec!r}")
    return list(out)


def _resolve_item(item: str) -> list[str]:
    if item in PRESETS:
        return list(PRESETS[item])
    if _ID.fullmatch(item):
        snapshot_month(item)  # validates the week
        return [item]
    match = _RANGE.fullmatch(item)
    if match is None:
        raise InputError(
            f"bad snapshot item {item!r}: expected an ID CC-MAIN-YYYY-WW, a preset ({', '.join(PRESETS)}), "
            "a month YYYY-MM or a month range YYYY-MM..YYYY-MM"
        )
    first = _month(item, match[1], match[2])
    last = first if match[3] is None else _month(item, match[3], match[4])
    if last < first:
        raise InputError(f"bad snapshot range {item!r}: it ends before it starts")
    found = sorted(s for s in KNOWN_SNAPSHOTS if first <= snapshot_month(s) <= last)
    if not found:
        raise InputError(f"no known snapshot in {item!r} (the catalog covers {_catalog_span()}); name IDs instead")
    return found


def _month(item: str, year: str, month: str) -> str:
    if not 1 <= int(month) <= 12:
        raise InputError(f"bad snapshot range {item!r}: month {month} is not 01..12")
    return f"{year}-{month}"


def _catalog_span() -> str:
    months = sorted(snapshot_month(s) for s in KNOWN_SNAPSHOTS)
    return f"{months[0]}..{months[-1]}"


def snapshot_of(path: str) -> str:
    """The CC-MAIN-YYYY-WW of a "crawl-data/<ID>/" path component, or ""."""
    match = _IN_PATH.search(path)
    return match[1] if match else ""


def _kind(path: str) -> str:
    """warc, wat, or urls (a URL list: curate.urllists)."""
    name = path.rsplit("/", 1)[-1].lower()
    if is_url_list(name):
        return "urls"
    return "wat" if name.endswith((".wat.gz", ".wat")) else "warc"


def _crawl_file(url: str, snapshot: str = "") -> CrawlFile:
    return CrawlFile(url=url, snapshot=snapshot_of(url) or snapshot, kind=_kind(url))


# ------------------------------------------------------------------------------------------------ URLs


def join_url(base: str, path: str) -> str:
    """`base` + relative `path` with exactly one slash between; a `path` that is already a URL is kept."""
    if _SCHEME.match(path):
        return path
    scheme = _SCHEME.match(base)
    prefix = scheme[0] if scheme else ""
    rest = base[len(prefix) :]
    head, tail = rest.rstrip("/"), path.lstrip("/")
    if head or rest:  # rest == "/" is the root ("/", "file:///")
        return f"{prefix}{head}/{tail}"
    return prefix + tail  # "memory://" or "" (the current directory)


def snapshot_files(
    snapshot_ids: list[str], base_url: str = DEFAULT_BASE_URL, source: str = "warc", max_files: int | None = None
) -> list[CrawlFile]:
    """The files each snapshot's `<base>/crawl-data/<ID>/<source>.paths.gz` lists, in listing order."""
    if source not in SOURCES:
        raise InputError(f"bad source {source!r}: expected one of {', '.join(SOURCES)}")
    if max_files is not None and max_files < 1:
        raise InputError(f"max_files must be >= 1 or None, got {max_files}")
    files: list[CrawlFile] = []
    for sid in dict.fromkeys(snapshot_ids):
        snapshot_month(sid)
        url = join_url(base_url, f"crawl-data/{sid}/{source}.paths.gz")
        try:
            lines = _listing(url, max_files)
        except FileNotFoundError as e:
            raise InputError(f"no listing for {sid} at {url}: {_one_line(e)}") from e
        files.extend(_crawl_file(join_url(base_url, line), sid) for line in lines)
    return files


def input_files(inputs: list[str], base_url: str = DEFAULT_BASE_URL) -> list[CrawlFile]:
    """Paths, URLs, globs and `*.paths.gz` listings -> files, sorted within each input, first seen kept."""
    seen: dict[str, CrawlFile] = {}
    for given in inputs:
        for url in sorted(set(_expand(given, base_url))):
            seen.setdefault(url, _crawl_file(url))
    return list(seen.values())


def _expand(given: str, base_url: str) -> Iterator[str]:
    paths = _glob(given) if _GLOB.search(given) else [_existing(given)]
    for path in paths:
        if path.endswith(".paths.gz"):
            try:
                yield from (join_url(base_url, line) for line in _listing(path))
            except FileNotFoundError as e:
                raise InputError(f"no listing at {path}: {_one_line(e)}") from e
        else:
            yield path


def _glob(pattern: str) -> list[str]:
    fs, path = _fs(pattern)
    try:  # over HTTP a glob needs directory listings, which most servers (the sample server too) lack
        found = fs.glob(path, detail=True)
    except (OSError, ValueError, aiohttp.ClientError) as e:
        raise InputError(f"cannot expand {pattern}: {_one_line(e)}") from e
    files = [_unstrip(fs, pattern, p) for p, info in found.items() if info.get("type") != "directory"]
    if not files:
        raise InputError(f"no file matches {pattern}")
    return files


def _existing(given: str) -> str:
    fs, path = _fs(given)
    try:
        info = fs.info(path)
    except FileNotFoundError as e:
        raise InputError(f"no such file: {given}") from e
    except (OSError, aiohttp.ClientError) as e:
        raise InputError(f"cannot read {given}: {_one_line(e)}") from e
    if info.get("type") == "directory":
        raise InputError(f"{given} is a directory: give a glob such as {join_url(given, '**/*.warc.gz')}")
    return _unstrip(fs, given, path)


def _fs(url: str) -> tuple[Any, str]:
    try:
        return url_to_fs(url)
    except (ImportError, ValueError) as e:  # unknown protocol, or its package (s3fs, gcsfs) not installed
        raise InputError(f"cannot open {url}: {_one_line(e)}") from e


def _unstrip(fs: Any, given: str, path: str) -> str:
    """A local input stays a plain (absolute) path; a URL keeps its protocol."""
    if split_protocol(given)[0] is None:
        return os.path.abspath(path)
    return str(fs.unstrip_protocol(path))


def _listing(url: str, limit: int | None = None) -> list[str]:
    """The non-blank lines of a gzip listing, streamed; stops reading after `limit` lines."""
    lines: list[str] = []
    try:
        with open_binary(url) as raw, gzip.GzipFile(fileobj=raw) as text:
            for line in _lines(text):
                lines.append(line)
                if limit is not None and len(lines) >= limit:
                    break
    except FileNotFoundError:
        raise
    except (OSError, EOFError, zlib.error, ValueError, ImportError) as e:
        raise InputError(f"unreadable listing {url}: {_one_line(e)}") from e
    return lines


def _lines(stream: Iterable[bytes]) -> Iterator[str]:
    for raw in stream:
        line = raw.decode("utf-8").strip()
        if line:
            yield line


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# ------------------------------------------------------------------------------------------------- open


@contextlib.contextmanager
def open_binary(url: str) -> Iterator[IO[bytes]]:
    """A streaming binary file for any fsspec URL or local path; FileNotFoundError when missing (HTTP 404, 410)."""
    stream: IO[bytes] = _open_http(url) if url.lower().startswith(("http://", "https://")) else _open_fs(url)
    try:
        yield stream
    finally:
        stream.close()


def _open_fs(url: str) -> IO[bytes]:
    fs, path = url_to_fs(url)
    stream: IO[bytes] = fs.open(path, "rb")
    return stream


def _open_http(url: str) -> IO[bytes]:
    return io.BufferedReader(_HttpRaw(url), buffer_size=_HTTP_BUFFER)


class _HttpRaw(io.RawIOBase):
    """One GET through fsspec's HTTP filesystem, read as it arrives.

    `fs.open(url)` would first send a HEAD (or a GET) for the size and, with a block size, read by Range
    requests; a streaming file skips both. aiohttp errors become OSError so that callers catch one family.
    """

    def __init__(self, url: str) -> None:
        from fsspec.asyn import sync
        from fsspec.implementations.http import HTTPStreamFile

        super().__init__()
        self.url = url
        self._eof = False
        fs = fsspec.filesystem("http")
        try:
            session = sync(fs.loop, fs.set_session)
            self._file = HTTPStreamFile(fs, url, mode="rb", loop=fs.loop, session=session)
        except FileNotFoundError as e:  # fsspec's own mapping of 404, message: the bare URL
            raise FileNotFoundError(f"{url}: HTTP 404") from e
        except aiohttp.ClientResponseError as e:
            if e.status in (404, 410):
                raise FileNotFoundError(f"{url}: HTTP {e.status}") from e
            raise OSError(f"{url}: HTTP {e.status} {e.message}") from e
        except aiohttp.ClientError as e:
            raise OSError(f"{url}: {_one_line(e)}") from e

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._eof:  # readers probe past the end more than once; aiohttp warns if asked again
            return 0
        try:
            data = self._file.read(len(buffer))
        except aiohttp.ClientError as e:
            raise OSError(f"{self.url}: {_one_line(e)}") from e
        self._eof = not data
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()
