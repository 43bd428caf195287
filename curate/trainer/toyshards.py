"""Small datasets in curate's shard format, for the trainer's tests and benchmarks (no network, no crawl).

Layout (as `curate run` writes it): DIR/NNNNN.tar with `{key}.{ext}` (image bytes), `{key}.json`
(metadata) and `{key}.txt` (alt text) per sample; DIR/NNNNN.parquet with one row per sample (metadata
columns and a `data` column of image bytes); DIR/_MANIFEST.json. Pictures come from the sample crawl's
renderers (scikit-image photos, synthetic scenes, documents, charts, tables, signs, screenshots) with
seeds below 2**32, like the sample crawl's; the probes use seeds from PROBE_SEED_OFFSET up, so probe
images are never training images.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from curate.sample import images as im

KINDS: dict[str, Callable[..., im.Rendered]] = {
    "photo": im.photo, "natural": im.natural, "document": im.document, "chart": im.chart, "table": im.table,
    "sign": im.sign, "screenshot": im.screenshot,
}
_FORMATS = (("jpg", "JPEG"), ("png", "PNG"), ("webp", "WEBP"))


def sample_seed(seed: int, i: int) -> int:
    return int.from_bytes(hashlib.sha256(f"toyshards:{seed}:{i}".encode()).digest()[:4], "big")


def render(kind: str, seed: int, size: int) -> Image.Image:
    return KINDS[kind](seed, (size, size)).image.convert("RGB")


def encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **({"quality": 90} if fmt in ("JPEG", "WEBP") else {}))
    return buf.getvalue()


def samples(n: int, seed: int = 0, size: int = 64) -> list[dict[str, Any]]:
    """n samples: kinds in rotation, formats in rotation, each with its metadata record."""
    kinds = list(KINDS)
    out = []
    for i in range(n):
        kind, (ext, fmt) = kinds[i % len(kinds)], _FORMATS[i % len(_FORMATS)]
        s = sample_seed(seed, i)
        data = encode(render(kind, s, size), fmt)
        key = hashlib.sha256(f"https://toy.example/{seed}/{i}.{ext}".encode()).hexdigest()[:32]
        meta = {"key": key, "url": f"https://toy.example/{seed}/{i}.{ext}", "alt": f"a {kind}", "width": size,
                "height": size, "format": fmt.lower(), "sha256": hashlib.sha256(data).hexdigest(), "text": None,
                "light": kind not in ("photo", "natural"), "heavy": kind in ("document", "chart", "table"),
                "kind": kind}
        out.append({"key": key, "ext": ext, "data": data, "meta": meta})
    return out


def write_shards(url: str, records: list[dict[str, Any]], per_shard: int) -> list[str]:
    """Write records as NNNNN.tar + NNNNN.parquet + _MANIFEST.json under `url`; returns the tar paths.
    A record may lack "data" (a sample without its image member) or carry bytes that are not an image."""
    import webdataset as wds

    fs, root = fsspec.core.url_to_fs(url)
    root = root.rstrip("/")
    fs.makedirs(root, exist_ok=True)
    tars, shards = [], []
    for n, start in enumerate(range(0, len(records), per_shard)):
        chunk = records[start:start + per_shard]
        buf = io.BytesIO()
        with wds.TarWriter(buf, encoder=False, mtime=0) as sink:
            for r in chunk:
                sample = {"__key__": r["key"], "json": json.dumps(r["meta"]).encode(), "txt": r["meta"]["alt"].encode()}
                if r.get("data") is not None:
                    sample[r["ext"]] = r["data"]
                sink.write(sample)
        tar = f"{root}/{n:05d}.tar"
        fs.pipe_file(tar, buf.getvalue())
        rows = [{**{k: v for k, v in r["meta"].items() if k != "text"}, "data": r.get("data")} for r in chunk]
        table = pa.Table.from_pylist(rows)
        pbuf = io.BytesIO()
        pq.write_table(table, pbuf)
        fs.pipe_file(f"{root}/{n:05d}.parquet", pbuf.getvalue())
        tars.append(tar)
        shards.append({"shard": f"{n:05d}", "samples": len(chunk)})
    fs.pipe_file(f"{root}/_MANIFEST.json", json.dumps({"shards": shards}, indent=2).encode())
    return tars
