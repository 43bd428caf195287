"""Edited copies of a picture, as the web makes them: the near-duplicates dedup must catch.

Families (each draws its parameters from a seeded generator, so a copy is reproducible):
- `crop`: each side cut by 0-10% of its dimension, independently (off-centre crops included);
- `rescale`: 25-200% of the size;
- `jpeg`: re-encoded at quality 30-95; `format`: saved as PNG or lossy WebP;
- `brightness`, `contrast`: +-15%;
- `caption`: a text bar over the bottom (up to 10% of the area); `watermark`: a half-transparent logo with text
  in a corner (up to 10% of the area);
- `combo`: two different families of the above, one after the other.
Every copy is returned as encoded bytes (JPEG quality 90 unless the family chose the encoding).
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageEnhance, ImageFont

FAMILIES = ("crop", "rescale", "jpeg", "format", "brightness", "contrast", "caption", "watermark", "combo")


def _crop(im: Image.Image, rng: random.Random) -> Image.Image:
    w, h = im.size
    left, right = rng.uniform(0, 0.10) * w, rng.uniform(0, 0.10) * w
    top, bottom = rng.uniform(0, 0.10) * h, rng.uniform(0, 0.10) * h
    return im.crop((round(left), round(top), w - round(right), h - round(bottom)))


def _rescale(im: Image.Image, rng: random.Random) -> Image.Image:
    factor = rng.uniform(0.25, 2.0)
    w, h = im.size
    return im.resize((max(8, round(w * factor)), max(8, round(h * factor))), Image.Resampling.LANCZOS)


def _brightness(im: Image.Image, rng: random.Random) -> Image.Image:
    return ImageEnhance.Brightness(im).enhance(rng.choice((-1, 1)) * rng.uniform(0.05, 0.15) + 1)


def _contrast(im: Image.Image, rng: random.Random) -> Image.Image:
    return ImageEnhance.Contrast(im).enhance(rng.choice((-1, 1)) * rng.uniform(0.05, 0.15) + 1)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(8, size))


def _caption(im: Image.Image, rng: random.Random) -> Image.Image:
    out = im.copy()
    w, h = out.size
    bar = max(6, round(h * rng.uniform(0.05, 0.10)))
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, h - bar, w, h), fill=rng.choice(((0, 0, 0), (255, 255, 255), (200, 30, 30))))
    text = rng.choice(("Photo: staff", "SALE 50% OFF", "(c) 2022 example.com", "Read more at news"))
    colour = (255, 255, 255) if out.getpixel((0, h - 1)) != (255, 255, 255) else (0, 0, 0)
    draw.text((max(2, w // 40), h - bar + bar // 6), text, fill=colour, font=_font(round(bar * 0.6)))
    return out


def _watermark(im: Image.Image, rng: random.Random) -> Image.Image:
    base = im.convert("RGBA")
    w, h = base.size
    share = rng.uniform(0.03, 0.10)
    mw, mh = max(8, round(w * (share ** 0.5) * 1.4)), max(6, round(h * (share ** 0.5) / 1.4))
    mark = Image.new("RGBA", (mw, mh), (255, 255, 255, 0))
    draw = ImageDraw.Draw(mark)
    draw.rounded_rectangle((0, 0, mw - 1, mh - 1), radius=min(mw, mh) // 4, fill=(255, 255, 255, 110))
    draw.text((mw // 10, mh // 4), rng.choice(("stock", "© photo", "SAMPLE")), fill=(0, 0, 0, 160),
              font=_font(round(mh * 0.45)))
    x = rng.choice((round(w * 0.02), w - mw - round(w * 0.02)))
    y = rng.choice((round(h * 0.02), h - mh - round(h * 0.02)))
    base.alpha_composite(mark, (max(0, x), max(0, y)))
    return base.convert("RGB")


_PIXEL_EDITS: dict[str, Callable[[Image.Image, random.Random], Image.Image]] = {
    "crop": _crop, "rescale": _rescale, "brightness": _brightness, "contrast": _contrast, "caption": _caption,
    "watermark": _watermark,
}


def _encode(im: Image.Image, family: str, rng: random.Random) -> bytes:
    buf = io.BytesIO()
    if family == "jpeg":
        im.save(buf, format="JPEG", quality=rng.randint(30, 95))
    elif family == "format":
        if rng.random() < 0.5:
            im.save(buf, format="PNG", compress_level=1)  # the pixels are the same at any level
        else:
            im.save(buf, format="WEBP", quality=80)
    else:
        im.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def edited(picture: Image.Image, family: str, seed: int) -> tuple[bytes, str]:
    """(encoded copy, what was done) of an RGB picture."""
    rng = random.Random(f"{family}:{seed}")
    if family == "combo":
        first, second = rng.sample([f for f in FAMILIES if f != "combo"], 2)
        encoders = [f for f in (first, second) if f in ("jpeg", "format")]
        im = picture
        for f in (first, second):
            if f in _PIXEL_EDITS:
                im = _PIXEL_EDITS[f](im, rng)
        return _encode(im, encoders[0] if encoders else "", rng), f"{first}+{second}"
    im = _PIXEL_EDITS[family](picture, rng) if family in _PIXEL_EDITS else picture
    return _encode(im, family, rng), family
