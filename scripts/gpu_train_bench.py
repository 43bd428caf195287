#!/usr/bin/env python
"""GPU training benchmark for the gpu-small preset (ViT-S/16, 2x224 + 8x96 crops, bf16 autocast): images/s
and peak GPU memory, printed as one JSON object. Self-contained: needs only torch and this repository (no
data, no network). Data are synthetic crops already on the GPU, so this measures the model step (student
forward/backward, teacher forward, AdamW, EMA); `--shards DIR` also times `curate train` end to end on real
shards with the loader.

    python scripts/gpu_train_bench.py [--batch-size 128] [--steps 30] [--warmup 5] [--shards OUT/shards]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from curate.trainer.config import preset  # noqa: E402
from curate.trainer.loop import Schedules, State, _step  # noqa: E402


def synthetic(args: argparse.Namespace) -> dict:
    config = preset("gpu-small", batch_size=args.batch_size, steps=args.steps + args.warmup, device="cuda",
                    bf16=not args.fp32, arch=args.arch)
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    state, sched = State.new(config, device), Schedules.of(config)
    b = config.batch_size
    crops = [torch.randn(b, 3, config.image_size, config.image_size, device=device) for _ in range(2)]
    crops += [torch.randn(b, 3, config.local_size, config.local_size, device=device) for _ in range(config.local_crops)]
    for _ in range(args.warmup):
        _step(state, crops, sched, device)
        state.step += 1
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        record = _step(state, crops, sched, device)
        state.step += 1
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"mode": "synthetic", "preset": "gpu-small", "arch": config.arch, "bf16": config.bf16, "batch_size": b,
            "crops": f"2x{config.image_size}+{config.local_crops}x{config.local_size}", "steps": args.steps,
            "images_per_s": round(args.steps * b / seconds, 1), "step_ms": round(1000 * seconds / args.steps, 1),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2), "last_loss": record["loss"]}


def end_to_end(args: argparse.Namespace) -> dict:
    import tempfile

    from curate.trainer.loop import train

    config = preset("gpu-small", batch_size=args.batch_size, steps=args.steps, device="cuda", bf16=not args.fp32,
                    num_workers=args.workers, shuffle_buffer=1000, checkpoint_every=10**9, arch=args.arch)
    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        result = train(config, args.shards, tmp, progress=False)
    return {"mode": "shards", "images_per_s": round(result.images_per_s, 1), "steps": args.steps,
            "loader_workers": args.workers, "corrupt": result.corrupt,
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (kernels, allocator)")
    parser.add_argument("--arch", default="vit-small")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    parser.add_argument("--shards", default=None, help="also run `curate train` on these shards")
    parser.add_argument("--workers", type=int, default=8, help="loader workers with --shards")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device"}))
        return 1
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": [synthetic(args)]}
    if args.shards:
        out["results"].append(end_to_end(args))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
