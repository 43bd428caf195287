"""Tests of curate.imaging.decode: formats, budgets, sizes, normalization, orientation, pixel hashes, speed,
and a mutation test (byte flips, cuts and splices of valid images: only reason-coded refusals come out)."""

from __future__ import annotations

import collections
import io
import random
import struct
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from curate import reasons as R
from curate.config import ImageConfig
from curate.hashing import sha256_hex
from curate.imaging import DEFAULT_CONFIG, PIXEL_HASH_SIDE, Decoded, Refusal, decode, halvings, image_format
from curate.sample import images as im

VARIANTS = 450  # per base image: 11 bases, ~5000 variants
DECODE_REASONS = {R.UNSUPPORTED_FORMAT, R.TOO_MANY_PIXELS, R.UNDECODABLE, R.TRUNCATED, R.TOO_SMALL,
                  R.BAD_ASPECT_RATIO}


def encode(image: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def decoded(data: bytes, config: ImageConfig = DEFAULT_CONFIG, analysis_side: int = 512) -> Decoded:
    result = decode(data, config, analysis_side)
    assert isinstance(result, Decoded), result
    return result


def refused(data: bytes, reason: str, config: ImageConfig = DEFAULT_CONFIG) -> Refusal:
    result = decode(data, config)
    assert isinstance(result, Refusal), result
    assert result.reason == reason, result
    return result


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size
    return float(np.abs(pixels(a) - pixels(b)).mean())


def reduced(image: Image.Image, short_side: int = PIXEL_HASH_SIDE) -> Image.Image:
    factor = 1 << halvings(min(image.size), short_side)
    return image.reduce(factor) if factor > 1 else image


# ---------------------------------------------------------------------------------------------------------
# Formats


@pytest.mark.parametrize("make", [im.bmp, im.tiff])
def test_bmp_and_tiff_are_unsupported_by_magic_bytes(make):
    refused(make(1), R.UNSUPPORTED_FORMAT)


@pytest.mark.parametrize(("head", "name"), [
    (b"\x00\x00\x01\x00\x01\x00\x10\x10", "ico"),
    (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00", "avif"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "heic"),
    (b"\xff\x0a\xfa\x7f", "jxl"),
    (b"8BPS\x00\x01", "psd"),
])
def test_other_image_formats_are_unsupported(head, name):
    assert image_format(head) == name
    assert refused(head + bytes(64), R.UNSUPPORTED_FORMAT).detail == name


@pytest.mark.parametrize("data", [b"", b"\xff", b"RIFF\x00\x00", b"%PDF-1.7\n" + bytes(100), bytes(range(256)) * 4])
def test_bytes_that_are_no_image_are_undecodable(data):
    refused(data, R.UNDECODABLE)  # (an HTML page is an unsupported format: see the test below)


def test_an_error_page_served_as_an_image_is_an_unsupported_format():
    assert refused(im.html_bytes(), R.UNSUPPORTED_FORMAT).detail == "html"


def test_formats_come_from_the_config():
    png = encode(im.photo(1, (200, 150)).image, "PNG")
    assert decoded(png).format == "png"
    refused(png, R.UNSUPPORTED_FORMAT, config=ImageConfig(formats=("jpeg",)))
    bmp = im.bmp(2)
    result = decoded(bmp, config=ImageConfig(formats=("jpeg", "bmp")))
    assert (result.format, result.mode) == ("bmp", "RGB")


def test_a_png_named_jpeg_by_its_first_bytes_is_not_parsed_as_png():
    """The format is the magic bytes' verdict; Pillow gets that one plugin only."""
    png = encode(im.photo(1, (200, 150)).image, "PNG")
    refused(b"\xff\xd8\xff" + png[3:], R.UNDECODABLE)


# ---------------------------------------------------------------------------------------------------------
# Pixel budget


def test_bomb_is_refused_from_its_header_fast_and_small():
    bomb = im.bomb()
    decode(bomb)  # warm up imports and plugin registration
    tracemalloc.start()
    start = time.perf_counter()
    result = decode(bomb)
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert isinstance(result, Refusal) and result.reason == R.TOO_MANY_PIXELS
    assert "144000000" in result.detail
    print(f"bomb refused in {elapsed * 1000:.2f} ms, tracemalloc peak {peak / 1e6:.2f} MB")
    assert elapsed < 0.2
    assert peak < 20e6


def test_bomb_does_not_grow_the_resident_set(tmp_path: Path):
    """tracemalloc does not see Pillow's pixel buffers (plain malloc): peak RSS in a fresh process does."""
    path = tmp_path / "bomb.png"
    path.write_bytes(im.bomb())
    script = (
        "import sys, re\n"
        "from curate.imaging import decode\n"
        "def hwm(): return int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
        "data = open(sys.argv[1], 'rb').read(); decode(data[:100]); before = hwm()\n"
        "result = decode(data); print(result.reason, hwm() - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[1]).stdout.split()
    print(f"bomb: peak RSS grew by {int(out[1]) / 1024:.1f} MB")
    assert out[0] == R.TOO_MANY_PIXELS
    assert int(out[1]) < 20 * 1024  # kB; decoding it would take 144 MB


def test_configured_pixel_budget_below_pillows():
    image = Image.new("RGB", (1200, 1000), (30, 60, 90))
    data = encode(image, "JPEG")
    assert "1200000" in refused(data, R.TOO_MANY_PIXELS, config=ImageConfig(max_pixels=1_000_000)).detail
    assert decoded(data, config=ImageConfig(max_pixels=1_200_000)).width == 1200


def test_a_budget_above_pillows_limit_is_ours_to_enforce():
    """Pillow's warning (at 89.5 MP) is not escalated when the configured budget is higher: our check decides."""
    result = refused(im.bomb(), R.TOO_MANY_PIXELS, config=ImageConfig(max_pixels=100_000_000))
    assert result.detail == "12000x12000 = 144000000 pixels > 100000000"


def test_decode_leaves_pillow_and_warning_globals_alone():
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters))
    for data in (im.bomb(), im.truncated_jpeg(0), im.cmyk_jpeg(0), im.corrupt_bytes(0)):
        decode(data)
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters)) == before


def test_a_gif_header_claiming_a_huge_screen_is_refused():
    gif = bytearray(encode(Image.new("P", (100, 100)), "GIF"))
    gif[6:10] = struct.pack("<HH", 65535, 65535)
    refused(bytes(gif), R.TOO_MANY_PIXELS)


def test_a_jpeg_header_claiming_a_huge_size_is_refused_without_decoding():
    jpeg = bytearray(encode(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    refused(bytes(jpeg), R.TOO_MANY_PIXELS)


# ---------------------------------------------------------------------------------------------------------
# Sizes and aspect


@pytest.mark.parametrize("fmt", ["gif", "png", "webp", "jpeg"])
def test_tracking_pixels_are_too_small(fmt):
    refused(im.tracking_pixel(fmt), R.TOO_SMALL)


@pytest.mark.parametrize("seed", range(4))
def test_small_images_are_too_small(seed):
    assert "< 64" in refused(im.small_image(seed), R.TOO_SMALL).detail


@pytest.mark.parametrize("seed", range(6))
def test_strips_are_a_bad_aspect_ratio_even_when_thin(seed):
    refused(im.extreme_aspect(seed), R.BAD_ASPECT_RATIO)


def test_size_and_aspect_limits_are_inclusive_and_configurable():
    def png(w: int, h: int) -> bytes:
        return encode(Image.new("RGB", (w, h), (200, 100, 50)), "PNG")

    assert decoded(png(256, 64)).width == 256  # 4:1 and 64 px: both at the limit
    refused(png(257, 64), R.BAD_ASPECT_RATIO)
    refused(png(64, 257), R.BAD_ASPECT_RATIO)
    refused(png(200, 63), R.TOO_SMALL)
    refused(png(1200, 120), R.BAD_ASPECT_RATIO)  # the sample crawl's banner
    assert decoded(png(1200, 120), config=ImageConfig(max_aspect_ratio=10)).height == 120
    refused(png(100, 100), R.TOO_SMALL, config=ImageConfig(min_side=101))


# ---------------------------------------------------------------------------------------------------------
# Damaged files


def test_corrupt_bytes_are_undecodable_with_a_stable_detail():
    first, again = refused(im.corrupt_bytes(3), R.UNDECODABLE), refused(im.corrupt_bytes(3), R.UNDECODABLE)
    assert first.detail == again.detail
    assert "0x" not in first.detail


@pytest.mark.parametrize("seed", range(3))
def test_truncated_jpeg(seed):
    refused(im.truncated_jpeg(seed), R.TRUNCATED)


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "WEBP", "JPEG"])
def test_truncated_files_of_every_format(fmt):
    data = encode(im.photo(4, (400, 300)).image, fmt)
    for fraction in (0.3, 0.6, 0.9):
        refused(data[: int(len(data) * fraction)], R.TRUNCATED)


def test_a_truncated_animation_keeps_the_frames_before_the_cut():
    """The first frame is whole, which is what is analysed and trained on; later frames are not counted."""
    data = im.animated_gif(2)
    full = decoded(data)
    cut = decoded(data[: int(len(data) * 0.6)])
    assert 1 <= cut.frames < full.frames
    assert cut.pixel_hash == full.pixel_hash


# ---------------------------------------------------------------------------------------------------------
# Modes, frames, orientation


def test_cmyk_jpeg_is_converted_with_adobe_inversion():
    result = decoded(im.cmyk_jpeg(5))
    assert (result.format, result.mode, result.view.mode) == ("jpeg", "CMYK", "RGB")
    shown = im.photo(5, (result.width, result.height)).image  # the same picture, before CMYK encoding
    assert mean_abs_diff(result.view, reduced(shown)) < 6  # inverted CMYK would be off by ~100


def test_16_bit_grey_is_scaled_not_clipped():
    grey = Image.fromarray(np.full((200, 300), 0x8000 + 0x7F, np.uint16))
    data = encode(grey, "PNG")
    result = decoded(data)
    assert result.mode.startswith("I;16")
    assert pixels(result.view).mean() == 128  # Pillow's convert("RGB") would give 255


def test_sample_png16():
    data = im.png16(3)
    result = decoded(data)
    assert result.mode == "I;16"
    shown = im.photo(3, (result.width, result.height)).image.convert("L").convert("RGB")
    assert pixels(result.view).mean() < 200
    assert mean_abs_diff(result.view, reduced(shown)) < 2


def test_palette_with_transparency_is_composited_on_white():
    data = im.palette_transparent_png(2)
    result = decoded(data)
    assert result.mode == "P"
    with Image.open(io.BytesIO(data)) as src:
        index = np.asarray(src)
        palette = np.asarray(src.getpalette() or [])[:15].reshape(5, 3)
    view = np.asarray(result.view)
    assert result.view.size == (result.width, result.height)
    assert (index == 0).any() and (index != 0).any()
    assert (view[index == 0] == 255).all()
    assert (view[index != 0] == palette[index[index != 0]]).all()


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_alpha_is_composited_on_white(mode):
    rgba = np.asarray(im.photo(6, (300, 200)).image.convert(mode).convert("RGBA")).copy()
    rgba[:, :100, 3] = 0
    rgba[:, 100:200, 3] = 128
    result = decoded(encode(Image.fromarray(rgba).convert(mode), "PNG"))
    assert result.mode == mode
    view = pixels(result.view)
    assert (view[:, :100] == 255).all()
    half = (rgba[:, 100:200, :3].astype(np.float64) * 128 + 255 * 127) / 255
    assert np.abs(view[:, 100:200] - half).max() <= 2


def test_animated_gif_is_flagged_and_analysed_on_its_first_frame():
    data = im.animated_gif(3)
    result = decoded(data)
    with Image.open(io.BytesIO(data)) as src:
        frames = getattr(src, "n_frames", 1)
        src.seek(0)
        first = src.convert("RGB")
    assert 3 <= frames <= 6
    assert (result.format, result.animated, result.frames, result.mode) == ("gif", True, frames, "P")
    assert mean_abs_diff(result.view, first) == 0


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_animated_png_and_webp(fmt):
    frames = [im.photo(7, (240, 180)).image, im.natural(7, (240, 180)).image, im.photo(8, (240, 180)).image]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], lossless=True)
    result = decoded(data)
    assert (result.animated, result.frames) == (True, 3)
    assert mean_abs_diff(result.view, frames[0]) < 1


def test_still_images_are_not_animated():
    result = decoded(im.webp(4))
    assert (result.format, result.mode, result.animated, result.frames) == ("webp", "RGB", False, 1)
    assert max(result.view.size) == max(result.width, result.height)


@pytest.mark.parametrize("seed", range(4))
def test_exif_orientation_applies_to_size_and_view(seed):
    data, (w, h) = im.exif_rotated_jpeg(seed)
    result = decoded(data)
    assert (result.width, result.height) == (w, h)
    shown = reduced(im.photo(seed, (w, h)).image)
    assert result.view.size == shown.size
    assert mean_abs_diff(result.view, shown) < 6  # the other rotation would be a different picture
    upside_down = shown.transpose(Image.Transpose.ROTATE_180)
    assert mean_abs_diff(result.view, upside_down) > 20


def test_a_broken_exif_block_is_ignored():
    jpeg = encode(im.photo(1, (200, 150)).image, "JPEG")
    garbage = b"Exif\x00\x00MM\x00*" + bytes(range(40))
    spliced = jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage + jpeg[2:]
    assert (decoded(spliced).width, decoded(spliced).height) == (200, 150)


# ---------------------------------------------------------------------------------------------------------
# pixel_hash


def with_metadata(jpeg: bytes) -> bytes:
    """The same JPEG with an EXIF description and a COM comment spliced in after SOI."""
    exif = Image.Exif()
    exif[0x010E] = "a description that changes nothing"
    app1 = exif.tobytes()
    comment = b"a comment"
    return (jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
            + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + jpeg[2:])


@pytest.mark.parametrize("size", [(300, 200), (700, 600)])  # the second is reduced 2x
def test_pixel_hash_equal_for_lossless_reencodes(size):
    image = im.photo(9, size).image
    fast, small = encode(image, "PNG", compress_level=1), encode(image, "PNG", compress_level=9)
    webp = encode(image, "WEBP", lossless=True, quality=0, method=0)  # least effort: still lossless
    assert sha256_hex(fast) != sha256_hex(small)
    hashes = {decoded(data).pixel_hash for data in (fast, small, webp)}
    assert len(hashes) == 1


def test_pixel_hash_equal_for_a_metadata_only_jpeg_change():
    jpeg = encode(im.photo(10, (900, 700)).image, "JPEG", quality=90)
    other = with_metadata(jpeg)
    assert other != jpeg and Image.open(io.BytesIO(other)).getexif()[0x010E].startswith("a description")
    assert decoded(jpeg).pixel_hash == decoded(other).pixel_hash


def test_pixel_hash_differs_for_different_pixels():
    image = im.photo(11, (300, 200)).image
    changed = image.copy()
    changed.putpixel((150, 100), (0, 0, 0) if image.getpixel((150, 100)) != (0, 0, 0) else (255, 255, 255))
    jpeg = encode(image, "JPEG", quality=90)
    hashes = [decoded(data).pixel_hash for data in (
        encode(image, "PNG"), encode(changed, "PNG"), encode(im.photo(12, (300, 200)).image, "PNG"),
        jpeg, encode(image, "JPEG", quality=89), encode(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "PNG"),
    )]
    assert len(set(hashes)) == len(hashes)


def test_pixel_hash_follows_the_displayed_picture():
    """Same displayed picture, same hash (EXIF-rotated PNG vs the rotated pixels); the orientation tag alone
    changes the picture shown, hence the hash."""
    shown = im.photo(15, (200, 300)).image
    stored = shown.transpose(Image.Transpose.ROTATE_90)  # orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    tagged = decoded(encode(stored, "PNG", exif=exif.tobytes()))
    assert (tagged.width, tagged.height) == (200, 300)
    assert tagged.pixel_hash == decoded(encode(shown, "PNG")).pixel_hash
    assert tagged.pixel_hash != decoded(encode(stored, "PNG")).pixel_hash


def test_pixel_hash_does_not_depend_on_the_analysis_side():
    data = encode(im.photo(13, (1600, 1200)).image, "JPEG")
    default, small = decoded(data), decoded(data, analysis_side=128)
    assert default.pixel_hash == small.pixel_hash
    assert min(default.view.size) == 300 and min(small.view.size) == 75


# ---------------------------------------------------------------------------------------------------------
# Reduced decoding


def test_views_are_power_of_two_reductions():
    assert [halvings(s, 512) for s in (1, 512, 513, 1024, 1025, 2048, 4096, 4097)] == [0, 0, 1, 1, 2, 2, 3, 4]
    big = Image.linear_gradient("L").resize((4200, 4100))
    result = decoded(encode(big, "JPEG"))  # 8x by the DCT, then 2x by box averages
    assert result.view.size == (263, 257)
    assert mean_abs_diff(result.view.convert("L"), big.reduce(16)) < 2


def test_jpeg_draft_gives_a_small_view_faster_than_a_full_decode():
    data = encode(im.photo(14, (2048, 2048)).image, "JPEG", quality=90)
    result = decoded(data)
    assert (result.width, result.height) == (2048, 2048)
    assert result.view.size == (512, 512)
    assert min(decoded(data, analysis_side=300).view.size) <= 300

    def full() -> None:
        with Image.open(io.BytesIO(data)) as src:
            src.convert("RGB")

    def timed(fn, n=5) -> float:
        fn()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n * 1000

    print(f"2048x2048 JPEG: decode() {timed(lambda: decode(data)):.1f} ms, full Pillow decode {timed(full):.1f} ms")


def test_decoded_is_immutable():
    result = decoded(encode(im.photo(1, (200, 150)).image, "PNG"))
    with pytest.raises(AttributeError):
        result.width = 3  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------------
# Benchmark (figures only)


def _grainy(image: Image.Image, seed: int) -> Image.Image:
    """Camera-like sensor noise: far more entropy-coded data per pixel than the smooth sample photos."""
    noise = np.random.default_rng(seed).normal(0, 6, (image.height, image.width, 1))
    return Image.fromarray(np.clip(np.asarray(image, np.float64) + noise, 0, 255).astype(np.uint8))


# ---------------------------------------------------------------------------------------------------------
# Mutation test


def _bases() -> dict[str, bytes]:
    photo = im.photo(20, (320, 240)).image
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((320, 240)))
    return {
        "jpeg": encode(photo, "JPEG", quality=85),
        "jpeg-progressive": encode(im.photo(21, (400, 300)).image, "JPEG", progressive=True),
        "jpeg-exif": im.exif_rotated_jpeg(22)[0],
        "jpeg-1100": encode(im.photo(25, (1100, 800)).image, "JPEG", quality=90),  # the draft path
        "png": encode(photo, "PNG"),
        "png-palette": im.palette_transparent_png(23),
        "png-1100": encode(im.natural(26, (1100, 800)).image, "PNG"),  # the reduce path
        "png-16": encode(Image.fromarray(np.asarray(photo.convert("L"), np.uint16) * 257), "PNG"),
        "gif": im.animated_gif(24),
        "webp": encode(photo, "WEBP", quality=80),
        "webp-alpha": encode(rgba, "WEBP", lossless=True),
    }


def _mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """Flip 1-16 bytes, cut, or splice garbage; half the positions in the first 256 bytes (the headers)."""
    def pos() -> int:
        return rng.randrange(min(256, len(data))) if rng.random() < 0.5 else rng.randrange(len(data))

    kind = rng.choice(("flip", "cut", "splice"))
    buf = bytearray(data)
    if kind == "flip":
        for _ in range(rng.randint(1, 16)):
            buf[pos()] ^= rng.randrange(1, 256)
    elif kind == "cut":
        del buf[pos():]
    else:
        at, garbage = pos(), rng.randbytes(rng.randint(1, 64))
        buf[at:at + (len(garbage) if rng.random() < 0.5 else 0)] = garbage
    return kind, bytes(buf)


@pytest.mark.slow
def test_mutated_images_give_only_reason_coded_refusals():
    rng = random.Random(20261105)
    bases = _bases()
    reasons: collections.Counter[str] = collections.Counter()
    by_base: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    slowest = (0.0, "")
    start = time.perf_counter()
    for name, data in bases.items():
        assert isinstance(decode(data), Decoded), name
        for i in range(VARIANTS):
            kind, variant = _mutate(data, rng)
            t0 = time.perf_counter()
            result = decode(variant)
            elapsed = time.perf_counter() - t0
            slowest = max(slowest, (elapsed, f"{name} #{i} {kind}"))
            if isinstance(result, Refusal):
                assert result.reason in DECODE_REASONS, result
                label = result.reason
            else:
                assert isinstance(result, Decoded)
                assert result.view.mode == "RGB" and 0 < min(result.view.size) <= 512
                assert len(result.pixel_hash) == 64
                label = "decoded"
            reasons[label] += 1
            by_base[name][label] += 1
    total = time.perf_counter() - start
    print(f"\n{sum(reasons.values())} variants in {total:.1f} s, slowest {slowest[0] * 1000:.0f} ms ({slowest[1]})")
    print("reasons:", dict(reasons.most_common()))
    for name, counts in by_base.items():
        print(f"  {name}: {dict(counts.most_common())}")
    assert slowest[0] < 2.0
    assert reasons["decoded"] and reasons[R.TRUNCATED] and reasons[R.UNDECODABLE]


def test_decode_never_raises_on_short_prefixes():
    """Every prefix of the first 64 bytes of each base format: a refusal, never an exception."""
    for data in _bases().values():
        for n in range(64):
            assert isinstance(decode(data[:n]), Refusal)



@pytest.mark.parametrize("data, fmt", [
    (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "svg"),
    (b'\xef\xbb\xbf  <?xml version="1.0"?>\n<!-- made by hand -->\n<svg/>', "svg"),
    (b"<!DOCTYPE html><html><body>404</body></html>", "html"),
    (b"\n<html><head><title>x</title></head></html>", "html"),
])
def test_vector_pictures_and_pages_are_unsupported_formats_not_broken_images(data: bytes, fmt: str) -> None:
    refusal = decode(data)
    assert isinstance(refusal, Refusal) and refusal.reason == R.UNSUPPORTED_FORMAT and refusal.detail == fmt
    assert getattr(decode(b"plain text, no markup"), "reason", None) == R.UNDECODABLE


def test_a_jpeg_header_claiming_more_pixels_than_its_bytes_can_hold_is_truncated():
    """825 bytes whose header says 9000x9000: libjpeg fills the missing blocks with grey and Pillow calls it
    valid; no JPEG can hold that many 8x8 blocks in so few bits."""
    small = bytearray(encode(im.photo(3, (64, 48)).image, "JPEG"))
    sof = small.find(b"\xff\xc0") + 5
    small[sof:sof + 4] = (9000).to_bytes(2, "big") + (9000).to_bytes(2, "big")
    refusal = refused(bytes(small), R.TRUNCATED)
    assert "9000x9000" in refusal.detail
    tiny = encode(Image.new("RGB", (2000, 2000), (255, 255, 255)), "JPEG", quality=1)  # a real, very compressible one
    assert isinstance(decode(tiny, ImageConfig(max_pixels=10**8)), Decoded)
