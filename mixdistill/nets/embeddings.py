"""Embeddings of scalars (time, lambda) shared by the backbones and the lambda injections."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_embedding(x: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer-style sinusoidal features of ``x`` ``(...)`` -> ``(..., dim)`` (``dim`` even)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    args = x.float().unsqueeze(-1) * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimeEmbedding(nn.Module):
    """Sinusoidal features of ``1000 t`` -> MLP -> ``(B, out_features)``.

    ``out_features`` lets ``AdditiveInjection`` infer its width when lambda is added here.
    """

    def __init__(self, out_features: int, features: int = 128) -> None:
        super().__init__()
        self.features, self.out_features = features, out_features
        self.mlp = nn.Sequential(
            nn.Linear(features, out_features), nn.SiLU(), nn.Linear(out_features, out_features)
        )

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sinusoidal_embedding(1000.0 * t, self.features))
