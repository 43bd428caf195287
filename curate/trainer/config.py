"""Training configuration: a frozen dataclass, two presets, and command-line overrides on top.

Presets: `cpu-tiny` trains a small ViT on 32-px crops in minutes on a laptop CPU (fp32); `gpu-small`
is ViT-S/16 at 224 px with bf16 autocast. Everything a run depends on is here, so a checkpoint that
stores this config can be resumed exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from curate.errors import ConfigError

# name: (embed dim, depth, heads)
ARCHS: dict[str, tuple[int, int, int]] = {
    "vit-pico": (64, 4, 2),
    "vit-nano": (96, 6, 3),
    "vit-tiny": (192, 12, 3),
    "vit-small": (384, 12, 6),
}


PROBES = ("digits", "textkind")  # the probes curate.trainer.eval runs (here: a name list without torch)

@dataclass(frozen=True)
class TrainConfig:
    arch: str = "vit-pico"
    patch_size: int = 4
    image_size: int = 32  # global crops (and evaluation images)
    local_size: int = 16
    local_crops: int = 4
    global_scale: tuple[float, float] = (0.35, 1.0)
    local_scale: tuple[float, float] = (0.08, 0.35)
    # cpu-tiny's head and temperatures were picked on toy shards (200-step runs, BENCHMARKS.md): with 1024
    # prototypes and a 0.04 teacher temperature the teacher drifted toward uniform outputs (row entropy 5.6
    # of 6.9 nats) and the probes did not beat random weights; 256 prototypes, a 0.02 teacher temperature
    # and KoLeo 0.1 kept the teacher sharp and gave +10 points of text-kind k-NN.
    out_dim: int = 256  # DINO head prototypes
    head_hidden: int = 512
    head_bottleneck: int = 64
    batch_size: int = 32
    steps: int = 300
    lr: float = 3e-4  # peak; taken as given (no scaling by batch size)
    min_lr: float = 1e-5
    warmup_steps: int = 30
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    clip_grad: float = 3.0
    momentum_teacher: float = 0.99
    student_temp: float = 0.1
    teacher_temp: float = 0.02
    warmup_teacher_temp: float = 0.02
    warmup_teacher_temp_steps: int = 30
    center_momentum: float = 0.9
    freeze_last_layer_steps: int = 10
    koleo_weight: float = 0.1
    shuffle_buffer: int = 256
    num_workers: int = 2
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = True  # autocast on CUDA only; CPU runs fp32
    threads: int = 1  # torch CPU threads (on a shared 2-core machine, 2 threads ran 10x slower than 1)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown arch {self.arch!r} (one of {', '.join(ARCHS)})")
        for name in ("image_size", "local_size"):
            if getattr(self, name) % self.patch_size:
                raise ConfigError(f"{name} {getattr(self, name)} is not a multiple of patch_size {self.patch_size}")
        positive = ("batch_size", "steps", "patch_size", "out_dim", "checkpoint_every", "threads")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.local_crops < 0 or self.num_workers < 0 or self.warmup_steps < 0:
            raise ConfigError("local_crops, num_workers and warmup_steps must be >= 0")
        if not (0 <= self.momentum_teacher <= 1 and self.lr > 0):
            raise ConfigError("momentum_teacher must be in [0, 1] and lr > 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda (got {self.device!r})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**values)


PRESETS: dict[str, TrainConfig] = {
    "cpu-tiny": TrainConfig(),
    "gpu-small": TrainConfig(arch="vit-small", patch_size=16, image_size=224, local_size=96, local_crops=8,
                             global_scale=(0.32, 1.0), local_scale=(0.05, 0.32), out_dim=65536, head_hidden=2048,
                             head_bottleneck=256, batch_size=128, steps=10000, lr=5e-4 * 128 / 256, min_lr=1e-6,
                             warmup_steps=1000, momentum_teacher=0.996, teacher_temp=0.07,
                             warmup_teacher_temp=0.04, warmup_teacher_temp_steps=3000, freeze_last_layer_steps=1000,
                             koleo_weight=0.0,
                             shuffle_buffer=5000, num_workers=8, checkpoint_every=1000, threads=8),
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """The named preset with the given fields replaced (None values are ignored)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r} (one of {', '.join(PRESETS)})")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    changes = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(changes) - fields
    if unknown:
        raise ConfigError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    try:
        return dataclasses.replace(PRESETS[name], **changes)
    except TypeError as e:
        raise ConfigError(str(e)) from e
