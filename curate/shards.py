"""The final dataset's shards: one WebDataset tar and one Parquet file per shard, byte-deterministic.

A sample is `<key>.<ext>` (the original bytes; ext from the real format), `<key>.json` (every field of the
record: provenance, sizes, hashes, text score, dup info) and `<key>.txt` (the alt text). Keys are 32
lower-case hex digits: nothing a tar reader could split on a dot or escape with a slash. Tar members carry
no time, owner or mode that could vary (mtime 0, uid/gid 0, mode 0644), in key order, so the same samples
give the same bytes on every run and runner. The Parquet file holds the same metadata, flattened, and the
image bytes only when asked (`shards.parquet_images`): the tar already has them.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from typing import Any

import pyarrow as pa

from curate.io import parquet_bytes

EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "gif": "gif", "bmp": "bmp", "tiff": "tiff"}
KEY = re.compile(r"^[0-9a-f]{32}$")
TEXT_FIELDS = ("boxes", "area_fraction", "words", "chars", "mean_confidence", "lines", "text", "read", "page")
PROVENANCE = ("url", "alt", "title", "page_url", "snapshot", "source_file", "record_offset", "crawl_date", "source")
IMAGE = ("width", "height", "format", "animated", "sha256", "pixel_hash", "phash")

SHARD_SCHEMA = pa.schema(
    [("key", pa.string()), ("url", pa.string()), ("alt", pa.string()), ("title", pa.string()),
     ("page_url", pa.string()), ("snapshot", pa.string()), ("source_file", pa.string()),
     ("record_offset", pa.int64()), ("crawl_date", pa.string()), ("source", pa.string()),
     ("width", pa.int32()), ("height", pa.int32()), ("format", pa.string()), ("animated", pa.bool_()),
     ("sha256", pa.string()), ("pixel_hash", pa.string()), ("phash", pa.string()), ("bytes", pa.int64()),
     ("text_boxes", pa.int32()), ("text_area_fraction", pa.float64()), ("text_words", pa.int32()),
     ("text_chars", pa.int32()), ("text_mean_confidence", pa.float64()), ("text_lines", pa.int32()),
     ("text_text", pa.string()), ("text_read", pa.int32()), ("text_page", pa.float64()),
     ("light", pa.bool_()), ("heavy", pa.bool_()), ("dup_cluster", pa.string()), ("dup_cluster_size", pa.int64())])
SHARD_SCHEMA_WITH_IMAGES = SHARD_SCHEMA.append(pa.field("data", pa.binary()))


def shard_name(index: int) -> str:
    return f"{index:05d}"


def metadata(row: dict[str, Any]) -> dict[str, Any]:
    """The flat metadata of one sample (a Parquet row) from the joined stage rows: image, dedup, text."""
    flat = {"key": row["key"], **{k: row[k] for k in PROVENANCE}, **{k: row[k] for k in IMAGE if k != "phash"},
            "phash": f"{row['phash']:016x}", "bytes": len(row["data"])}
    for name in TEXT_FIELDS:
        flat[f"text_{name}"] = row.get(f"text_{name}")
    flat["light"], flat["heavy"] = row.get("light"), row.get("heavy")
    flat["dup_cluster"], flat["dup_cluster_size"] = row["cluster"], row["cluster_size"]
    return flat


def sample_json(flat: dict[str, Any]) -> dict[str, Any]:
    """key.json: the metadata with the text score and dup info as objects (text null when not scored)."""
    doc = {k: v for k, v in flat.items() if not k.startswith(("text_", "dup_"))}
    scored = flat.get("text_boxes") is not None
    doc["text"] = {name: flat[f"text_{name}"] for name in TEXT_FIELDS} if scored else None
    doc["dup"] = {"cluster": flat["dup_cluster"], "cluster_size": flat["dup_cluster_size"]}
    return doc


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    tar.addfile(info, io.BytesIO(data))


def tar_bytes(samples: list[dict[str, Any]]) -> bytes:
    """A WebDataset tar of the samples (joined rows with `data`), in the given order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for row in samples:
            key = row["key"]
            if not KEY.match(key):
                raise ValueError(f"not a shard key (32 lower-case hex digits): {key!r}")
            flat = metadata(row)
            _member(tar, f"{key}.{EXTENSIONS.get(row['format'], row['format'])}", row["data"])
            _member(tar, f"{key}.json", json.dumps(sample_json(flat), sort_keys=True, ensure_ascii=False).encode())
            _member(tar, f"{key}.txt", (row["alt"] or "").encode())
    return buf.getvalue()


def parquet_shard(samples: list[dict[str, Any]], with_images: bool) -> bytes:
    rows = [metadata(row) | ({"data": row["data"]} if with_images else {}) for row in samples]
    return parquet_bytes(rows, SHARD_SCHEMA_WITH_IMAGES if with_images else SHARD_SCHEMA)
