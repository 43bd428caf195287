"""Probes of frozen features: k-NN (cosine, k=20, DINO's temperature-weighted vote) and a linear probe
(scikit-learn logistic regression), always next to the same architecture with random weights.

- `digits`: scikit-learn's bundled handwritten digits (1797 real 8x8 scans, 10 classes), upsampled.
- `textkind`: none / document / chart / table / sign / screenshot, drawn by the sample crawl's renderers
  with seeds from PROBE_SEED_OFFSET up: the crawl and the toy shards use seeds below 2**32, so these
  images are held out from training. "none" is synthetic scenes (`natural`), not the photo pool, which
  has only 65 windows that training data shares.
Each probe splits its images in two stratified halves (train / test) with the probe seed.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from curate.trainer.augment import eval_tensor
from curate.trainer.config import PROBES, TrainConfig
from curate.trainer.loop import build_net, load_checkpoint

TEXT_KIND_CLASSES = ("none", "document", "chart", "table", "sign", "screenshot")
PROBE_SEED_OFFSET = 10**10
K = 20


def digits_images() -> tuple[list[Image.Image], np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = [Image.fromarray((x * (255 / 16)).astype(np.uint8), "L").convert("RGB") for x in data.images]
    return images, data.target.astype(np.int64)


@functools.lru_cache(maxsize=4)
def textkind_images(seed: int, per_class: int = 40, size: int = 64) -> tuple[list[Image.Image], np.ndarray]:
    from curate.trainer.toyshards import render

    images, labels = [], []
    for label, kind in enumerate(TEXT_KIND_CLASSES):
        for i in range(per_class):
            images.append(render("natural" if kind == "none" else kind, PROBE_SEED_OFFSET + seed * 10**6 + i, size))
            labels.append(label)
    return images, np.array(labels, dtype=np.int64)


@torch.no_grad()
def features(backbone: nn.Module, images: list[Image.Image], size: int, batch: int = 128) -> np.ndarray:
    backbone.eval()
    device = next(backbone.parameters()).device
    out = []
    for start in range(0, len(images), batch):
        x = torch.stack([eval_tensor(im, size) for im in images[start:start + batch]]).to(device)
        out.append(backbone(x).float().cpu())
    return torch.cat(out).numpy()


def knn_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 k: int = K, temperature: float = 0.07) -> float:
    """Cosine k-NN with exp(sim / T) weighted votes (DINO's eval_knn)."""
    a = torch.nn.functional.normalize(torch.from_numpy(train_x).float(), dim=1)
    b = torch.nn.functional.normalize(torch.from_numpy(test_x).float(), dim=1)
    sims, idx = (b @ a.T).topk(min(k, len(a)), dim=1)
    classes = int(max(train_y.max(), test_y.max())) + 1
    votes = torch.zeros(len(b), classes)
    votes.scatter_add_(1, torch.from_numpy(train_y)[idx], (sims / temperature).exp())
    return float((votes.argmax(1).numpy() == test_y).mean())


def linear_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(train_x, train_y)
    return float(clf.score(test_x, test_y))


def probe_scores(backbone: nn.Module, images: list[Image.Image], labels: np.ndarray, size: int,
                 seed: int) -> dict[str, float]:
    from sklearn.model_selection import train_test_split

    x = features(backbone, images, size)
    tr, te = train_test_split(np.arange(len(labels)), test_size=0.5, stratify=labels, random_state=seed)
    return {"knn": knn_accuracy(x[tr], labels[tr], x[te], labels[te]),
            "linear": linear_accuracy(x[tr], labels[tr], x[te], labels[te])}


def probe_data(probe: str, seed: int, per_class: int = 40) -> tuple[list[Image.Image], np.ndarray]:
    if probe == "digits":
        return digits_images()
    return textkind_images(seed, per_class)


def evaluate(checkpoint: str, probes: tuple[str, ...] = PROBES, seed: int = 0, per_class: int = 40,
             net: str = "teacher") -> dict[str, Any]:
    """{"checkpoint", "arch", "step", "probes": {probe: {"trained": {knn, linear}, "random": {...}, n}}}."""
    ckpt = load_checkpoint(checkpoint)
    config = TrainConfig.from_dict(ckpt["config"])
    torch.set_num_threads(config.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    trained = build_net(config)
    trained.load_state_dict(ckpt[net])
    torch.manual_seed(seed)
    random_net = build_net(config)  # same architecture, fresh initialisation
    trained, random_net = trained.to(device), random_net.to(device)
    result: dict[str, Any] = {"checkpoint": checkpoint, "arch": config.arch, "patch_size": config.patch_size,
                              "image_size": config.image_size, "step": ckpt["step"], "net": net, "seed": seed,
                              "k": K, "probes": {}}
    for probe in probes:
        images, labels = probe_data(probe, seed, per_class)
        result["probes"][probe] = {
            "images": len(labels), "classes": int(labels.max()) + 1,
            "trained": probe_scores(trained.backbone, images, labels, config.image_size, seed),
            "random": probe_scores(random_net.backbone, images, labels, config.image_size, seed)}
    return result


def table(result: dict[str, Any]) -> str:
    lines = [f"{'probe':10s} {'images':>6s} {'k-NN trained':>12s} {'k-NN random':>11s} "
             f"{'linear trained':>14s} {'linear random':>13s}"]
    for probe, r in result["probes"].items():
        lines.append(f"{probe:10s} {r['images']:>6d} {r['trained']['knn']:>12.3f} {r['random']['knn']:>11.3f} "
                     f"{r['trained']['linear']:>14.3f} {r['random']['linear']:>13.3f}")
    return "\n".join(lines)
