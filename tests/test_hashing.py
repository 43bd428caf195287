"""Tests of curate.hashing: SHA-256, the perceptual hash on sample pictures and their near-duplicate
transforms, and the pigeonhole banding (exhaustive over which bands a difference touches)."""

from __future__ import annotations

import io
import itertools
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from curate.hashing import BITS, band_bounds, band_keys, hamming, near_pairs, phash64, sha256_hex
from curate.imaging import Decoded, decode
from curate.sample import images as im

RADII = (4, 6, 8)
PHOTO_SEEDS = range(14)  # distinct photo windows (seeds differ modulo PHOTO_VARIANTS)
DOCUMENT_SEEDS = range(6)


def view(data: bytes) -> Image.Image:
    result = decode(data)
    assert isinstance(result, Decoded), result
    return result.view


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    return im.encode(image, "jpeg", quality=quality)


def test_sha256_hex():
    assert sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_hamming():
    assert hamming(0, 0) == 0
    assert hamming(0b1011, 0b0001) == 2
    assert hamming(0, (1 << 64) - 1) == 64


# ---------------------------------------------------------------------------------------------------------
# phash64


def test_phash_is_stable_and_uses_63_bits():
    picture = im.photo(1).image
    first, second = phash64(picture), phash64(picture.copy())
    assert first == second
    assert 0 <= first < 1 << 63  # bit 63 (the DC term) is always 0
    assert first.bit_count() == 31  # above the median of 63 coefficients
    assert phash64(Image.new("RGB", (300, 200), (90, 90, 90))) == 0


def test_phash_is_the_same_in_another_process():
    data = jpeg(im.photo(2).image)
    here = phash64(view(data))
    script = ("import sys; from curate.imaging import decode; from curate.hashing import phash64; "
              "print(phash64(decode(sys.stdin.buffer.read()).view))")
    out = subprocess.run([sys.executable, "-c", script], input=data, capture_output=True, check=True,
                         cwd=Path(__file__).parents[1], env={**os.environ, "PYTHONHASHSEED": "123"}).stdout
    assert int(out) == here


def _transforms(picture: Image.Image) -> dict[str, bytes]:
    original = jpeg(picture)
    return {"original": original, "rescale 0.5": jpeg(im.rescale(picture, 0.5)),
            "recompress q50": im.recompress(original, 50), "brighten 1.1": jpeg(im.brighten(picture, 1.1))}


@pytest.mark.parametrize(("kind", "seeds"), [("photo", PHOTO_SEEDS), ("document", DOCUMENT_SEEDS)])
def test_near_duplicate_transforms_stay_within_6_bits(kind, seeds):
    render = im.photo if kind == "photo" else im.document
    worst: dict[str, int] = {}
    for seed in seeds:
        hashes = {name: phash64(view(data)) for name, data in _transforms(render(seed).image).items()}
        for name, h in hashes.items():
            worst[name] = max(worst.get(name, 0), hamming(h, hashes["original"]))
    print(f"{kind}: worst distance per transform {worst}")
    assert max(worst.values()) <= 6


def test_different_photos_are_more_than_12_bits_apart():
    hashes = [phash64(view(jpeg(im.photo(seed).image))) for seed in range(30)]
    distances = [hamming(a, b) for a, b in itertools.combinations(hashes, 2)]
    print(f"30 photos: min distance {min(distances)}, mean {sum(distances) / len(distances):.1f}")
    assert min(distances) > 12


def test_phash_ignores_the_view_size_and_format():
    picture = im.photo(3, (900, 700)).image
    png = im.encode(picture, "png")
    assert hamming(phash64(view(png)), phash64(picture)) <= 2
    assert hamming(phash64(view(png)), phash64(view(jpeg(picture)))) <= 2


# ---------------------------------------------------------------------------------------------------------
# Bands


@pytest.mark.parametrize("radius", range(0, 16))
def test_bands_cover_64_bits_evenly(radius):
    bounds = band_bounds(radius)
    widths = [w for _, w in bounds]
    assert len(bounds) == radius + 1
    assert sum(widths) == BITS and max(widths) - min(widths) <= 1
    covered = 0
    for shift, width in bounds:
        mask = ((1 << width) - 1) << shift
        assert covered & mask == 0
        covered |= mask
    assert covered == (1 << BITS) - 1


def test_band_keys_values():
    h = 0x0123_4567_89AB_CDEF
    assert band_keys(h, 3) == [(0, 0x0123), (1, 0x4567), (2, 0x89AB), (3, 0xCDEF)]
    assert band_keys(h, 0) == [(0, h)]
    low21 = (1 << 21) - 1  # three bands of 22, 21 and 21 bits; keys join two of them
    assert band_keys(h, 1, spare=1) == [(0, h >> 21), (1, ((h >> 42) << 21) | (h & low21)), (2, h & (1 << 42) - 1)]


def test_band_keys_reject_impossible_radii():
    for radius, spare in ((-1, 0), (64, 0), (60, 4), (3, -1)):
        with pytest.raises(ValueError):
            band_keys(1, radius, spare)


def _share(a: int, b: int, radius: int, spare: int) -> bool:
    return bool(set(band_keys(a, radius, spare)) & set(band_keys(b, radius, spare)))


def _flip(h: int, bits: list[int]) -> int:
    for bit in bits:
        h ^= 1 << bit
    return h


@pytest.mark.parametrize("spare", [0, 1, 2])
@pytest.mark.parametrize("radius", RADII)
def test_pairs_within_the_radius_always_share_a_key(radius, spare):
    """Random pairs at every distance 0..radius+2; within the radius, every one shares a key."""
    rng = random.Random(radius * 10 + spare)
    trials = 3000 if spare == 0 else 1000
    shared_beyond = {}
    for distance in range(radius + 3):
        hits = 0
        for _ in range(trials):
            a = rng.getrandbits(BITS)
            b = _flip(a, rng.sample(range(BITS), distance))
            assert hamming(a, b) == distance
            hit = _share(a, b, radius, spare)
            assert hit or distance > radius, (radius, spare, distance, hex(a), hex(b))
            hits += hit
        shared_beyond[distance] = round(hits / trials, 3)
    print(f"radius {radius}, spare {spare}: share of pairs with a common key by distance {shared_beyond}")


@pytest.mark.parametrize("spare", [0, 1])
@pytest.mark.parametrize("radius", RADII)
def test_pigeonhole_exhaustively_over_the_bands_a_difference_touches(radius, spare):
    """Whether two hashes share a key depends only on which bands hold a differing bit: every subset of
    the bands is tried, with one and with several differing bits in each. They share a key exactly when
    at most `radius` bands are touched (every distance <= radius lands there), so the guarantee is tight."""
    bounds = band_bounds(radius, spare)
    rng = random.Random(radius)
    for size in range(len(bounds) + 1):
        for subset in itertools.combinations(range(len(bounds)), size):
            for per_band in (1, 3):
                a = rng.getrandbits(BITS)
                bits = [bounds[band][0] + offset for band in subset
                        for offset in rng.sample(range(bounds[band][1]), per_band)]
                assert _share(a, _flip(a, bits), radius, spare) == (size <= radius), (subset, per_band)


@pytest.mark.parametrize("spare", [0, 1])
@pytest.mark.parametrize("radius", RADII)
def test_near_pairs_equals_brute_force(radius, spare):
    rng = random.Random(500 + radius)
    hashes = {f"h{i:03d}": rng.getrandbits(BITS) for i in range(400)}
    names = list(hashes)
    for i in range(100):  # planted: a copy of an existing hash at distance 0..radius+2
        base = hashes[rng.choice(names)]
        hashes[f"p{i:03d}"] = _flip(base, rng.sample(range(BITS), rng.randint(0, radius + 2)))
    brute = {(a, b) for a, b in itertools.combinations(sorted(hashes), 2) if hamming(hashes[a], hashes[b]) <= radius}
    found = near_pairs(hashes, radius, spare)
    planted_within = sum(1 for a, b in brute if a.startswith("p") or b.startswith("p"))
    print(f"radius {radius}, spare {spare}: {len(brute)} pairs within the radius ({planted_within} planted)")
    assert len(brute) >= 60
    assert found == brute


def test_near_pairs_on_sample_near_duplicates():
    hashes = {}
    for seed in range(6):
        for name, data in _transforms(im.photo(seed).image).items():
            hashes[f"{seed}:{name}"] = phash64(view(data))
    pairs = near_pairs(hashes, 6)
    expected = {(a, b) for a, b in itertools.combinations(sorted(hashes), 2) if a.split(":")[0] == b.split(":")[0]}
    assert pairs == expected


def test_phash_of_a_decoded_view_matches_the_original_picture():
    picture = im.document(1).image
    buf = io.BytesIO()
    picture.save(buf, "PNG")
    assert hamming(phash64(view(buf.getvalue())), phash64(picture)) <= 4
