"""URL lists in img2dataset's input formats: where a dataset starts from image URLs instead of a crawl.

- `.txt`: one URL a line (blank lines and lines starting with '#' skipped);
- `.csv`, `.tsv`: a header row, then one row a URL: the URL in column `url`, an optional caption in
  `caption` (`extract.url_column`, `extract.caption_column`);
- `.parquet`: the same two columns.
Text formats may be gzip-compressed (`.txt.gz`, `.csv.gz`, `.tsv.gz`); any fsspec URL. A list is read as a
stream (a Parquet file one record batch at a time), so its size is bounded by the disk, not by memory.
Each row comes out as (row number, URL as written, caption); judging the URL is the extract stage's job.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import fsspec
import pyarrow.parquet as pq

from curate.errors import InputError

SUFFIXES = (".txt", ".csv", ".tsv", ".parquet", ".txt.gz", ".csv.gz", ".tsv.gz")
BATCH_ROWS = 8192  # rows per Parquet record batch


def is_url_list(path: str) -> bool:
    return path.lower().endswith(SUFFIXES)


def _delimiter(path: str) -> str:
    return "\t" if path.lower().removesuffix(".gz").endswith(".tsv") else ","


def _open_text(path: str) -> io.TextIOWrapper:
    return fsspec.open(path, "rt", encoding="utf-8", errors="replace", newline="", compression="infer").open()


def columns(path: str) -> list[str]:
    """The list's column names (a .txt list has one, `url`)."""
    lower = path.lower()
    if lower.endswith(".parquet"):
        with fsspec.open(path, "rb") as fh:
            return list(pq.read_schema(fh).names)
    if lower.removesuffix(".gz").endswith(".txt"):
        return ["url"]
    with _open_text(path) as fh:
        return next(csv.reader(fh, delimiter=_delimiter(path)), [])


def check(path: str, url_column: str) -> None:
    """One line before any work when the list cannot be read or has no URL column."""
    try:
        names = columns(path)
    except (OSError, ValueError, UnicodeError) as e:
        raise InputError(f"cannot read the URL list {path}: {type(e).__name__}: {e}") from None
    if url_column not in names:
        shown = ", ".join(names[:8]) or "none"
        raise InputError(f"the URL list {path} has no column {url_column!r} (its columns: {shown}); name it "
                         "with extract.url_column")


def read(path: str, url_column: str = "url", caption_column: str = "caption") -> Iterator[tuple[int, str, str]]:
    """(row number from 1, URL as written, caption or '') for every row of the list."""
    lower = path.lower()
    if lower.endswith(".parquet"):
        yield from _read_parquet(path, url_column, caption_column)
    elif lower.removesuffix(".gz").endswith(".txt"):
        with _open_text(path) as fh:
            for number, line in enumerate(fh, 1):
                text = line.strip()
                if text and not text.startswith("#"):
                    yield number, text, ""
    else:
        with _open_text(path) as fh:
            rows = csv.DictReader(fh, delimiter=_delimiter(path))
            if url_column not in (rows.fieldnames or []):
                raise ValueError(f"no column {url_column!r} in {path}")
            for number, row in enumerate(rows, 1):
                yield number, row.get(url_column) or "", row.get(caption_column) or ""


def _read_parquet(path: str, url_column: str, caption_column: str) -> Iterator[tuple[int, str, str]]:
    with fsspec.open(path, "rb") as fh:
        parquet = pq.ParquetFile(fh)
        names = parquet.schema_arrow.names
        if url_column not in names:
            raise ValueError(f"no column {url_column!r} in {path}")
        wanted = [url_column] + ([caption_column] if caption_column in names else [])
        number = 0
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=wanted):
            urls = batch.column(0).to_pylist()
            captions = batch.column(1).to_pylist() if len(wanted) == 2 else [None] * len(urls)
            for url, caption in zip(urls, captions, strict=True):
                number += 1
                yield number, str(url or ""), str(caption or "")
