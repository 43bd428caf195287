"""Distinct photo-like pictures in any number, for dedup at scale: no two seeds make near-duplicates.

The sample crawl draws its photographs from 13 scikit-image photos, so its photos are crops of one another and
the partners a picture has grow with the crawl (BENCHMARKS.md, issue 22). A scale benchmark needs the
opposite: a workload whose duplicate density does not grow with its size. `distinct(seed)` makes a picture
that shares no local structure with another seed's:

- a background of spectral-synthesis noise (clouds, terrain) in two random colours;
- 3-6 patches of the scikit-image photos, each a random window of a random photo, bent by its own smooth
  random displacement field (several pixels: ORB's binary tests compare pixels up to ~15 px apart, so the
  same window bent two ways gives other descriptors), turned and scaled, recoloured through a random
  non-monotonic tone curve per channel (a monotonic one would leave ORB's comparisons as they were), and
  pasted under a feathered elliptic mask;
- a few words in a random font, size and colour (text corners are where web pictures share keypoints);
- sensor-like noise.

`benchmarks/scale.py` checks with the matcher that they are distinct, and plants edited copies among them.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = (480, 360)
_WORDS = ("sale", "new", "photo", "2021", "menu", "Open", "STOP", "news", "home", "shop", "Blog", "about", "free",
          "click", "more", "view", "map", "info", "today", "best", "TOP 10", "price", "live", "hotel", "sport")
_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSerif-Bold.ttf")


def _tone(g: np.random.Generator) -> np.ndarray:
    """A 256-entry lookup per channel (3 x 256 uint8): a random mix of the identity and waves, not monotonic."""
    x = np.arange(256, dtype=np.float32) / 255
    curves = []
    for _ in range(3):
        cycles, phase, mix = g.uniform(0.5, 1.5), g.uniform(0, 2 * np.pi), g.uniform(0.3, 0.6)
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * cycles * x + phase)
        curves.append(np.clip(255 * ((1 - mix) * x + mix * wave), 0, 255).astype(np.uint8))
    return np.stack(curves)


def _patch(g: np.random.Generator, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(RGB patch side x side, alpha side x side float32): a bent, turned, recoloured window of a photo."""
    import cv2

    from curate.sample.images import PHOTO_SOURCES, _source

    src = np.asarray(_source(PHOTO_SOURCES[int(g.integers(len(PHOTO_SOURCES)))]).convert("RGB"))
    h, w = src.shape[:2]
    window = int(min(h, w) * g.uniform(0.2, 0.6))
    x0, y0 = int(g.integers(0, w - window + 1)), int(g.integers(0, h - window + 1))
    angle, centre = g.uniform(-40, 40), (x0 + window / 2, y0 + window / 2)
    turn = cv2.getRotationMatrix2D(centre, angle, side / window)
    turn[:, 2] += np.array([side / 2, side / 2]) - np.array(centre)
    flat = cv2.warpAffine(src, turn, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    coarse = max(3, side // 24)  # the displacement field: smooth noise, several pixels, its own per patch
    amplitude = g.uniform(4, 9)
    field = [cv2.resize(g.normal(size=(coarse, coarse)).astype(np.float32), (side, side),
                        interpolation=cv2.INTER_CUBIC) * amplitude for _ in range(2)]
    grid_x, grid_y = np.meshgrid(np.arange(side, dtype=np.float32), np.arange(side, dtype=np.float32))
    bent = cv2.remap(flat, grid_x + field[0], grid_y + field[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    lut = _tone(g)
    recoloured = np.stack([lut[c][bent[..., c]] for c in range(3)], axis=-1)
    across = (np.arange(side, dtype=np.float32) - side / 2) / (side / 2)  # -1 .. 1 over the patch
    ellipse = (across[None, :] / g.uniform(0.7, 1.0)) ** 2 + (across[:, None] / g.uniform(0.7, 1.0)) ** 2
    alpha = np.clip((1.0 - ellipse) * 4, 0, 1).astype(np.float32)
    return recoloured, alpha


def distinct(seed: int, size: tuple[int, int] = SIZE) -> Image.Image:
    """The picture of `seed` (RGB, `size`): the same on every machine for one seed, distinct across seeds."""
    from curate.sample.images import _font, _fractal

    g = np.random.default_rng([seed, 0x5EED])
    w, h = size
    base = _fractal(g, (h, w), g.uniform(1.6, 2.6))[..., None]
    low, high = g.uniform(0, 255, 3), g.uniform(0, 255, 3)
    canvas = (low + (high - low) * base).astype(np.float32)
    for _ in range(int(g.integers(3, 7))):
        side = int(g.integers(min(w, h) // 3, min(w, h)))
        patch, alpha = _patch(g, side)
        x, y = int(g.integers(-side // 4, w - side * 3 // 4)), int(g.integers(-side // 4, h - side * 3 // 4))
        cx0, cy0, cx1, cy1 = max(0, x), max(0, y), min(w, x + side), min(h, y + side)
        px0, py0 = cx0 - x, cy0 - y
        a = alpha[py0:py0 + cy1 - cy0, px0:px0 + cx1 - cx0, None]
        canvas[cy0:cy1, cx0:cx1] = (1 - a) * canvas[cy0:cy1, cx0:cx1] + a * patch[py0:py0 + cy1 - cy0,
                                                                               px0:px0 + cx1 - cx0]
    picture = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
    draw, rng = ImageDraw.Draw(picture), random.Random(f"distinct-words:{seed}")
    for _ in range(rng.randint(0, 3)):
        font = _font(rng.choice(_FONTS), rng.randint(14, 44))
        text = " ".join(rng.sample(_WORDS, rng.randint(1, 3)))
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.text((rng.randrange(-20, w - 40), rng.randrange(-10, h - 20)), text, fill=colour, font=font)
    picture = picture.filter(ImageFilter.GaussianBlur(g.uniform(0.0, 0.8)))
    grain = g.normal(0, g.uniform(1.5, 5.0), (h, w, 1)).astype(np.float32)
    return Image.fromarray(np.clip(np.asarray(picture, dtype=np.float32) + grain, 0, 255).astype(np.uint8), "RGB")
