"""The training loop: student and EMA teacher, AdamW with warmup + cosine learning rate and a cosine
weight-decay schedule, gradient clipping, checkpoints that resume exactly.

A checkpoint (RUN/last.pt, written to a temporary name and renamed) holds the student, the teacher, the
optimizer, the loss centre, the config, the next step (which is also the data position: see
`curate.trainer.data`), the per-step history and the RNG states. A non-finite loss stops the run with one
`TrainingError` naming the step; the last checkpoint stays as it was.
"""

from __future__ import annotations

import copy
import io
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import torch
from torch import nn

from curate.errors import CurateError, InputError
from curate.trainer.config import TrainConfig
from curate.trainer.data import find_shards, loader
from curate.trainer.head import DINOHead, MultiCropNet
from curate.trainer.loss import DINOLoss, cosine_schedule, entropies, koleo
from curate.trainer.model import vit


class TrainingError(CurateError):
    """Training cannot go on (a non-finite loss): the message names the step."""


def build_net(config: TrainConfig) -> MultiCropNet:
    backbone = vit(config.arch, config.patch_size, config.image_size)
    head = DINOHead(backbone.embed_dim, config.out_dim, config.head_hidden, config.head_bottleneck)
    return MultiCropNet(backbone, head)


def pick_device(config: TrainConfig) -> torch.device:
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA device available")
        return torch.device("cuda")
    return torch.device("cpu")


def _param_groups(net: nn.Module) -> list[dict[str, Any]]:
    """Weight decay on weight matrices only; none on biases, norms, position embeddings, class token."""
    decay: list[nn.Parameter] = []
    plain: list[nn.Parameter] = []
    for name, p in net.named_parameters():
        if p.requires_grad:
            (plain if p.ndim <= 1 or name.endswith(("pos_embed", "cls_token")) else decay).append(p)
    return [{"params": decay}, {"params": plain, "weight_decay": 0.0}]


@dataclass
class Schedules:
    lr: np.ndarray
    wd: np.ndarray
    momentum: np.ndarray

    @classmethod
    def of(cls, c: TrainConfig) -> Schedules:
        return cls(cosine_schedule(c.lr, c.min_lr, c.steps, c.warmup_steps),
                   cosine_schedule(c.weight_decay, c.weight_decay_end, c.steps),
                   cosine_schedule(c.momentum_teacher, 1.0, c.steps))


@dataclass
class State:
    config: TrainConfig
    student: MultiCropNet
    teacher: MultiCropNet
    optimizer: torch.optim.Optimizer
    loss: DINOLoss
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    corrupt: Counter[str] = field(default_factory=Counter)

    @classmethod
    def new(cls, config: TrainConfig, device: torch.device) -> State:
        torch.manual_seed(config.seed)
        student = build_net(config).to(device)
        teacher = copy.deepcopy(student)
        for p in teacher.parameters():
            p.requires_grad_(False)
        optimizer = torch.optim.AdamW(_param_groups(student), lr=config.lr)
        loss = DINOLoss(config.out_dim, 2, config.steps, config.student_temp, config.teacher_temp,
                        config.warmup_teacher_temp, config.warmup_teacher_temp_steps, config.center_momentum).to(device)
        return cls(config, student, teacher, optimizer, loss)

    def checkpoint(self, shards: tuple[str, ...] = ()) -> dict[str, Any]:
        # the data position is the step (see curate.trainer.data) over this list of shards
        data = {"next_step": self.step, "shards": [p.rsplit("/", 1)[-1] for p in shards]}
        return {"format": "curate-dino-1", "config": self.config.to_dict(), "step": self.step, "data": data,
                "student": self.student.state_dict(), "teacher": self.teacher.state_dict(),
                "optimizer": self.optimizer.state_dict(), "loss": self.loss.state_dict(),
                "history": self.history, "corrupt": dict(self.corrupt),
                "rng": {"torch": torch.get_rng_state(), "python": random.getstate()}}

    @classmethod
    def restore(cls, ckpt: dict[str, Any], device: torch.device) -> State:
        state = cls.new(TrainConfig.from_dict(ckpt["config"]), device)
        state.student.load_state_dict(ckpt["student"])
        state.teacher.load_state_dict(ckpt["teacher"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.loss.load_state_dict(ckpt["loss"])
        state.step, state.history, state.corrupt = ckpt["step"], list(ckpt["history"]), Counter(ckpt["corrupt"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        random.setstate(ckpt["rng"]["python"])
        return state


def save_checkpoint(ckpt: dict[str, Any], url: str) -> None:
    """Write atomically: a temporary name in the same folder, then a rename."""
    fs, path = fsspec.core.url_to_fs(url)
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    tmp = f"{path}.tmp"
    fs.pipe_file(tmp, buf.getvalue())
    fs.mv(tmp, path)


def load_checkpoint(url: str) -> dict[str, Any]:
    fs, path = fsspec.core.url_to_fs(url)
    if not fs.isfile(path):
        raise InputError(f"no checkpoint at {url}")
    with fs.open(path, "rb") as f:
        ckpt = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != "curate-dino-1":
        raise InputError(f"{url} is not a curate DINO checkpoint")
    return ckpt


def _step(state: State, crops: list[torch.Tensor], sched: Schedules, device: torch.device) -> dict[str, float]:
    c, step = state.config, state.step
    for i, group in enumerate(state.optimizer.param_groups):
        group["lr"] = float(sched.lr[step])
        if i == 0:
            group["weight_decay"] = float(sched.wd[step])
    crops = [x.to(device, non_blocking=True) for x in crops]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and c.bf16)
    with autocast:
        with torch.no_grad():
            teacher_out, _ = state.teacher(crops[:2])
        row_h, mean_h = entropies(state.loss.teacher_probs(teacher_out, step))  # before the centre moves
        student_out, features = state.student(crops)
        dino = state.loss(student_out, teacher_out, step)
        loss = dino
        if c.koleo_weight > 0:
            batch = crops[0].shape[0]
            loss = loss + c.koleo_weight * sum(koleo(f) for f in features[:2 * batch].chunk(2)) / 2
    if not math.isfinite(loss.item()):
        raise TrainingError(f"non-finite loss ({loss.item()}) at step {step}: stopping; the last checkpoint "
                            f"is unchanged (lower --lr, or check the data)")
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(state.student.parameters(), c.clip_grad)
    if step < c.freeze_last_layer_steps:
        state.student.head.last_layer.weight.grad = None
    state.optimizer.step()
    with torch.no_grad():
        m = float(sched.momentum[step])
        for ps, pt in zip(state.student.parameters(), state.teacher.parameters(), strict=True):
            pt.mul_(m).add_(ps.detach(), alpha=1 - m)
    # cross-entropy = teacher entropy + KL(teacher || student): the KL is what the student controls
    return {"step": step, "loss": float(loss.item()), "dino_loss": float(dino.item()), "kl": float(dino.item()) - row_h,
            "lr": float(sched.lr[step]),
            "teacher_entropy": row_h, "teacher_mean_entropy": mean_h, "grad_norm": float(grad_norm)}


@dataclass
class RunResult:
    history: list[dict[str, float]]
    corrupt: dict[str, int]
    images_per_s: float
    checkpoint: str


def train(config: TrainConfig, data: str, out: str, resume: bool = False, progress: bool = True,
          data_format: str = "auto", on_step: Callable[[dict[str, float]], None] | None = None) -> RunResult:
    """Train (or continue training) and write OUT/last.pt every `checkpoint_every` steps and at the end."""
    shards = find_shards(data, data_format)
    last = out.rstrip("/") + "/last.pt"
    if resume:
        ckpt = load_checkpoint(last)
        config = TrainConfig.from_dict(ckpt["config"])
        names = [p.rsplit("/", 1)[-1] for p in shards.paths]
        if ckpt["data"]["shards"] != names:
            raise InputError(f"--data {data}: the shards differ from the checkpoint's ({len(names)} now, "
                             f"{len(ckpt['data']['shards'])} then): resuming would not continue the same data order")
    torch.set_num_threads(config.threads)
    device = pick_device(config)
    state = State.restore(ckpt, device) if resume else State.new(config, device)
    sched = Schedules.of(config)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=state.step, desc="train", unit="step", dynamic_ncols=True)
    images, started = 0, time.perf_counter()
    state.student.train()
    state.teacher.train()
    if state.step < config.steps:
        for batch in loader(shards, config, state.step):
            if batch["step"] != state.step:  # the data order is a function of the step: never drift
                raise TrainingError(f"data for step {batch['step']} arrived at step {state.step}")
            state.corrupt.update(batch["corrupt"])
            n = len(batch["keys"])
            record = _step(state, batch["crops"], sched, device) if n >= 2 else {"step": state.step, "skipped": 1.0}
            record["images"] = n
            state.history.append(record)
            images += n
            state.step += 1
            rate = images / max(1e-9, time.perf_counter() - started)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{record.get('loss', float('nan')):.4f}", lr=f"{record.get('lr', 0):.2e}",
                                img_s=f"{rate:.0f}")
            if state.step % config.checkpoint_every == 0 or state.step == config.steps:
                save_checkpoint(state.checkpoint(shards.paths), last)
            if on_step:
                on_step(record)
            if state.step >= config.steps:
                break
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - started
    return RunResult(state.history, dict(state.corrupt), images / seconds if images else 0.0, last)
