"""The trainer's parts on their own: schedules, loss, KoLeo, head, ViT, crops, k-NN, data order."""

from __future__ import annotations

import math
import random

import fsspec
import numpy as np
import pytest
import torch
from PIL import Image

from curate.trainer.augment import MultiCrop, crop_box
from curate.trainer.data import TrainStream, decode, find_shards, raw_samples
from curate.trainer.eval import knn_accuracy
from curate.trainer.head import DINOHead
from curate.trainer.loss import DINOLoss, cosine_schedule, entropies, koleo
from curate.trainer.model import vit
from tests.trainer.conftest import small


def test_cosine_schedule_warms_up_then_decays() -> None:
    s = cosine_schedule(1.0, 0.1, steps=110, warmup_steps=10)
    assert len(s) == 110
    assert s[0] == 0.0 and s[5] == pytest.approx(0.5)
    assert s[10] == pytest.approx(1.0)
    assert s[60] == pytest.approx(0.55)
    assert s[-1] == pytest.approx(0.1, abs=1e-3)
    assert np.all(np.diff(s[10:]) <= 1e-12)


def test_dino_loss_of_uniform_outputs_is_log_k_and_center_moves() -> None:
    k = 64
    loss = DINOLoss(k, 2, steps=10, student_temp=0.1, teacher_temp=0.04, warmup_teacher_temp=0.04,
                    warmup_teacher_temp_steps=0, center_momentum=0.9)
    student, teacher = torch.zeros(4 * 3, k), torch.ones(3 * 2, k)  # 4 crops, 2 global, batch 3
    assert loss(student, teacher, 0).item() == pytest.approx(math.log(k))
    assert torch.allclose(loss.center, torch.full((1, k), 0.1))


def test_dino_loss_is_low_when_student_matches_a_sharp_teacher() -> None:
    k = 8
    loss = DINOLoss(k, 2, steps=1, student_temp=0.1, teacher_temp=0.04, warmup_teacher_temp=0.04,
                    warmup_teacher_temp_steps=0, center_momentum=0.9)
    onehot = torch.eye(k)[:2].repeat(2, 1) * 5  # batch 2, both crops agree
    assert loss(onehot.clone(), onehot.clone(), 0).item() < 0.01


def test_entropies_tell_collapse_apart() -> None:
    one = torch.zeros(5, 10)
    one[:, 3] = 1.0
    assert entropies(one) == pytest.approx((0.0, 0.0), abs=1e-6)
    uniform = torch.full((5, 10), 0.1)
    assert entropies(uniform) == pytest.approx((math.log(10), math.log(10)))


def test_koleo_rewards_spread_features() -> None:
    spread = torch.eye(4)
    bunched = torch.tensor([[1.0, 0.0], [1.0, 0.01], [1.0, 0.02], [1.0, 0.03]])
    assert koleo(spread).item() == pytest.approx(-math.log(math.sqrt(2)), abs=1e-5)
    assert koleo(bunched).item() > 3.0


def test_head_last_layer_is_weight_normalised() -> None:
    head = DINOHead(16, 32, hidden=24, bottleneck=8)
    with torch.no_grad():
        head.last_layer.weight.mul_(100)
        out = head(torch.randn(5, 16))
    assert out.shape == (5, 32)
    assert out.abs().max().item() <= 1.0 + 1e-5  # cosine similarities


def test_vit_takes_global_and_local_crops() -> None:
    torch.manual_seed(0)
    net = vit("vit-pico", patch_size=4, image_size=32)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    assert net(torch.randn(3, 3, 16, 16)).shape == (3, 64)


def test_crops_are_in_bounds_sized_and_deterministic() -> None:
    rng = random.Random(1)
    for _ in range(200):
        left, top, right, bottom = crop_box(rng, 50, 30, (0.05, 1.0))
        assert 0 <= left < right <= 50 and 0 <= top < bottom <= 30
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    crops = MultiCrop(32, 16, 3, (0.3, 1.0), (0.05, 0.3))
    g1, l1 = crops(image, random.Random("a"))
    g2, l2 = crops(image, random.Random("a"))
    assert [t.shape for t in g1] == [(3, 32, 32)] * 2 and [t.shape for t in l1] == [(3, 16, 16)] * 3
    assert all(torch.equal(a, b) for a, b in zip(g1 + l1, g2 + l2, strict=True))
    g3, _ = crops(image, random.Random("b"))
    assert not torch.equal(g1[0], g3[0])


def test_knn_accuracy_on_separable_and_on_shuffled_labels() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 10
    y = np.repeat(np.arange(3), 40)
    x = centers[y] + rng.normal(size=(120, 8))
    assert knn_accuracy(x[::2], y[::2], x[1::2], y[1::2]) == 1.0
    assert knn_accuracy(x[::2], rng.permutation(y[::2]), x[1::2], y[1::2]) < 0.6


def test_decode_refuses_garbage_and_reduces_large_images() -> None:
    from curate.trainer.toyshards import encode

    assert decode(b"not an image", 64) == "undecodable"
    assert decode(None, 64) == "missing_image"
    big = Image.new("RGB", (400, 300), (10, 20, 30))
    image = decode(encode(big, "JPEG"), 64)
    assert isinstance(image, Image.Image) and min(image.size) == 64 and image.size[0] > image.size[1]


def test_tar_and_parquet_shards_hold_the_same_samples(toy_shards, toy_records) -> None:
    tars, parquets = find_shards(str(toy_shards)), find_shards(str(toy_shards), "parquet")
    assert tars.kind == "tar" and len(tars.paths) == 4 and parquets.kind == "parquet" and len(parquets.paths) == 4
    from_tar = [(s["key"], s["image"]) for p in tars.paths for s in raw_samples(tars, p)]
    from_parquet = [(s["key"], s["image"]) for p in parquets.paths for s in raw_samples(parquets, p)]
    assert from_tar == from_parquet == [(r["key"], r["data"]) for r in toy_records]


def test_shards_are_read_from_fsspec_memory(toy_records) -> None:
    from curate.trainer.toyshards import write_shards

    write_shards("memory://trainer-parts/shards", toy_records[:20], per_shard=10)
    shards = find_shards("memory://trainer-parts/shards")
    assert len(shards.paths) == 2
    assert [s["key"] for p in shards.paths for s in raw_samples(shards, p)] == [r["key"] for r in toy_records[:20]]
    fsspec.filesystem("memory").rm("/trainer-parts", recursive=True)


def test_a_later_start_step_gives_the_same_batch(toy_shards) -> None:
    config = small(batch_size=8)
    shards = find_shards(str(toy_shards))
    first = iter(TrainStream(shards, config, 0))
    batches = [next(first) for _ in range(4)]
    later = next(iter(TrainStream(shards, config, 3)))
    assert later["step"] == 3 and later["keys"] == batches[3]["keys"]
    assert all(torch.equal(a, b) for a, b in zip(later["crops"], batches[3]["crops"], strict=True))
    assert len({k for b in batches for k in b["keys"]}) == 32  # a shuffled epoch: no repeats yet
    other_seed = next(iter(TrainStream(shards, small(batch_size=8, seed=1), 0)))
    assert other_seed["keys"] != batches[0]["keys"]
