"""The edited copies near-duplicate detection is measured on: each family does what it says, reproducibly."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from curate.sample.edits import FAMILIES, edited


def _picture() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())  # 512 x 512, a real photograph shipped with scikit-image


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_gives_a_decodable_reproducible_copy(family: str) -> None:
    picture = _picture()
    copy, what = edited(picture, family, 7)
    assert edited(picture, family, 7) == (copy, what)  # the same seed, the same bytes
    with Image.open(io.BytesIO(copy)) as im:
        im.load()
        w, h = im.size
        fmt = im.format
    if family == "crop":
        assert 0.8 * 512 <= w <= 512 and 0.8 * 512 <= h <= 512 and (w, h) != (512, 512)
    elif family == "rescale":
        assert 0.25 * 512 - 1 <= w <= 2 * 512 + 1 and w == h
    elif family == "combo":
        first, second = what.split("+")
        assert first != second and {first, second} <= set(FAMILIES)
    else:
        assert (w, h) == (512, 512)
    if family == "format":
        assert fmt in ("PNG", "WEBP")
    elif family != "combo":
        assert fmt == "JPEG"
    if family in ("caption", "watermark", "brightness", "contrast"):
        with Image.open(io.BytesIO(copy)) as im:
            assert im.convert("RGB").tobytes() != picture.tobytes()


def test_seeds_vary_the_edit() -> None:
    picture = _picture()
    sizes = {Image.open(io.BytesIO(edited(picture, "crop", seed)[0])).size for seed in range(6)}
    assert len(sizes) >= 5  # off-centre and uneven crops, not one fixed cut
