"""Every Parquet table's schema and row conversion, derived from the records in curate.records.

A column's Arrow type follows its record field's Python type (str -> string, int -> int64, float -> float64,
bool -> bool, bytes -> binary, tuple[str, ...] -> list<string>), except the fields stored narrower, listed once
in `_STORED_AS`. Tables that hold more than one record (a decoded image and its provenance, a text score
under `text_` prefixes) name their columns here in the order the files have them, so that a column never has
two definitions and the written bytes do not change when a record gains a method.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import pyarrow as pa

from curate.records import DupInfo, Failed, ImageRecord, ImageRef, LedgerRow, Rejected, TextScore

# Pixel sizes and OCR counts fit 32 bits; a 64-bit perceptual hash is unsigned.
_STORED_AS: dict[str, pa.DataType] = {"width": pa.int32(), "height": pa.int32(), "phash": pa.uint64(),
                                      **{name: pa.int32() for name in ("boxes", "words", "chars", "lines", "read")}}
_ARROW: dict[Any, pa.DataType] = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_(),
                                  bytes: pa.binary(), tuple[str, ...]: pa.list_(pa.string())}


def _arrow_type(hint: Any) -> pa.DataType:
    if isinstance(hint, types.UnionType):  # X | None: nullable X (every Arrow column is nullable)
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return _ARROW[hint]


def fields(record: type, names: tuple[str, ...] = (), prefix: str = "") -> list[pa.Field]:
    """Arrow fields for `names` of a NamedTuple or dataclass record (all of its fields by default), in that
    order, each column named prefix + field."""
    hints = typing.get_type_hints(record)
    if dataclasses.is_dataclass(record):
        declared = tuple(f.name for f in dataclasses.fields(record))
    else:
        declared = record._fields  # type: ignore[attr-defined]
    return [pa.field(prefix + name, _STORED_AS.get(name) or _arrow_type(hints[name])) for name in names or declared]


# Where an image was found (ImageRef), as the image tables repeat it next to every picture.
PROVENANCE = ("alt", "title", "page_url", "snapshot", "source_file", "record_offset", "crawl_date", "source")
# What decode measured on the picture (ImageRecord).
PICTURE = ("width", "height", "format", "animated", "sha256", "pixel_hash", "phash")
# TextScore as stored: `ms` is a fact about the run, not the picture, and goes to the stage's manifest instead.
SCORE = tuple(name for name in TextScore._fields if name != "ms")

REF_SCHEMA = pa.schema(fields(ImageRef))  # OUT/refs
LEDGER_SCHEMA = pa.schema(fields(LedgerRow))  # OUT/ledger
REJECT_SCHEMA = pa.schema(fields(Rejected))  # OUT/rejected
FAILED_SCHEMA = pa.schema(fields(Failed))  # OUT/failed
IMAGE_SCHEMA = pa.schema([  # OUT/images
    *fields(ImageRecord, ("key",)), *fields(ImageRef, ("url",)), *fields(ImageRecord, ("data",)),
    *fields(ImageRecord, PICTURE), *fields(ImageRef, PROVENANCE), *fields(ImageRecord, ("features", "thumbnail"))])
DECISION_SCHEMA = pa.schema([  # OUT/dedup
    *fields(Rejected, ("key", "reason")), *fields(DupInfo)])
TEXT_SCHEMA = pa.schema([  # OUT/text
    *fields(ImageRecord, ("key",)), *fields(ImageRef, ("url",)), *fields(ImageRecord, ("pixel_hash",)),
    *fields(TextScore, SCORE, prefix="text_"), pa.field("light", pa.bool_()), pa.field("heavy", pa.bool_()),
    *fields(Rejected, ("reason",))])
CACHE_SCHEMA = pa.schema([  # the OCR cache: one row per distinct picture
    *fields(ImageRecord, ("pixel_hash",)), *fields(TextScore, SCORE), *fields(TextScore, ("ms",))])
# OUT/fetched/*.parquet: img2dataset's table (its input columns: url, caption, the ref's provenance; then its
# own) with the ledger's view of each row; the shards of images captured in the crawl have it too.
FETCHED_SCHEMA = pa.schema([
    pa.field("url", pa.string()), pa.field("caption", pa.string()), pa.field("ref_key", pa.string()),
    *fields(ImageRef, ("page_url", "snapshot", "source_file", "record_offset", "crawl_date", "source")),
    pa.field("key", pa.string()), pa.field("status", pa.string()), pa.field("error_message", pa.string()),
    pa.field("width", pa.int32()), pa.field("height", pa.int32()), pa.field("original_width", pa.int32()),
    pa.field("original_height", pa.int32()), pa.field("sha256", pa.string()), *fields(LedgerRow, ("reason",)),
    pa.field("retryable", pa.bool_()), pa.field("mime", pa.string()), pa.field("http_status", pa.int32())])

# img2dataset's columns, so its users' scripts read our shards: the caption (our alt text), the fetch status
# (every sample of a final shard is a success) and the size before its resizing (we never resize).
IMG2DATASET = (pa.field("caption", pa.string()), pa.field("status", pa.string()),
               pa.field("error_message", pa.string()), pa.field("original_width", pa.int32()),
               pa.field("original_height", pa.int32()))
SHARD_SCHEMA = pa.schema([  # OUT/shards/*.parquet: one flat row per sample
    *fields(ImageRecord, ("key",)), *fields(ImageRef, ("url", *PROVENANCE)),
    *fields(ImageRecord, PICTURE[:-1]), pa.field("phash", pa.string()),  # hex, as in key.json
    pa.field("bytes", pa.int64()), pa.field("reencoded", pa.bool_()), *fields(TextScore, SCORE, prefix="text_"),
    pa.field("light", pa.bool_()), pa.field("heavy", pa.bool_()),
    *fields(DupInfo, ("cluster", "cluster_size"), "dup_"), *IMG2DATASET])
SHARD_SCHEMA_WITH_IMAGES = SHARD_SCHEMA.append(pa.field("data", pa.binary()))
KEY_INDEX_SCHEMA = pa.schema([  # OUT/index: each written key's final shard ("00012") and place in it (0-based)
    pa.field("key", pa.string()), pa.field("shard", pa.string()), pa.field("place", pa.int32())])


def ref_row(ref: ImageRef) -> dict[str, Any]:
    return ref._asdict() | {"alts": list(ref.alts)}


def ref_from_row(row: dict[str, Any]) -> ImageRef:
    return ImageRef(**{**row, "alts": tuple(row["alts"] or ())})


def image_row(record: ImageRecord) -> dict[str, Any]:
    ref = record.ref
    return {"key": record.key, "url": ref.url, "data": record.data,
            **{name: getattr(record, name) for name in PICTURE}, **{name: getattr(ref, name) for name in PROVENANCE},
            "features": record.features, "thumbnail": record.thumbnail}


def score_columns(score: TextScore, prefix: str = "text_") -> dict[str, Any]:
    """A TextScore's stored fields as prefixed columns."""
    return {f"{prefix}{name}": getattr(score, name) for name in SCORE}


def score_from_row(row: dict[str, Any], prefix: str = "") -> TextScore:
    """A TextScore from a Parquet row (OUT/text with prefix 'text_', or the cache); ms 0 when not stored."""
    return TextScore(**{name: row[f"{prefix}{name}"] for name in TextScore._fields if f"{prefix}{name}" in row}
                     | ({} if f"{prefix}ms" in row else {"ms": 0.0}))
