"""DINO's self-distillation loss, its schedules, and the optional KoLeo regulariser.

The teacher's outputs are centred (an EMA of their batch mean is subtracted) and sharpened (a low,
warmed-up temperature): centring alone would collapse to uniform, sharpening alone to one prototype;
together they keep the output informative. `entropies` measures both failure modes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def cosine_schedule(start: float, end: float, steps: int, warmup_steps: int = 0, warmup_start: float = 0.0) -> np.ndarray:
    """Linear warmup from `warmup_start` to `start`, then cosine from `start` to `end`: one value per step."""
    warmup_steps = min(warmup_steps, steps)
    warm = np.linspace(warmup_start, start, warmup_steps, endpoint=False)
    rest = np.arange(steps - warmup_steps)
    cos = end + 0.5 * (start - end) * (1 + np.cos(math.pi * rest / max(1, len(rest))))
    return np.concatenate([warm, cos])


class DINOLoss(nn.Module):
    def __init__(self, out_dim: int, global_crops: int, steps: int, student_temp: float, teacher_temp: float,
                 warmup_teacher_temp: float, warmup_teacher_temp_steps: int, center_momentum: float) -> None:
        super().__init__()
        self.student_temp, self.center_momentum, self.global_crops = student_temp, center_momentum, global_crops
        warm = min(warmup_teacher_temp_steps, steps)
        self.teacher_temps = np.concatenate([np.linspace(warmup_teacher_temp, teacher_temp, warm),
                                             np.full(steps - warm, teacher_temp)])
        self.center: torch.Tensor
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_probs(self, teacher_out: torch.Tensor, step: int) -> torch.Tensor:
        temp = float(self.teacher_temps[min(step, len(self.teacher_temps) - 1)])
        return F.softmax((teacher_out.float() - self.center) / temp, dim=-1)

    def forward(self, student_out: torch.Tensor, teacher_out: torch.Tensor, step: int) -> torch.Tensor:
        """Cross-entropy between every teacher global crop and every other student crop (same image),
        averaged over pairs and batch; then the centre moves toward this batch's teacher mean."""
        crops = student_out.shape[0] // (teacher_out.shape[0] // self.global_crops)
        student = F.log_softmax(student_out.float() / self.student_temp, dim=-1).chunk(crops)
        teacher = self.teacher_probs(teacher_out, step).detach().chunk(self.global_crops)
        total, pairs = student_out.new_zeros((), dtype=torch.float32), 0
        for t, probs in enumerate(teacher):
            for s, logp in enumerate(student):
                if s == t:
                    continue
                total = total + torch.sum(-probs * logp, dim=-1).mean()
                pairs += 1
        self.update_center(teacher_out)
        return total / pairs

    @torch.no_grad()
    def update_center(self, teacher_out: torch.Tensor) -> None:
        batch_center = teacher_out.float().mean(dim=0, keepdim=True)
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)


@torch.no_grad()
def entropies(probs: torch.Tensor) -> tuple[float, float]:
    """(mean entropy of each row, entropy of the mean row), in nats. Collapse to one prototype drives the
    second to 0; collapse to uniform drives the first to log(K)."""
    per_row = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()
    mean = probs.mean(0)
    return float(per_row), float(-(mean * mean.clamp_min(1e-12).log()).sum())


def koleo(features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Kozachenko-Leonenko entropy estimator (DINOv2's regulariser): -mean log distance from each
    L2-normalised feature to its nearest neighbour in the batch. Spreads features out."""
    x = F.normalize(features.float(), dim=-1, eps=eps)
    dots = x @ x.T
    dots.fill_diagonal_(-2.0)  # never one's own neighbour
    nearest = dots.argmax(dim=1)
    distances = (x - x[nearest]).norm(dim=-1)
    return -torch.log(distances + eps).mean()
