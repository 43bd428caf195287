"""Training benchmark: cpu-tiny training images/s on this CPU (data loading, multi-crop, student and teacher
passes, optimizer, EMA: `curate.trainer.loop.train` end to end on toy shards) next to the model-only step
on ready-made crops in the same run (the floor the data pipeline adds to). One torch thread and one loader
worker, as `curate train --preset cpu-tiny` runs on a 2-core machine.

`python benchmarks/train.py --probes` also makes the probe figures of BENCHMARKS.md: cpu-tiny trained on
toy shards with seeds 0, 1, 2, each evaluated (digits, textkind; probe seed = training seed) next to the
same architecture with random weights (minutes per seed)."""

from __future__ import annotations

import tempfile
import time

import torch

from curate.trainer.config import preset
from curate.trainer.data import TrainStream, find_shards
from curate.trainer.loop import Schedules, State, _step, train
from curate.trainer.toyshards import samples, write_shards


def _model_only(config, crops: list[list[torch.Tensor]]) -> float:
    state, sched = State.new(config, torch.device("cpu")), Schedules.of(config)
    start = time.perf_counter()
    for batch in crops:
        _step(state, batch, sched, torch.device("cpu"))
        state.step += 1
    return len(crops) * config.batch_size / (time.perf_counter() - start)


def bench(steps: int = 40, images: int = 256) -> list[dict]:
    torch.set_num_threads(1)
    config = preset("cpu-tiny", steps=steps, num_workers=1, checkpoint_every=steps)
    with tempfile.TemporaryDirectory() as tmp:
        write_shards(f"{tmp}/shards", samples(images, seed=0, size=64), per_shard=64)
        stream = iter(TrainStream(find_shards(f"{tmp}/shards"), config))
        crops = [next(stream)["crops"] for _ in range(10)]
        model_only = _model_only(config, crops)
        result = train(config, f"{tmp}/shards", f"{tmp}/run", progress=False)
    return [{"benchmark": "train", "preset": "cpu-tiny", "arch": config.arch, "image_size": config.image_size,
             "crops": f"2x{config.image_size}+{config.local_crops}x{config.local_size}", "batch": config.batch_size,
             "steps": steps, "train_images_per_s": round(result.images_per_s, 1),
             "model_only_images_per_s": round(model_only, 1),
             "ratio": round(result.images_per_s / model_only, 2)}]


def probe_figures(seeds: tuple[int, ...] = (0, 1, 2), steps: int = 300, images: int = 448) -> list[dict]:
    from curate.trainer.eval import evaluate

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        write_shards(f"{tmp}/shards", samples(images, seed=0, size=64), per_shard=64)
        for seed in seeds:
            config = preset("cpu-tiny", steps=steps, seed=seed, num_workers=1, checkpoint_every=steps)
            result = train(config, f"{tmp}/shards", f"{tmp}/run{seed}", progress=False)
            h = result.history
            scores = evaluate(result.checkpoint, seed=seed)["probes"]
            for probe, s in scores.items():
                rows.append({"seed": seed, "probe": probe, "images": s["images"],
                             "knn_trained": round(s["trained"]["knn"], 3), "knn_random": round(s["random"]["knn"], 3),
                             "linear_trained": round(s["trained"]["linear"], 3),
                             "linear_random": round(s["random"]["linear"], 3),
                             "kl_first_30": round(sum(r["kl"] for r in h[:30]) / 30, 3),
                             "kl_last_30": round(sum(r["kl"] for r in h[-30:]) / 30, 3),
                             "teacher_mean_entropy_end": round(h[-1]["teacher_mean_entropy"], 2),
                             "images_per_s": round(result.images_per_s, 1)})
    return rows


if __name__ == "__main__":
    import json
    import sys

    if "--probes" in sys.argv:
        for row in probe_figures():
            print(json.dumps(row), flush=True)
    print(json.dumps(bench(), indent=2))
