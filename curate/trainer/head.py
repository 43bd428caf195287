"""The DINO projection head: MLP -> bottleneck -> L2 normalize -> weight-normalised linear layer.

The last layer is `x/|x| @ (V/|V|)^T`: weight normalisation with the gain fixed to 1 (DINO's
`norm_last_layer=True`), which keeps the prototypes on the sphere and training stable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DINOHead(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden: int = 2048, bottleneck: int = 256, layers: int = 3) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1)
        mlp: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            mlp += [nn.Linear(a, b), nn.GELU()]
        mlp.append(nn.Linear(dims[-1], bottleneck))
        self.mlp = nn.Sequential(*mlp)
        self.last_layer = nn.Linear(bottleneck, out_dim, bias=False)  # direction V; gain fixed to 1
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.last_layer.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        return F.linear(x, F.normalize(self.last_layer.weight, dim=-1))


class MultiCropNet(nn.Module):
    """Backbone + head over a list of crops: one backbone pass per resolution, one head pass for all."""

    def __init__(self, backbone: nn.Module, head: DINOHead) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, crops: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(head outputs of every crop, concatenated in crop order; backbone features of the same)."""
        feats: list[torch.Tensor] = []
        start = 0
        while start < len(crops):
            end = start
            while end < len(crops) and crops[end].shape[-1] == crops[start].shape[-1]:
                end += 1
            feats.append(self.backbone(torch.cat(crops[start:end])))
            start = end
        features = torch.cat(feats)
        return self.head(features), features
