"""`curate inspect PATH`: the first samples of a shard, as an aligned table for a terminal.

Reads WebDataset/img2dataset tars (`key.<ext>` + `key.json` (+ `key.txt`)) and Parquet tables (final
shards, `OUT/images`, `OUT/fetched`) alike: key, format, size in bytes, width x height, the text score
when the shard has one, and the URL. Only the first N samples are read (a tar is streamed and left as
soon as they are in; a Parquet file is read batch by batch), so it is quick on a shard of any size.
Every value comes from web data and is printed with control characters escaped, so a hostile URL cannot
drive the terminal.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import warnings
from collections.abc import Iterator
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from curate.commands.args import Add, positive_int
from curate.errors import UserError
from curate.imaging import image_format
from curate.shards import picture, tar_samples

_TEXT = ("text_chars", "text_lines", "light", "heavy")
COLUMNS = ("key", "format", "size", "width x height", "chars", "lines", "light", "heavy", "url")
URL_CHARS = 120


def samples(path: str, n: int = 10) -> list[dict[str, Any]]:
    """The first n samples of a .tar or .parquet shard, one dict per sample with the COLUMNS' facts."""
    fs, local = fsspec.core.url_to_fs(path)
    if not fs.exists(local):
        raise UserError(f"no such file: {path}")
    if fs.isdir(local):
        raise UserError(f"{path} is a folder: name a .tar or .parquet shard in it")
    lower = path.lower()
    try:
        if lower.endswith(".tar"):
            return list(_tar_samples(path, n))
        if lower.endswith(".parquet"):
            return list(_parquet_samples(path, n))
    except (tarfile.TarError, pa.ArrowException, OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path}: {type(e).__name__}: {' '.join(str(e).split())}") from e
    raise UserError(f"not a shard: {path} (expected .tar or .parquet)")


def _tar_samples(path: str, n: int) -> Iterator[dict[str, Any]]:
    done = 0
    for stem, members in tar_samples(path):
        found = picture(members)
        meta = json.loads(members["json"]) if "json" in members else {}
        if found or meta:
            yield _facts(meta, stem, found[1] if found else None, found[0] if found else "")
            done += 1
            if done >= n:
                return


def _parquet_samples(path: str, n: int) -> Iterator[dict[str, Any]]:
    with fsspec.open(path, "rb") as fh:
        pf = pq.ParquetFile(fh)
        done = 0
        for batch in pf.iter_batches(batch_size=min(n, 1024)):
            for row in batch.to_pylist():
                data = row.get("data") if isinstance(row.get("data"), bytes) else None
                yield _facts(row, str(row.get("key") or ""), data, "")
                done += 1
                if done >= n:
                    return


def _facts(meta: dict[str, Any], key: str, data: bytes | None, ext: str) -> dict[str, Any]:
    """What a row shows, from the metadata first and the image bytes where the metadata is silent."""
    nested = meta.get("text")
    text: dict[str, Any] = nested if isinstance(nested, dict) else {}
    facts: dict[str, Any] = {
        "key": meta.get("key") or key,
        "format": meta.get("format") or (image_format(data) if data else None) or ext or None,
        "size": len(data) if data is not None else meta.get("size") or meta.get("bytes"),
        "width": meta.get("width"), "height": meta.get("height"),
        "url": meta.get("url"),
    }
    for field in _TEXT:
        short = field.removeprefix("text_")
        facts[field] = meta[field] if field in meta else text.get(short, text.get(field))
    if data is not None and not (facts["width"] and facts["height"]):
        facts["width"], facts["height"] = _header_size(data)
    return facts


def _header_size(data: bytes) -> tuple[int | None, int | None]:
    """Size from the header alone (no pixels decoded); None for what Pillow cannot open."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(io.BytesIO(data)) as im:
                return im.size
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
            return None, None


def _printable(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def format_table(rows: list[dict[str, Any]]) -> str:
    """An aligned text table; the text columns only when some sample has a text score."""
    has_text = any(r.get(f) is not None for r in rows for f in _TEXT)
    columns = [c for c in COLUMNS if has_text or c not in ("chars", "lines", "light", "heavy")]
    cells = []
    for r in rows:
        url = _printable(r.get("url"))
        size = f"{r['width']}x{r['height']}" if r.get("width") and r.get("height") else "-"
        values = {"key": r.get("key"), "format": r.get("format"), "size": r.get("size"), "width x height": size,
                  "chars": r.get("text_chars"), "lines": r.get("text_lines"), "light": r.get("light"),
                  "heavy": r.get("heavy"), "url": url if len(url) <= URL_CHARS else url[: URL_CHARS - 1] + "…"}
        cells.append([_printable(values[c]) for c in columns])
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    right = {"size", "chars", "lines"}

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if c in right else v.ljust(w)
                         for c, v, w in zip(columns, values, widths, strict=True)).rstrip()

    return "\n".join([line(list(columns)), line(["-" * w for w in widths])] + [line(row) for row in cells])


def _inspect_command(args: argparse.Namespace) -> int:
    rows = samples(args.path, args.n)
    print(format_table(rows))
    print(f"({len(rows)} sample{'s' if len(rows) != 1 else ''} shown from {args.path})")
    return 0


def register(add: Add) -> None:
    p = add("inspect", _inspect_command,
            "Show the first samples of a shard (.tar or .parquet): key, format, size, width x height, text score "
            "when present, URL.")
    p.add_argument("path", metavar="PATH", help="a .tar or .parquet shard (local path or any fsspec URL)")
    p.add_argument("-n", type=positive_int, default=10, help="number of samples to show")
