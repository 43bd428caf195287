"""Decode and validate one image: format, pixel budget, size and aspect, then a small RGB analysis view.

`decode(data)` returns a `Decoded` (facts about the image, an RGB view for analysis, a hash of its pixels)
or a `Refusal` (a reason code from `curate.reasons` and a detail). It never raises for any bytes and never
decodes pixels before the cheap checks pass. The checks, in order:

1. Format, from magic bytes before Pillow sees the data (`curate.mime.sniff` plus a few formats sniff
   does not name): only `ImageConfig.formats` are opened, and Pillow is told to try that one format only,
   so a mislabelled file never reaches another plugin's parser. Not an image at all: `undecodable`.
2. Pixel budget, from the header: over `max_pixels` is `too_many_pixels`. Pillow's own decompression-bomb
   warning is escalated to an error inside the call (a local `warnings.catch_warnings`; Pillow's global
   `MAX_IMAGE_PIXELS` is never changed). Pillow refuses anything over twice its limit (179 MP) on its own,
   so a `max_pixels` above that has no effect.
3. Aspect ratio, then size, from the header (both are the same before and after EXIF rotation): a strip
   is `bad_aspect_ratio` even when it is also thin, a small image of ordinary shape is `too_small`.
4. Decode. Truncated data is `truncated`: Pillow raises unless its global `ImageFile.LOAD_TRUNCATED_IMAGES`
   is set (we rely on its default, False; no installed package changes it), and a WebP shorter than its
   RIFF header says is caught before Pillow sees it. Any other failure is `undecodable`. A JPEG cut just
   before its end marker counts as truncated; an animation cut after its first frame is kept with the
   frames that remain.

What is kept: the format, the displayed size (after EXIF orientation), the original mode, the frame count
and a view. The original bytes are not touched here; the caller carries them on unchanged.

The view is reduced by a power of two, never resampled: the smallest 2**k such that the shorter side is
at most `analysis_side` (so it lies in (analysis_side/2, analysis_side] for larger images). JPEGs get the
first 8x of it from libjpeg's DCT scaling (`draft`, which skips most of the decode work), other formats
and the rest from `Image.reduce` (box averages). It is normalized to RGB: CMYK and palette converted,
alpha (an alpha band, or a palette/grey/RGB `transparency`) composited on white, 16-bit grey scaled by
>> 8 (Pillow's own convert clips at 255, turning it white), EXIF orientation applied; an animation is
represented by its first frame.

`pixel_hash` is the SHA-256 of the displayed size and the RGB pixels at a canonical size that depends
only on the original size (the same power-of-two rule with `PIXEL_HASH_SIDE`), not on `analysis_side`.
The same decoded pixels give the same hash: a lossless re-encode, a JPEG whose metadata alone changed.
Any visible difference gives another. Pixels finer than the canonical scale are averaged away, so two
files that differ only below it (for a JPEG reduced 8x: only in the AC coefficients of some blocks) share
a hash; they are near-duplicates at distance 0 anyway. An EXIF orientation change is a different
displayed picture, hence a different hash.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image

from curate import reasons as R
from curate.config import ImageConfig
from curate.mime import sniff

DEFAULT_CONFIG = ImageConfig()
PIXEL_HASH_SIDE = 512  # canonical shorter side (at most) of the pixels behind pixel_hash
BACKGROUND = (255, 255, 255)  # transparent pixels are shown on white

_PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF", "bmp": "BMP", "tiff": "TIFF"}
_MIME_FORMATS = {"image/jpeg": "jpeg", "image/png": "png", "image/webp": "webp", "image/gif": "gif",
                 "image/bmp": "bmp", "image/tiff": "tiff", "image/x-icon": "ico", "image/avif": "avif",
                 "image/heic": "heic"}
# Formats sniff does not name: still images, so `unsupported_format` rather than `undecodable`.
_OTHER_MAGIC = ((b"\xff\x0a", "jxl"), (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "jxl"),
                (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jp2"), (b"\xff\x4f\xff\x51", "j2k"), (b"8BPS", "psd"),
                (b"qoif", "qoi"), (b"icns", "icns"))
_ANIMATABLE = ("gif", "png", "webp")
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
              7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# What Pillow raises on bad data (its plugins parse with struct and index into bytes). MemoryError is not
# here: under the pixel budget it means the worker is short of memory, which is no fault of the image.
_BAD_DATA = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError, KeyError,
             ZeroDivisionError, OverflowError, RuntimeError)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_BOMB = (Image.DecompressionBombError, Image.DecompressionBombWarning)


@dataclass(frozen=True)
class Decoded:
    format: str  # jpeg | png | webp | gif (| bmp | tiff if configured): from magic bytes
    width: int  # displayed, i.e. after EXIF orientation
    height: int
    mode: str  # Pillow's mode of the file as opened: RGB, L, CMYK, P, LA, RGBA, I;16 ...
    animated: bool
    frames: int
    view: Image.Image  # RGB, shorter side at most analysis_side; see the module docstring
    pixel_hash: str  # sha256 hex of the displayed size and the canonical RGB pixels


@dataclass(frozen=True)
class Refusal:
    reason: str  # a curate.reasons constant
    detail: str


def decode(data: bytes, config: ImageConfig = DEFAULT_CONFIG, analysis_side: int = 512) -> Decoded | Refusal:
    """Check and decode one image's bytes; never raises for any content (see the module docstring)."""
    if analysis_side < 1:
        raise ValueError(f"analysis_side must be >= 1, got {analysis_side}")
    fmt = image_format(data)
    if fmt is None:
        return Refusal(R.UNDECODABLE, f"not an image (starts with {data[:8]!r})")
    if fmt not in config.formats or fmt not in _PILLOW_FORMATS:
        return Refusal(R.UNSUPPORTED_FORMAT, fmt)
    short = _shortfall(fmt, data)
    if short:
        return Refusal(R.TRUNCATED, f"{short} bytes missing from a {len(data)}-byte {fmt}")
    return _open_and_decode(data, fmt, config, analysis_side)


def _open_and_decode(data: bytes, fmt: str, config: ImageConfig, analysis_side: int) -> Decoded | Refusal:
    """Pillow's part: open with the one plugin, check the header, decode; bombs and bad data as refusals."""
    with warnings.catch_warnings():
        # Pillow's other warnings are about metadata we drop (corrupt EXIF, palette transparency). The
        # filters are process-wide: other threads' warnings are filtered too while a call runs.
        warnings.simplefilter("ignore")
        pillow_limit = Image.MAX_IMAGE_PIXELS  # read, never written
        if pillow_limit is not None and config.max_pixels <= pillow_limit:
            warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[fmt]]) as im:
                return _check(im.size, config) or _too_short(fmt, im.size, data) or _decode_open(im, fmt, analysis_side)
        except _BOMB as e:
            return Refusal(R.TOO_MANY_PIXELS, str(e))
        except _BAD_DATA as e:
            return _refusal(e, fmt)


def image_format(data: bytes) -> str | None:
    """Lower-case format name from magic bytes (jpeg, png, webp, gif, bmp, tiff, ico, avif, ...) or None."""
    mime = sniff(data[:16])
    if mime is not None:
        return _MIME_FORMATS.get(mime, mime.removeprefix("image/"))
    other = next((name for magic, name in _OTHER_MAGIC if data.startswith(magic)), None)
    return other or _markup(data[:MARKUP_HEAD])


MARKUP_HEAD = 1024  # bytes that tell SVG and HTML apart from anything else


def _markup(head: bytes) -> str | None:
    """svg or html for vector pictures and web pages (named .jpg or served as images: not decodable
    rasters, but formats we do not take, so `unsupported_format`); None for anything else."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if text.startswith(b"<svg") or (text.startswith((b"<?xml", b"<!--", b"<!doctype svg")) and b"<svg" in text):
        return "svg"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "html"
    return None


def _shortfall(fmt: str, data: bytes) -> int:
    """Bytes missing according to the container's own length field (WebP's RIFF size); 0 if none."""
    if fmt == "webp" and len(data) >= 8:
        return max(0, int.from_bytes(data[4:8], "little") + 8 - len(data))
    return 0


def _check(size: tuple[int, int], config: ImageConfig) -> Refusal | None:
    """The header checks: pixel budget, aspect ratio, shorter side."""
    w, h = size
    if w * h > config.max_pixels:
        return Refusal(R.TOO_MANY_PIXELS, f"{w}x{h} = {w * h} pixels > {config.max_pixels}")
    short, long = min(w, h), max(w, h)
    if short > 0 and long / short > config.max_aspect_ratio:
        return Refusal(R.BAD_ASPECT_RATIO, f"{w}x{h}: {long / short:.1f}:1 > {config.max_aspect_ratio:g}:1")
    if short < config.min_side:
        return Refusal(R.TOO_SMALL, f"{w}x{h}: shorter side {short} < {config.min_side}")
    return None


def _too_short(fmt: str, size: tuple[int, int], data: bytes) -> Refusal | None:
    """A JPEG needs at least one bit of entropy-coded data per 8x8 block of its luma (a Huffman code for the DC
    difference; progressive scans too): fewer bytes cannot hold the pixels the header claims. libjpeg would
    fill the rest with grey and Pillow would call the image valid."""
    w, h = size
    blocks = -(-w // 8) * -(-h // 8)
    if fmt == "jpeg" and len(data) * 8 < blocks:
        return Refusal(R.TRUNCATED, f"{len(data)} bytes cannot hold a {w}x{h} JPEG ({blocks} blocks)")
    return None


def _refusal(e: Exception, fmt: str) -> Refusal:
    if isinstance(e, Image.UnidentifiedImageError):  # its message names the BytesIO object's address
        return Refusal(R.UNDECODABLE, f"Pillow's {fmt} parser refused the header")
    detail = _ADDRESS.sub("", f"{type(e).__name__}: {e}")[:300]  # details must not vary from run to run
    if isinstance(e, EOFError) or (isinstance(e, OSError) and "truncated" in str(e)):
        return Refusal(R.TRUNCATED, detail)
    return Refusal(R.UNDECODABLE, detail)


def halvings(short_side: int, target: int) -> int:
    """The smallest k with ceil(short_side / 2**k) <= target: how often a side is halved for a view."""
    k = 0
    while -(-short_side // (1 << k)) > target:
        k += 1
    return k


def _decode_open(im: Image.Image, fmt: str, analysis_side: int) -> Decoded | Refusal:
    """Decode an opened image that passed the header checks into a `Decoded`."""
    (w, h), mode = im.size, im.mode
    k_hash, k_view = halvings(min(w, h), PIXEL_HASH_SIDE), halvings(min(w, h), analysis_side)
    k = min(k_hash, k_view)
    base = _reduced_rgb(im, fmt, k)
    orientation = _orientation(im)
    frames = _frames(im, fmt)  # after the first frame is in `base`: counting frames seeks
    if isinstance(frames, Refusal):
        return frames
    canonical = _orient(_reduce(base, 1 << (k_hash - k)), orientation)
    view = canonical if k_view == k_hash else _orient(_reduce(base, 1 << (k_view - k)), orientation)
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    digest = hashlib.sha256(f"{w}x{h}:".encode())
    digest.update(canonical.tobytes())
    return Decoded(fmt, w, h, mode, frames > 1, frames, view, digest.hexdigest())


def _reduced_rgb(im: Image.Image, fmt: str, k: int) -> Image.Image:
    """The first frame, RGB, each side divided by 2**k (rounding up); JPEG by DCT scaling up to 8x."""
    w, h = im.size
    factor = 1 << k
    if fmt == "jpeg" and factor > 1:
        scale = min(factor, 8)
        im.draft(im.mode, (w // scale, h // scale))
    im.load()
    done = next((s for s in (8, 4, 2) if s <= factor and im.size == (-(-w // s), -(-h // s))), 1)
    return _reduce(to_rgb(im), factor // done)


def _reduce(image: Image.Image, factor: int) -> Image.Image:
    return image.reduce(factor) if factor > 1 else image


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels as shown: alpha composited on white, 16-bit grey scaled (not clipped), rest converted."""
    if image.mode in _ALPHA_MODES or ("transparency" in image.info and image.mode in ("P", "L", "RGB", "1")):
        rgba = image.convert("RGBA")
        out = Image.new("RGB", image.size, BACKGROUND)
        out.paste(rgba, (0, 0), rgba)
        return out
    if image.mode.startswith("I") or image.mode == "F":
        return _high_depth_to_rgb(image)
    return image if image.mode == "RGB" else image.convert("RGB")


JPEG_QUALITY = 95  # of the JPEG copy of a picture that is no JPEG (the final shards' `<key>.jpg`)


def shown_jpeg(data: bytes) -> bytes | None:
    """A JPEG of a picture decode kept, as it is shown, for readers that apply no EXIF rotation and know one
    format: None when the bytes already are that (a JPEG without EXIF rotation), else its first frame as shown
    (EXIF orientation applied, alpha on white, 16-bit scaled) at quality 95, 4:4:4, without metadata: the same
    bytes for the same input and Pillow."""
    with Image.open(io.BytesIO(data)) as im:
        orientation = _orientation(im)
        if im.format == "JPEG" and orientation == 1:
            return None
        im.seek(0)
        rgb = _orient(to_rgb(im), orientation)
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buf.getvalue()


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """I;16* (16-bit) and I (32-bit, holding 16-bit samples as Pillow opens them) by >> 8; F clipped."""
    a = np.asarray(image)
    if image.mode == "F":
        grey = np.clip(a, 0, 255).astype(np.uint8)
    else:
        grey = (np.clip(a.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


def _orientation(im: Image.Image) -> int:
    """EXIF (or XMP) orientation 1-8; 1 when absent, unreadable or out of range (a broken tag is ignored)."""
    try:
        value = im.getexif().get(ExifTags.Base.Orientation, 1)
    except _BAD_DATA:
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def _orient(image: Image.Image, orientation: int) -> Image.Image:
    method = _TRANSPOSE.get(orientation)
    return image.transpose(method) if method is not None else image


def _frames(im: Image.Image, fmt: str) -> int | Refusal:
    """Frames of an animation (GIF, APNG, animated WebP); 1 for other formats (MPO pictures are no frames).

    A file that ends early still counts the frames before the end (the first frame decoded whole); a
    frame whose structure is broken makes the file undecodable."""
    if fmt not in _ANIMATABLE:
        return 1
    try:
        return max(1, int(getattr(im, "n_frames", 1)))
    except _BAD_DATA as e:
        return _refusal(e, fmt)
