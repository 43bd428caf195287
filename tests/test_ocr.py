"""The OCR engine: pinned weights, real easyocr inference, odd inputs that make easyocr throw."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from curate import ocr
from curate import reasons as R
from curate.config import TextConfig
from curate.errors import WeightsError
from curate.ocr import (
    OcrFailure,
    TextEngine,
    engine_id,
    load_reader,
    model_dir,
    page_fraction,
    score,
    score_results,
    verify_weights,
)
from curate.records import TextScore
from curate.sample import images as im


@pytest.fixture(scope="module")
def reader():
    return load_reader(threads=2)


@pytest.fixture(scope="module")
def fast(reader):
    return TextEngine(TextConfig(), reader)


def test_pinned_weights_verify_and_a_changed_byte_is_refused(tmp_path: Path) -> None:
    verify_weights(model_dir())
    copy = tmp_path / "models"
    shutil.copytree(model_dir(), copy)
    target = copy / "english_g2.pth"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="refusing to load"):
        load_reader(directory=copy)
    target.unlink()
    with pytest.raises(WeightsError, match="missing"):
        verify_weights(copy)


def test_score_results_counts_lines_words_and_union_area() -> None:
    box = lambda x0, y0, x1, y1: [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]  # noqa: E731
    results = [(box(0, 0, 50, 10), "two words", 0.9), (box(60, 1, 100, 11), "more", 0.7),
               (box(0, 30, 100, 40), "second line here", 0.8), (box(0, 30, 100, 40), "overlap", 0.6)]
    s = score_results(results, 100, 100, 12.0)
    assert (s.boxes, s.words, s.lines) == (4, 7, 2)
    assert s.chars == len("twowordsmoresecondlinehereoverlap")
    assert s.mean_confidence == pytest.approx(0.75)
    assert s.area_fraction == pytest.approx(0.19, abs=0.01)  # 5% + 4% + 10%, the repeated box counted once
    assert score_results([], 10, 10, 1.0) == TextScore(0, 0.0, 0, 0, 0.0, 0, "", 1.0)


@pytest.mark.slow
def test_a_document_is_read(reader) -> None:
    doc = im.document(3)
    s = score(reader, doc.image)
    assert isinstance(s, TextScore)
    found = {w.strip(".,;:-").lower() for w in s.text.split()}
    truth = {w.lower() for w in doc.words}
    assert len(found & truth) >= 0.6 * len(truth)
    assert s.boxes >= 5 and s.lines >= 3 and 0.05 < s.area_fraction < 0.9 and s.mean_confidence > 0.5


@pytest.mark.slow
def test_a_natural_scene_has_no_text(reader) -> None:
    for seed in (2, 5):
        s = score(reader, im.natural(seed).image)
        assert isinstance(s, TextScore) and s.boxes <= 1 and s.words <= 1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["1x1", "1xN", "Nx1", "blank", "LA", "RGBA", "P", "I;16", "20000x20", "20x20000"])
def test_odd_inputs_get_a_score(reader, name: str) -> None:
    images = {
        "1x1": Image.new("RGB", (1, 1)), "1xN": Image.new("L", (1, 300), 128), "Nx1": Image.new("RGB", (300, 1)),
        "blank": Image.new("RGB", (300, 300), "white"), "LA": Image.new("LA", (100, 50)),
        "RGBA": Image.new("RGBA", (100, 50), (0, 0, 0, 0)), "P": Image.new("P", (100, 50)),
        "I;16": Image.fromarray(np.full((60, 80), 30000, dtype=np.uint16)),
        "20000x20": Image.new("RGB", (20000, 20), "white"), "20x20000": Image.new("RGB", (20, 20000), "white"),
    }
    for s in (score(reader, images[name]), TextEngine(TextConfig(), reader).score_image(images[name])):
        assert isinstance(s, TextScore) and s.boxes == 0 and s.chars == 0 and s.ms >= 0


@pytest.mark.slow
def test_fast_path_measures_documents_and_photos_like_the_full_reading(reader, fast) -> None:
    for render in (im.table(2),):  # one full reading: readtext takes seconds an image
        quick, full = fast.score_image(render.image), score(reader, render.image)
        assert isinstance(quick, TextScore) and isinstance(full, TextScore)
        assert quick.read == 0 and quick.text == "" and full.read == full.boxes
        assert quick.lines >= 4 and full.lines >= 4
        assert 0.5 * full.chars <= quick.chars <= 2 * full.chars  # characters from box geometry
        assert abs(quick.area_fraction - full.area_fraction) < 0.15
    photo = fast.score_image(im.natural(2).image)
    assert isinstance(photo, TextScore) and photo.boxes == 0 and photo.chars == 0 and photo.page < 0.5


@pytest.mark.slow
def test_fast_path_reads_boxes_when_asked(reader) -> None:
    doc = im.document(3)
    s = TextEngine(TextConfig(read=3), reader).score_bytes(im.encode(doc.image, "png"))
    assert isinstance(s, TextScore) and s.read == 3 and s.boxes > 3
    found = {w.strip(".,;:-").lower() for w in s.text.split()}
    assert len(found & {w.lower() for w in doc.words}) >= 4


def test_undecodable_bytes_are_a_reason_coded_failure(fast) -> None:
    result = fast.score_bytes(b"<html>not an image</html>")
    assert isinstance(result, OcrFailure) and result.reason == R.UNDECODABLE


def test_page_fraction_tells_a_page_from_a_dark_ui() -> None:
    page = np.full((100, 200, 3), 250, dtype=np.uint8)
    page[40:60, 20:180] = 20  # a band of dark text
    assert page_fraction(page) == pytest.approx(1 - 20 * 160 / (100 * 200), abs=0.01)
    dark = np.full((100, 200, 3), 30, dtype=np.uint8)
    assert page_fraction(dark) == 0.0
    colourful = np.zeros((100, 200, 3), dtype=np.uint8)
    colourful[..., 0] = 255
    colourful[..., 1] = 220
    assert page_fraction(colourful) == 0.0  # light but saturated: not a page


def test_engine_id_changes_with_what_changes_scores_only() -> None:
    base = engine_id(TextConfig())
    assert engine_id(TextConfig(filter="heavy", light_min_chars=9, threads=2, cache="/x")) == base
    assert len({base, engine_id(TextConfig(detect_side=320)), engine_id(TextConfig(read=2)),
                engine_id(TextConfig(mode="full")), engine_id(TextConfig(precision="fp32"))}) == 5


def test_an_engine_error_is_a_reason_coded_failure() -> None:
    class Refusing:
        def readtext(self, *args, **kwargs):
            raise ValueError("cannot reshape array of size 0")

    result = score(Refusing(), Image.new("RGB", (64, 64)))
    assert isinstance(result, OcrFailure) and result.reason == R.OCR_FAILED and "reshape" in result.detail


def test_score_many_batches_the_first_pass_and_scores_like_score_bytes(fast, monkeypatch) -> None:
    same = [im.document(5, (400, 300)), im.chart(1, (400, 300)), im.natural(1, (400, 300))]  # one padded size
    data = [im.encode(r.image, "png") for r in same] + [im.encode(im.sign(2).image, "jpeg"), b"not an image"]
    one_by_one = [fast.score_bytes(d) for d in data]
    batches: list[int] = []
    forward = fast._maps
    monkeypatch.setattr(fast, "_maps", lambda batch: batches.append(len(batch)) or forward(batch))
    many = fast.score_many(data, batch=2)
    assert sorted(batches)[-1] == 2  # the three pictures of one size ran as a batch of 2 and one of 1
    for one, batched in zip(one_by_one, many, strict=True):
        if isinstance(one, OcrFailure):
            assert batched == one
            continue
        assert isinstance(batched, TextScore) and batched.ms > 0
        assert (batched.boxes, batched.lines, batched.words, batched.read, batched.page) == (
            one.boxes, one.lines, one.words, one.read, one.page)
        assert batched.chars == pytest.approx(one.chars, rel=0.05, abs=1)
        assert batched.area_fraction == pytest.approx(one.area_fraction, abs=0.02)
        assert batched.mean_confidence == pytest.approx(one.mean_confidence, abs=0.02)


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
