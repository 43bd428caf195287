"""Decode benchmark: decode + validate + hash (curate.imaging, curate.hashing) images/s on one core for
1024x1024 JPEGs, next to a plain full Pillow decode of the same bytes in the same run (goal >= 300 img/s).
Rounds alternate between the two paths so that neither inherits a warmer allocator."""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image

from curate.hashing import phash64, sha256_hex
from curate.imaging import Decoded, decode
from curate.sample import images as im


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _grainy(image: Image.Image, seed: int) -> Image.Image:
    noise = np.random.default_rng(seed).normal(0, 6, (image.height, image.width, 1))
    return Image.fromarray(np.clip(np.asarray(image, np.float64) + noise, 0, 255).astype(np.uint8))


def _ours(data: bytes) -> None:
    result = decode(data)
    assert isinstance(result, Decoded)
    sha256_hex(data)
    phash64(result.view)


def _plain(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as src:
        src.load()
        src.convert("RGB")


def bench(rounds: int = 3) -> list[dict]:
    smooth = [im.photo(seed, (1024, 1024)).image for seed in range(12)]
    sets = {"sample photos": [_jpeg(image) for image in smooth],
            "grainy photos": [_jpeg(_grainy(image, i)) for i, image in enumerate(smooth[:6])]}
    rows = []
    for label, images in sets.items():
        seconds = {"ours": 0.0, "plain": 0.0}
        for _ in range(rounds):
            for name, fn in (("ours", _ours), ("plain", _plain)):
                start = time.perf_counter()
                for data in images:
                    fn(data)
                seconds[name] += time.perf_counter() - start
        n = rounds * len(images)
        rows.append({"benchmark": "decode", "images": label, "kb_per_image": round(sum(map(len, images)) / len(images) / 1024),
                     "curate_decode_validate_hash_per_s": round(n / seconds["ours"]),
                     "plain_pillow_full_decode_per_s": round(n / seconds["plain"]),
                     "ratio": round(seconds["plain"] / seconds["ours"], 2)})
    return rows
