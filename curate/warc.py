"""Read WARC and WAT records from a stream, and say when a record or a file is damaged.

warcio streams records (one gzip member at a time) but stays silent about damage: a truncated gzip
member or a short record comes back as a short payload, without an exception. So every record's block
is drained through warcio's own length-limited reader and checked against its Content-Length; a file
that ends inside a record, or whose stream breaks (zlib, EOF), is reported as damaged after the records
read before the damage have been yielded. Payloads are read up to a cap (CommonCrawl itself truncates at
1 MiB); the rest of an oversized record is drained in chunks and never held.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from warcio.archiveiterator import ArchiveIterator
from warcio.bufferedreaders import BufferedReader, ChunkedDataReader
from warcio.exceptions import ArchiveLoadFailed

MAX_PAYLOAD = 8 * 1024 * 1024
_CHUNK = 1 << 16
_TAIL = 64


class NotAWarc(Exception):
    """The stream does not start with a WARC (or ARC) record."""


class DamagedFile(Exception):
    """The stream broke after `records_read` good records (truncated gzip, corrupt record...)."""

    def __init__(self, message: str, records_read: int):
        super().__init__(message)
        self.records_read = records_read


@dataclass(frozen=True)
class CrawlRecord:
    offset: int  # of the record (its gzip member) in the file
    warc_type: str
    target_uri: str
    date: str  # WARC-Date
    content_type: str  # the WARC record's Content-Type
    http_status: int | None  # None for records without HTTP headers
    http_headers: tuple[tuple[str, str], ...]
    payload: bytes  # entity body (transfer and content encodings removed), at most MAX_PAYLOAD
    complete: bool  # the whole block as declared by Content-Length was present
    crawler_truncated: bool  # the crawler cut the payload (WARC-Truncated header)
    is_part_of: str = ""  # warcinfo records: the crawl the file belongs to

    def http_header(self, name: str) -> str:
        """Value of an HTTP response header (the first, case-insensitive), or ''."""
        lower = name.lower()
        return next((v for k, v in self.http_headers if k.lower() == lower), "")

    def http_header_values(self, name: str) -> list[str]:
        lower = name.lower()
        return [v for k, v in self.http_headers if k.lower() == lower]


def _drain(stream: Any, cap: int) -> bytes:
    """Read up to `cap` bytes, then read and drop the rest (so the limit reader reaches its end)."""
    parts: list[bytes] = []
    size = 0
    while size < cap:
        chunk = stream.read(min(_CHUNK, cap - size))
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        size += len(chunk)
    while stream.read(_CHUNK):
        pass
    return b"".join(parts)


def _decode_body(raw: bytes, headers: Any) -> bytes:
    """Undo chunked transfer encoding and gzip/deflate/br content encoding the way warcio would."""
    encoding = (headers.get_header("content-encoding") or "").lower() or None
    if encoding not in BufferedReader.get_supported_decompressors():
        encoding = None
    chunked = (headers.get_header("transfer-encoding") or "").lower() == "chunked"
    if not chunked and not encoding:
        return raw
    reader = ChunkedDataReader(io.BytesIO(raw), decomp_type=encoding) if chunked else \
        BufferedReader(io.BytesIO(raw), decomp_type=encoding)
    try:
        return reader.read()
    except (OSError, ValueError, zlib.error):
        return raw  # mislabeled encoding (common: CommonCrawl stores decoded bodies): keep the bytes as they are


def _record(record: Any, records: ArchiveIterator, cap: int) -> CrawlRecord:
    headers = record.rec_headers
    raw = _drain(record.raw_stream, cap)
    offset = records.get_record_offset()  # only after the block is read: warcio reads to the end to know it
    # warcio wraps the block in a LimitReader set to Content-Length (less the HTTP headers it parsed):
    # anything left in it after draining is the part of the record that is missing from the file.
    missing = getattr(record.raw_stream, "limit", 0)
    http = record.http_headers
    status = None
    if http is not None and record.rec_type in ("response", "revisit"):
        try:
            status = int(http.get_statuscode())
        except (TypeError, ValueError):
            status = None
    payload = _decode_body(raw, http) if http is not None else raw
    is_part_of = ""
    if record.rec_type == "warcinfo":
        for line in raw.decode("utf-8", "replace").splitlines():
            if line.lower().startswith("ispartof:"):
                is_part_of = line.split(":", 1)[1].strip()
    return CrawlRecord(
        offset=offset,
        warc_type=record.rec_type or "",
        target_uri=headers.get_header("WARC-Target-URI") or "",
        date=headers.get_header("WARC-Date") or "",
        content_type=headers.get_header("Content-Type") or "",
        http_status=status,
        http_headers=tuple(http.headers) if http is not None else (),
        payload=payload,
        complete=missing <= 0,
        crawler_truncated=bool(headers.get_header("WARC-Truncated")),
        is_part_of=is_part_of,
    )


class _Counting(io.RawIOBase):
    """Counts the bytes warcio takes from the stream, to find a tail that never became a record."""

    def __init__(self, stream: IO[bytes]):
        self.stream, self.count, self.tail = stream, 0, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        self.tail = (self.tail + data)[-_TAIL:]
        return len(data)

    def trailing(self, end: int) -> bytes | None:
        """The bytes after offset `end`, if they are few enough to have been kept."""
        extra = self.count - end
        return self.tail[len(self.tail) - extra :] if 0 <= extra <= len(self.tail) else None


def iter_records(stream: IO[bytes], max_payload: int = MAX_PAYLOAD) -> Iterator[CrawlRecord]:
    """Yield every record of a WARC/WAT stream (gzipped or not).

    Raises NotAWarc if the first record cannot be read (or the stream is empty), DamagedFile if the stream
    breaks later (after yielding every record read before the break). A record cut short by the end of the
    file is yielded with `complete=False` and then DamagedFile is raised: nothing after it can be trusted.
    Bytes after the last record that do not form a record (a gzip member cut inside its headers) are
    damage too.
    """
    counting = _Counting(stream)
    records = ArchiveIterator(io.BufferedReader(counting, _CHUNK), arc2warc=True)
    count, end = 0, 0
    try:
        for record in records:
            item = _record(record, records, max_payload)
            end = item.offset + records.get_record_length()
            count += 1
            yield item
            if not item.complete:
                raise DamagedFile(f"record at offset {item.offset} is truncated", count)
    except ArchiveLoadFailed as e:
        if count == 0:
            raise NotAWarc(str(e).splitlines()[0] if str(e) else "not a WARC file") from e
        raise DamagedFile(f"unreadable record after {count} records: {e}", count) from e
    except (zlib.error, EOFError, OSError, ValueError) as e:
        if count == 0 and not isinstance(e, OSError):
            raise NotAWarc(f"not a WARC file: {e}") from e
        if isinstance(e, FileNotFoundError):
            raise
        raise DamagedFile(f"stream broke after {count} records: {type(e).__name__}: {e}", count) from e
    if count == 0:
        raise NotAWarc("empty file: no WARC record")
    trailing = counting.trailing(end)
    if counting.count > end and (trailing is None or trailing.strip(b"\r\n")):  # a record separator is fine
        raise DamagedFile(f"{counting.count - end} bytes after the last record at offset {end} do not form a "
                          "record (file cut short)", count)
