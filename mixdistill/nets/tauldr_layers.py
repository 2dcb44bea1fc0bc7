"""Layers of tau-LDR's CIFAR-10 U-Net (andrew-cr/tauLDR, after score_sde_pytorch's DDPM++ blocks).

Attribute names follow the published checkpoints (``groupnorm0``, ``conv0``, ``dense0``, ``nin.W``,
``GroupNorm_0``, ``NIN_0`` ...), and modules are registered in the published order, so that
``parameters()`` enumerates them exactly as tau-LDR's positional EMA list stores them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def tauldr_timestep_embedding(x: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """tau-LDR's sinusoidal features of ``x`` ``(B,)`` -> ``(B, dim)``: ``[sin, cos]`` with frequencies
    ``max_period^(-i / (dim/2 - 1))`` (note the ``- 1``, unlike ``nets.embeddings.sinusoidal_embedding``).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) / (half - 1) * torch.arange(half, device=x.device))
    args = x.float().unsqueeze(-1) * freqs  # (B, half)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def group_norm(channels: int) -> nn.GroupNorm:
    """tau-LDR's normalisation: ``min(channels // 4, 32)`` groups, eps 1e-6."""
    return nn.GroupNorm(min(channels // 4, 32), channels, eps=1e-6)


class NiN(nn.Module):
    """A 1x1 convolution stored as a matrix ``W`` ``(in, out)`` and bias ``b`` ``(out,)``."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(in_ch, out_ch))
        self.b = nn.Parameter(torch.zeros(out_ch))
        nn.init.xavier_uniform_(self.W, gain=0.1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("bihw,io->bohw", x, self.W) + self.b.view(1, -1, 1, 1)  # (B, out, H, W)


def _skip(x: Tensor, h: Tensor, rescale: bool) -> Tensor:
    return (x + h) / math.sqrt(2.0) if rescale else x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels, with a residual connection.

    Args:
        channels: Feature channels ``C``.
        skip_rescale: Divide the residual sum by ``sqrt(2)``.
    """

    def __init__(self, channels: int, skip_rescale: bool = True) -> None:
        super().__init__()
        self.skip_rescale = skip_rescale
        self.GroupNorm_0 = group_norm(channels)
        self.NIN_0, self.NIN_1 = NiN(channels, channels), NiN(channels, channels)
        self.NIN_2, self.NIN_3 = NiN(channels, channels), NiN(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        h = self.GroupNorm_0(x)
        q, k, v = self.NIN_0(h), self.NIN_1(h), self.NIN_2(h)  # (B, C, H, W) each
        w = torch.einsum("bchw,bcij->bhwij", q, k) * C**-0.5
        w = w.reshape(B, H, W, H * W).softmax(-1).reshape(B, H, W, H, W)
        h = self.NIN_3(torch.einsum("bhwij,bcij->bchw", w, v))
        return _skip(x, h, self.skip_rescale)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, plus the time embedding, GroupNorm-SiLU-dropout-conv, residual.

    ``extra`` ``(B, out_ch)``, when given, is added to the hidden activations right after the time
    embedding (where the Di4C student adds its lambda path); ``None`` leaves the block unchanged.

    Args:
        in_ch: Input channels.
        out_ch: Output channels (a ``nin`` projects the skip path when they differ).
        temb_dim: Width of the time embedding.
        dropout: Dropout rate before the second convolution.
        skip_rescale: Divide the residual sum by ``sqrt(2)``.
    """

    def __init__(
        self, in_ch: int, out_ch: int, temb_dim: int, dropout: float = 0.1, skip_rescale: bool = True
    ) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.skip_rescale = in_ch, out_ch, skip_rescale
        self.groupnorm0 = group_norm(in_ch)
        self.conv0 = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)
        self.dense0 = nn.Linear(temb_dim, out_ch)
        nn.init.zeros_(self.dense0.bias)
        self.groupnorm1 = group_norm(out_ch)
        self.dropout0 = nn.Dropout(dropout)
        self.conv1 = nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1)
        if out_ch != in_ch:
            self.nin = NiN(in_ch, out_ch)

    def forward(self, x: Tensor, temb: Tensor, extra: Tensor | None = None) -> Tensor:
        h = self.conv0(F.silu(self.groupnorm0(x)))  # (B, out, H, W)
        h = h + self.dense0(F.silu(temb))[:, :, None, None]
        if extra is not None:
            h = h + extra[:, :, None, None]
        h = self.conv1(self.dropout0(F.silu(self.groupnorm1(h))))
        skip = self.nin(x) if self.out_ch != self.in_ch else x
        return _skip(skip, h, self.skip_rescale)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution after padding one row and column at the bottom/right."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # (B, C, H/2, W/2)


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling, then a 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (B, C, 2H, 2W)
