"""The text engine: pinned models, real PP-OCR and easyocr inference, the measures, odd inputs, resolution."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from curate import ocr
from curate import reasons as R
from curate.config import IMAGE_FORMATS, ImageConfig, TextConfig
from curate.errors import WeightsError
from curate.filters.text import is_heavy, is_light
from curate.ocr import (
    OcrFailure,
    TextEngine,
    count_lines,
    coverage,
    engine_id,
    load_reader,
    model_dir,
    page_flatness,
    score,
    score_results,
    verify_weights,
)
from curate.ppocr import PPOCR, Box, _crop, verify_models
from curate.ppocr import model_dir as ppocr_dir
from curate.records import TextScore
from curate.sample import images as im


@pytest.fixture(scope="module")
def reader():
    return load_reader(threads=2)


@pytest.fixture(scope="module")
def fast():
    return TextEngine(TextConfig())


def _tamper(source: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / "models"
    shutil.copytree(source, copy)
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / name).write_bytes(bytes(data))
    return copy


def test_pinned_easyocr_weights_verify_and_a_changed_byte_is_refused(tmp_path: Path) -> None:
    verify_weights(model_dir())
    copy = _tamper(model_dir(), tmp_path, "english_g2.pth")
    with pytest.raises(WeightsError, match="refusing to load"):
        load_reader(directory=copy)
    (copy / "english_g2.pth").unlink()
    with pytest.raises(WeightsError, match="missing"):
        verify_weights(copy)


def test_pinned_ppocr_models_verify_and_a_changed_byte_is_refused(tmp_path: Path) -> None:
    verify_models(ppocr_dir())
    copy = _tamper(ppocr_dir(), tmp_path, "ch_PP-OCRv4_det_infer.onnx")
    with pytest.raises(WeightsError, match="refusing to load"):
        PPOCR(directory=copy)
    (copy / "ch_PP-OCRv4_det_infer.onnx").unlink()
    with pytest.raises(WeightsError, match="missing"):
        verify_models(copy)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def test_score_results_counts_lines_words_and_union_area() -> None:
    box = lambda x0, y0, x1, y1: _rect(x0, y0, x1, y1).tolist()  # noqa: E731
    results = [(box(0, 0, 50, 10), "two words", 0.9), (box(60, 1, 100, 11), "more", 0.7),
               (box(0, 30, 100, 40), "second line here", 0.8), (box(0, 30, 100, 40), "overlap", 0.6)]
    s = score_results(results, 100, 100, 12.0)
    assert (s.boxes, s.words, s.lines, s.read) == (4, 7, 2, 4)
    assert s.chars == len("twowordsmoresecondlinehereoverlap")
    assert s.mean_confidence == pytest.approx(0.75)
    # 5% + 4% + 10%, the repeated box counted once (the mask takes in both edges of a box: up to a pixel more)
    assert s.area_fraction == pytest.approx(0.19, abs=0.025)
    assert score_results([], 10, 10, 1.0) == TextScore(0, 0.0, 0, 0, 0.0, 0, "", 1.0)


def test_lines_are_counted_across_the_text_direction() -> None:
    horizontal = [_rect(10, y, 200, y + 12) for y in (0, 20, 40, 60)] + [_rect(220, 41, 300, 53)]
    assert count_lines(horizontal) == 4  # the last box continues the third line
    turned = [Box(100 + 20 * i, 200, 300, 12, 90.0, 1.0).corners() for i in range(6)]  # a page turned 90 degrees
    assert count_lines(turned) == 6
    tilted = [Box(150, 50 + 25 * i, 250, 14, 12.0, 1.0).corners() for i in range(5)]  # a photographed page, 12 deg
    assert count_lines(tilted) == 5
    assert count_lines([]) == 0
    assert coverage(horizontal, 300, 100) == pytest.approx((4 * 190 * 12 + 80 * 12) / 30000, rel=0.1)


def test_page_is_the_flat_share_of_the_text_regions_background() -> None:
    rng = np.random.default_rng(0)
    boxes = [_rect(40, y, 360, y + 14) for y in range(40, 260, 40)]
    paper = np.full((300, 400, 3), 245, np.uint8)
    scene = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)  # the same lines on a busy photo
    for canvas in (paper, scene):
        for b in boxes:
            canvas[int(b[0, 1]) + 3: int(b[2, 1]) - 3, 50:350] = 20
    assert page_flatness(paper, boxes) > 0.95
    assert page_flatness(scene, boxes) < 0.05
    shaded = (paper.astype(np.float64) * np.linspace(0.6, 1.0, 400)[None, :, None]).astype(np.uint8)
    assert page_flatness(shaded, boxes) > 0.9  # a photographed page under uneven light is still a page
    assert page_flatness(paper, []) == 0.0


@pytest.mark.slow
def test_a_document_is_read_in_full_mode(reader) -> None:
    doc = im.document(3)
    s = score(reader, doc.image)
    assert isinstance(s, TextScore)
    found = {w.strip(".,;:-").lower() for w in s.text.split()}
    truth = {w.lower() for w in doc.words}
    assert len(found & truth) >= 0.6 * len(truth)
    assert s.boxes >= 5 and s.lines >= 3 and 0.05 < s.area_fraction < 0.9 and s.mean_confidence > 0.5
    assert s.page > 0.8


@pytest.mark.slow
def test_a_natural_scene_has_no_text_in_either_mode(reader, fast) -> None:
    for seed in (2, 5):
        s = score(reader, im.natural(seed).image)
        assert isinstance(s, TextScore) and s.boxes <= 1 and s.words <= 1
        quick = fast.score_image(im.natural(seed).image)
        assert isinstance(quick, TextScore) and quick.chars == 0 and not is_light(quick, TextConfig())


ODD = {
    "1x1": lambda: Image.new("RGB", (1, 1)), "1xN": lambda: Image.new("L", (1, 300), 128),
    "Nx1": lambda: Image.new("RGB", (300, 1)), "blank": lambda: Image.new("RGB", (300, 300), "white"),
    "LA": lambda: Image.new("LA", (100, 50)), "RGBA": lambda: Image.new("RGBA", (100, 50), (0, 0, 0, 0)),
    "P": lambda: Image.new("P", (100, 50)),
    "I;16": lambda: Image.fromarray(np.full((60, 80), 30000, dtype=np.uint16)),
    "20000x20": lambda: Image.new("RGB", (20000, 20), "white"), "20x20000": lambda: Image.new("RGB", (20, 20000), "white"),
}


@pytest.mark.parametrize("name", sorted(ODD))
def test_odd_inputs_get_a_fast_score(fast, name: str) -> None:
    image = ODD[name]()
    for s in (fast.score_image(image), fast.score_bytes(im.encode(image.convert("RGB"), "png"))):
        assert isinstance(s, TextScore) and s.boxes == 0 and s.chars == 0 and s.ms >= 0


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ODD))
def test_odd_inputs_get_a_full_score(reader, name: str) -> None:
    s = score(reader, ODD[name]())
    assert isinstance(s, TextScore) and s.boxes == 0 and s.chars == 0 and s.ms >= 0


def test_sixteen_bit_and_alpha_text_is_read(fast) -> None:
    """Text in a 16-bit grey PNG and in a transparent PNG (black text on nothing: shown on white)."""
    words = "Annual report of the harbour board"
    grey = Image.new("L", (640, 120), 235)
    ImageDraw.Draw(grey).text((20, 35), words, font=im._font("DejaVuSans.ttf", 36), fill=20)
    deep = Image.fromarray(np.asarray(grey, np.uint16) * 257)
    alpha = Image.new("RGBA", (640, 120), (0, 0, 0, 0))
    ImageDraw.Draw(alpha).text((20, 35), words, font=im._font("DejaVuSans.ttf", 36), fill=(0, 0, 0, 255))
    for picture in (deep, alpha):
        s = fast.score_bytes(im.encode(picture, "png"))
        assert isinstance(s, TextScore) and is_light(s, TextConfig()), s
        assert "harbour" in s.text.lower() or "report" in s.text.lower()


def test_fast_mode_reads_what_it_counts(fast) -> None:
    doc = im.document(3)
    s = fast.score_bytes(im.encode(doc.image, "png"))
    assert isinstance(s, TextScore) and s.read == min(8, s.boxes) and s.boxes > 8
    read = s.text.lower().replace(" ", "")  # the recognizer often runs Latin words together
    assert sum(w.lower() in read for w in set(doc.words) if len(w) >= 4) >= 10
    drawn = sum(len(w) for w in doc.words)
    assert 0.5 * drawn <= s.chars <= 1.5 * drawn  # 8 lines read, the rest extrapolated from them
    assert s.lines >= 8 and s.page > 0.8 and is_heavy(s, TextConfig())
    fewer = TextEngine(TextConfig(read=2), fast.models).score_bytes(im.encode(doc.image, "png"))
    assert isinstance(fewer, TextScore) and fewer.read == 2 and 0.5 * drawn <= fewer.chars <= 1.5 * drawn


def test_an_upside_down_page_is_read_the_right_way_round(fast) -> None:
    """A page stored upside down: the direction classifier flags its lines, they are read turned, and the page
    counts as much text as upright (read the wrong way round, it was confident garbage)."""
    doc = im.document(3)
    upright = fast.score_bytes(im.encode(doc.image, "png"))
    turned = fast.score_bytes(im.encode(doc.image.rotate(180), "png"))
    assert isinstance(upright, TextScore) and isinstance(turned, TextScore)
    assert 0.7 * upright.chars <= turned.chars <= 1.3 * upright.chars, (upright, turned)
    read = turned.text.lower().replace(" ", "")
    assert sum(w.lower() in read for w in set(doc.words) if len(w) >= 4) >= 10
    assert is_heavy(turned, TextConfig())
    rgb = np.asarray(doc.image.convert("RGB"))
    line = _crop(rgb, max(fast.models.detect(rgb, 960), key=lambda b: b.length))
    assert fast.models.upside_down(line) < 0.3 < 0.7 < fast.models.upside_down(np.rot90(line, 2))


def _script_lines(lines: list[str], px: int, size: tuple[int, int]) -> Image.Image:
    picture = Image.new("RGB", size, (248, 246, 240))
    draw = ImageDraw.Draw(picture)
    for i, line in enumerate(lines):
        draw.text((30, 30 + round(1.6 * px) * i), line, font=im._font("DejaVuSans.ttf", px), fill=(20, 20, 30))
    return picture


def test_text_in_a_script_the_recognizer_cannot_read_is_text(fast) -> None:
    """Georgian and Armenian (neither in the recognizer's dictionary nor in the calibration set): the lines the
    detector finds make the picture light, though almost nothing is read; a blank and a photograph stay out."""
    sign = _script_lines(["ქართული ენა და დამწერლობა", "Հայերեն լեզու և գրականություն"], 36, (760, 160))
    s = fast.score_bytes(im.encode(sign, "png"))
    assert isinstance(s, TextScore) and is_light(s, TextConfig(light_min_chars=10**6)), s  # by its lines alone
    for picture in (Image.new("RGB", (600, 400), "white"), im.natural(2).image):
        none = fast.score_bytes(im.encode(picture, "png"))
        assert isinstance(none, TextScore) and none.extent < TextConfig().light_min_extent / 2
        assert not is_light(none, TextConfig())


@pytest.mark.slow
def test_fast_mode_measures_a_table_like_the_full_reading(reader, fast) -> None:
    render = im.table(2)
    quick, full = fast.score_image(render.image), score(reader, render.image)
    assert isinstance(quick, TextScore) and isinstance(full, TextScore)
    assert quick.lines >= 4 and full.lines >= 4
    assert 0.5 * full.chars <= quick.chars <= 2 * full.chars
    assert abs(quick.area_fraction - full.area_fraction) < 0.15
    assert is_heavy(quick, TextConfig()) and is_heavy(full, TextConfig())


def _page(width: int, height: int, px: int) -> Image.Image:
    """A page of body text `px` pixels high (a scan at print resolution)."""
    page = Image.new("RGB", (width, height), (250, 249, 244))
    draw, font = ImageDraw.Draw(page), im._font("DejaVuSerif.ttf", px)
    words = ("the committee met on tuesday to review seven reports on annual budgets and the harbour "
             "works while the board heard detailed evidence from the engineers").split()
    margin, y, i = round(width * 0.08), 2 * px, 0
    while y < height - 2 * px:
        line: list[str] = []
        while font.getlength(" ".join([*line, words[i % len(words)]])) < width - 2 * margin:
            line.append(words[i % len(words)])
            i += 1
        draw.text((margin, y), " ".join(line), font=font, fill=(25, 25, 25))
        y += round(px * 1.5)
    return page


def _slide() -> Image.Image:
    slide = Image.new("RGB", (1920, 1080), "white")
    draw = ImageDraw.Draw(slide)
    draw.text((120, 80), "Quarterly results and outlook", font=im._font("DejaVuSans-Bold.ttf", 64), fill=(30, 30, 90))
    for i in range(12):
        draw.text((160, 220 + 60 * i), f"Item {i + 1}: revenue in the northern region grew by {i + 3} percent",
                  font=im._font("DejaVuSans.ttf", 28), fill=(40, 40, 40))
    return slide


@pytest.mark.slow
def test_high_resolution_documents_are_heavy(fast) -> None:
    """What a detector at a fixed low bound loses: scans at print resolution and slides with small print."""
    doc = im.document(3, (620, 877)).image
    pages = {"620x877": doc, "1240x1754": doc.resize((1240, 1754), Image.Resampling.LANCZOS),
             "2480x3508": doc.resize((2480, 3508), Image.Resampling.LANCZOS),
             "A4 at 300 dpi, 40 px print": _page(2480, 3508, 40), "A4, 14 px print": _page(1240, 1754, 14),
             "4000x4000": im.document(5, (4000, 4000)).image, "slide, 28 px print": _slide()}
    for name, picture in pages.items():
        s = fast.score_bytes(im.encode(picture, "jpeg"))
        assert isinstance(s, TextScore) and is_light(s, TextConfig()) and is_heavy(s, TextConfig()), (name, s)


def test_small_pictures_are_enlarged_for_detection(fast) -> None:
    word = Image.new("RGB", (240, 60), (230, 40, 40))
    ImageDraw.Draw(word).text((12, 12), "EXIT 24", font=im._font("DejaVuSans-Bold.ttf", 34), fill="white")
    s = fast.score_bytes(im.encode(word, "jpeg"))
    assert isinstance(s, TextScore) and is_light(s, TextConfig()) and "EXIT" in s.text


def test_the_users_image_settings_decide_what_ocr_decodes(fast) -> None:
    """The text stage scores what the decode stage accepted under the user's `image:` settings: a BMP when
    `image.formats` has bmp, a 40x10 strip far below the default minimum side and aspect ratio."""
    sign = Image.new("RGB", (320, 80), (240, 240, 240))
    ImageDraw.Draw(sign).text((10, 18), "OPEN 24", font=im._font("DejaVuSans-Bold.ttf", 40), fill=(10, 10, 10))
    bmp = im.encode(sign, "bmp")
    refused = fast.score_bytes(bmp)  # the engine's default: decode's default formats
    assert isinstance(refused, OcrFailure) and refused.reason == R.UNSUPPORTED_FORMAT
    with_bmp = ImageConfig(formats=(*IMAGE_FORMATS, "bmp"), min_side=200, max_aspect_ratio=1.5)
    engine = TextEngine(TextConfig(), fast.models, image=with_bmp)
    scored = engine.score_bytes(bmp)
    assert isinstance(scored, TextScore) and is_light(scored, TextConfig()) and "OPEN" in scored.text
    strip = engine.score_bytes(im.encode(Image.new("RGB", (40, 10), (255, 255, 255)), "png"))
    assert isinstance(strip, TextScore) and strip.chars == 0  # size and shape are decode's call, not OCR's
    too_big = TextEngine(TextConfig(), fast.models, image=ImageConfig(max_pixels=320 * 80 - 1)).score_bytes(bmp)
    assert isinstance(too_big, OcrFailure)  # the pixel budget still holds (bombs stay refused)


def test_undecodable_bytes_are_a_reason_coded_failure(fast) -> None:
    result = fast.score_bytes(b"\x00\x01 not an image, not markup either")
    assert isinstance(result, OcrFailure) and result.reason == R.UNDECODABLE


def test_engine_id_changes_with_what_changes_scores_only() -> None:
    base = engine_id(TextConfig())
    assert engine_id(TextConfig(filter="heavy", light_min_chars=9, threads=2, cache="/x", batch=4)) == base
    assert len({base, engine_id(TextConfig(detect_side=640)), engine_id(TextConfig(read=2)),
                engine_id(TextConfig(mode="full")), engine_id(TextConfig(mode="full", canvas=640))}) == 5


def test_an_engine_error_is_a_reason_coded_failure() -> None:
    class Refusing:
        def readtext(self, *args, **kwargs):
            raise ValueError("cannot reshape array of size 0")

    result = score(Refusing(), Image.new("RGB", (64, 64)))
    assert isinstance(result, OcrFailure) and result.reason == R.OCR_FAILED and "reshape" in result.detail

    class Broken:
        def detect(self, *args):
            raise RuntimeError("onnxruntime: invalid dimensions")

    failed = TextEngine(TextConfig(), Broken()).score_image(Image.new("RGB", (64, 64)))
    assert isinstance(failed, OcrFailure) and failed.reason == R.OCR_FAILED and "invalid dimensions" in failed.detail


def test_score_many_scores_like_score_bytes(fast) -> None:
    data = [im.encode(im.document(5, (400, 300)).image, "png"), im.encode(im.sign(2).image, "jpeg"), b"not an image",
            im.encode(im.natural(1, (400, 300)).image, "png")]
    one_by_one = [fast.score_bytes(d) for d in data]
    many = fast.score_many(data)
    for one, batched in zip(one_by_one, many, strict=True):
        if isinstance(one, OcrFailure):
            assert batched == one
            continue
        assert isinstance(batched, TextScore) and batched._replace(ms=0.0) == one._replace(ms=0.0)


@pytest.mark.skipif(not Path("/proc/self/status").exists() or ocr._libc() is None, reason="needs Linux and glibc")
def test_release_free_memory_hands_freed_heap_pages_back() -> None:
    """What the engine does every TRIM_EVERY pictures: glibc keeps freed heap blocks below its top chunk
    resident until malloc_trim returns their pages."""
    import ctypes

    def rss_mib() -> int:
        return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) // 1024

    libc = ocr._libc()
    libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    blocks = [libc.malloc(100_000) for _ in range(2000)]  # below the mmap threshold: heap blocks
    for block in blocks:
        ctypes.memset(block, 1, 100_000)
    for block in blocks[:-1]:  # the last one pins the heap's top, so free() alone cannot shrink it
        libc.free(block)
    before = rss_mib()
    ocr.release_free_memory()
    after = rss_mib()
    libc.free(blocks[-1])
    assert before - after > 150, (before, after)  # ~190 MiB were free
