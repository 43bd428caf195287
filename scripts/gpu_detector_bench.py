#!/usr/bin/env python
"""Batched CRAFT detection on a GPU: the ceiling of the fast OCR path's device work, as one JSON object.

The fast path (curate/ocr.py) spends its device time in one CRAFT forward pass per picture at
`text.detect_side` (256) pixels, bf16 where the device has it; decoding and box-finding run on host cores and
scale with them. This measures that forward pass alone, batched, so it needs only torch, torchvision and
easyocr's CRAFT module (MIT; `--easyocr-src DIR` points at a folder holding the `easyocr` package when easyocr
itself is not installed, e.g. on a bare GPU machine). The weights are left at their random initialisation:
the arithmetic, and so the speed, is the same as with the trained weights, which are 83 MB.

    python scripts/gpu_detector_bench.py [--side 256] [--batches 1,8,32,128] [--seconds 5]
    python scripts/gpu_detector_bench.py --device cpu --batches 1,2 --seconds 1     # a smoke test anywhere
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--batches", default="1,8,32,128")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per setting")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--easyocr-src", default=None)
    args = parser.parse_args()
    if args.easyocr_src:
        sys.path.insert(0, args.easyocr_src)
    import torch
    from easyocr.craft import CRAFT

    device = torch.device(args.device)
    net = CRAFT().eval().to(device)
    if device.type == "cpu":
        net = net.to(memory_format=torch.channels_last)
    results = []
    for precision in ("bf16", "fp32"):
        for batch in (int(b) for b in args.batches.split(",")):
            x = torch.randn(batch, 3, args.side, args.side, device=device)
            if device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
                for _ in range(3):
                    net(x)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                n, started = 0, time.perf_counter()
                while time.perf_counter() - started < args.seconds:
                    net(x)
                    n += batch
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                elapsed = time.perf_counter() - started
            peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
            results.append({"precision": precision, "batch": batch, "images_per_s": round(n / elapsed, 1),
                            "peak_gib": round(peak, 2) if peak is not None else None})
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(json.dumps({"device": name, "torch": torch.__version__, "side": args.side, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
