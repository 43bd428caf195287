"""WebDataset tars: the one reader and the one writer of tar samples, and the final dataset's shard layout.

Reading (`tar_samples`): members are grouped into samples as webdataset groups them: a run of consecutive
members whose paths agree up to the first dot of the base name is one sample, keyed by that prefix; one sample
is in memory at a time. A tar that ends without its end-of-archive blocks was cut short: its samples so far
come out, then a tarfile.ReadError (Python's tarfile, like webdataset, would just stop there).

Writing (`tar_bytes`), the final shards: a sample is its picture (`<key>.jpg` in every sample by default:
the original bytes of a JPEG, a JPEG copy as shown of any other format or of a JPEG with EXIF rotation; or
`<key>.<ext>`, the original bytes under their format's extension: `shards.image_member`), `<key>.json`
(every field of the record: provenance, sizes, hashes, text score, dup info) and `<key>.txt` (the alt
text). Keys are 32 lower-case hex digits: nothing a tar reader could split on a dot or
escape with a slash. Tar members carry no time, owner or mode that could vary (mtime 0, uid/gid 0, mode 0644),
in key order, so the same samples give the same bytes on every run and runner. The Parquet file holds the same
metadata, flattened (curate.tables.SHARD_SCHEMA), and each picture's original bytes only when asked
(`shards.parquet_images`).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import fsspec
import pyarrow.parquet as pq

from curate.io import MANIFEST, join, parquet_bytes, read_json, shard_of, table_file
from curate.tables import PICTURE, PROVENANCE, SCORE, SHARD_SCHEMA, SHARD_SCHEMA_WITH_IMAGES

EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "gif": "gif", "bmp": "bmp", "tiff": "tiff"}
KEY = re.compile(r"^[0-9a-f]{32}$")
SIDECARS = ("json", "txt", "cls")  # members that describe a sample; any other member is its picture


def tar_samples(source: str | IO[bytes]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for each sample of a WebDataset tar (a URL or an open binary file), in tar
    order; extensions lower-cased; compressed tars are read too."""
    with (fsspec.open(source, "rb") if isinstance(source, str) else contextlib.nullcontext(source)) as fh, \
            tarfile.open(fileobj=fh, mode="r|*") as tar:
        key, members = "", dict[str, bytes]()
        for member in tar:
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is None:
                continue
            folder, slash, base = member.name.rpartition("/")
            stem, _, ext = base.partition(".")
            if folder + slash + stem != key and members:
                yield key, members
                members = {}
            key = folder + slash + stem
            members[ext.lower()] = handle.read()
        if members:
            yield key, members
        size = getattr(fh, "size", None)
        plain = getattr(tar.fileobj, "comptype", "tar") == "tar"
        if plain and size is not None and size < tar.offset + tarfile.BLOCKSIZE:
            name = source if isinstance(source, str) else getattr(source, "name", "the tar")
            raise tarfile.ReadError(f"{name} is cut short: it ends at byte {size}, after its last member, "
                                    "without the end-of-archive blocks")


def picture(members: dict[str, bytes]) -> tuple[str, bytes] | None:
    """A sample's picture member (extension, bytes): its first member that is no sidecar."""
    return next(((ext, data) for ext, data in members.items() if ext not in SIDECARS), None)


def picture_member(row: dict[str, Any], member: str, shown_jpeg: Callable[[bytes], bytes | None]) -> dict[str, Any]:
    """The row with its tar picture member: `picture` (extension, bytes) and `reencoded`. `member` is
    shards.image_member: jpg (`shown_jpeg(data)`: None for a JPEG that needs no EXIF rotation, whose own
    bytes are kept, else a JPEG copy as shown) or original (the original bytes, extension from the format)."""
    if member == "original":
        return {**row, "picture": (EXTENSIONS.get(row["format"], row["format"]), row["data"]), "reencoded": False}
    copy = shown_jpeg(row["data"])
    return {**row, "picture": ("jpg", row["data"] if copy is None else copy), "reencoded": copy is not None}


def metadata(row: dict[str, Any]) -> dict[str, Any]:
    """The flat metadata of one sample (a Parquet row) from the joined stage rows: image, dedup, text, and its
    picture member (`picture_member`). `sha256` and `bytes` are the original picture's."""
    flat = {"key": row["key"], **{k: row[k] for k in ("url", *PROVENANCE)}, **{k: row[k] for k in PICTURE[:-1]},
            "phash": f"{row['phash']:016x}", "bytes": len(row["data"]), "reencoded": row["reencoded"]}
    for name in SCORE:
        flat[f"text_{name}"] = row.get(f"text_{name}")
    flat["light"], flat["heavy"] = row.get("light"), row.get("heavy")
    flat["dup_cluster"], flat["dup_cluster_size"] = row["cluster"], row["cluster_size"]
    flat.update(caption=row["alt"], status="success", error_message=None, original_width=row["width"],
                original_height=row["height"])
    return flat


def sample_json(flat: dict[str, Any]) -> dict[str, Any]:
    """key.json: the metadata with the text score and dup info as objects (text null when not scored)."""
    doc = {k: v for k, v in flat.items() if not k.startswith(("text_", "dup_"))}
    scored = flat.get("text_boxes") is not None
    doc["text"] = {name: flat[f"text_{name}"] for name in SCORE} if scored else None
    doc["dup"] = {"cluster": flat["dup_cluster"], "cluster_size": flat["dup_cluster_size"]}
    return doc


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    tar.addfile(info, io.BytesIO(data))


def write_tar(samples: Iterable[tuple[str, dict[str, bytes]]]) -> bytes:
    """A tar of (key, {extension: bytes}) samples, members in the given order, nothing in them that varies."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            for ext, data in members.items():
                _member(tar, f"{key}.{ext}", data)
    return buf.getvalue()


def _final_sample(row: dict[str, Any]) -> tuple[str, dict[str, bytes]]:
    key = row["key"]
    if not KEY.match(key):
        raise ValueError(f"not a shard key (32 lower-case hex digits): {key!r}")
    doc = json.dumps(sample_json(metadata(row)), sort_keys=True, ensure_ascii=False).encode()
    ext, picture_bytes = row["picture"]
    return key, {ext: picture_bytes, "json": doc, "txt": (row["alt"] or "").encode()}


def tar_bytes(samples: list[dict[str, Any]]) -> bytes:
    """A final shard's WebDataset tar of the samples (joined rows with `data` and `picture_member`'s fields),
    in the given order."""
    return write_tar(_final_sample(row) for row in samples)


def parquet_shard(samples: list[dict[str, Any]], with_images: bool) -> bytes:
    rows = [metadata(row) | ({"data": row["data"]} if with_images else {}) for row in samples]
    return parquet_bytes(rows, SHARD_SCHEMA_WITH_IMAGES if with_images else SHARD_SCHEMA)


def shard_stats(samples: list[dict[str, Any]]) -> bytes:
    """`<shard>_stats.json`, with img2dataset's fields (its users sum these): every sample of a final shard is
    a success. Without its timing fields, so the same inputs still give the same bytes."""
    n = len(samples)
    stats = {"count": n, "successes": n, "failed_to_download": 0, "failed_to_resize": 0,
             "status_dict": {"success": n} if n else {}}
    return json.dumps(stats, indent=4, sort_keys=True).encode()


# OUT/shards/README.md: a dataset card whose metadata tells Hugging Face `datasets` that the tars are the data
# (without it, load_dataset on the folder would take the Parquet files: metadata without pictures).
DATASET_CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: "*.tar"
---
# Dataset made by curate

WebDataset shards (`NNNNN.tar`): each sample is `<key>.jpg` (the picture), `<key>.json` (provenance, sizes,
hashes, text score, duplicate cluster) and `<key>.txt` (the alt text). Beside each tar, `NNNNN.parquet` holds
the same metadata as a table, and `NNNNN_stats.json` img2dataset's per-shard counts; `_MANIFEST.json` lists
every file with its size and SHA-256.

```python
from datasets import load_dataset
ds = load_dataset("path/to/this/folder", split="train")  # columns: __key__, __url__, jpg, json, txt
```
"""


def locate(out: str, key: str) -> tuple[str, int] | None:
    """(shard, place) of a written key, from OUT/index (one index file read: the key's file is
    `shard_of(key, n)`, rows in key order), or None when the dataset does not hold it: `OUT/shards/<shard>.tar`
    has the sample, `<shard>.parquet` its row at `place`."""
    manifest = read_json(join(out, "shards", MANIFEST)) or {}
    n = manifest.get("index_files")
    if not n:
        return None
    with fsspec.open(join(out, "index", table_file("keys", shard_of(key, n), n)), "rb") as fh:
        rows = pq.read_table(fh, filters=[("key", "==", key)]).to_pylist()
    return (rows[0]["shard"], rows[0]["place"]) if rows else None
