"""tau-LDR's CIFAR-10 U-Net and its truncated-logistic output over pixel bins.

Written from the published architecture (andrew-cr/tauLDR ``lib/networks/networks.py`` ``UNet`` and
``lib/models/models.py`` ``ImageX0PredBase``); key names match ``ckpt_0001999999.pt`` after its DDP
``.module.`` prefix is removed. The default sizes are the CIFAR-10 model: 35,749,766 parameters, as
many as the published ``UNet`` built with tau-LDR's CIFAR-10 config.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixdistill.nets.tauldr_layers import (
    AttnBlock,
    Downsample,
    ResBlock,
    Upsample,
    group_norm,
    tauldr_timestep_embedding,
)


@runtime_checkable
class ResBlockLatentPath(Protocol):
    """An extra input that ``TauLDRUNet`` adds to every ResBlock's hidden activations (lambda of a
    Di4C student, see ``injection.resblock.ResBlockInjection``).
    """

    def embed(self, time_features: Tensor, bottleneck: Tensor | None) -> Tensor | None:
        """Embedding ``(B, E)`` for the down path (``bottleneck`` None) or for the middle and up path
        (``bottleneck`` the ``(B, C, h, w)`` features after the down path); ``None`` when switched off.
        ``time_features`` are the ``(B, time_embed_dim)`` sinusoids of ``time_scale * t``.
        """

    def block_offset(self, index: int, embedding: Tensor) -> Tensor:
        """``(B, out_ch)`` added to ResBlock number ``index`` (down, middle, then up order)."""


class TauLDRUNet(nn.Module):
    """``net(x (B, C, H, W) pixel values, t (B,)) -> (B, 2C, H, W)``: per pixel, the mean
    ``tanh(centred x + h[:, :C])`` and the log-scale ``h[:, C:]`` of a logistic distribution.

    Pixels ``0..data_max`` are centred to ``2 x / data_max - 1`` (tau-LDR: ``data_min_max = [0, 255]``).

    Args:
        in_channels: Image channels ``C``.
        ch: Base width.
        ch_mult: Width multiplier per resolution.
        num_res_blocks: ResBlocks per resolution on the down path (one more on the up path).
        attn_scale: Index of the resolution that gets attention after each ResBlock (1: 16x16).
        dropout: Dropout rate inside the ResBlocks.
        skip_rescale: Divide residual sums by ``sqrt(2)``.
        time_embed_dim: Sinusoidal time features; the embedding MLP has width ``4 *`` this.
        time_scale: Multiplier of ``t`` before the sinusoids (1000).
        data_max: Largest pixel value (``S - 1``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attn_scale: int = 1,
        dropout: float = 0.1,
        skip_rescale: bool = True,
        time_embed_dim: int = 128,
        time_scale: float = 1000.0,
        data_max: float = 255.0,
    ) -> None:
        super().__init__()
        self.in_channels, self.ch_mult, self.num_res_blocks = in_channels, tuple(ch_mult), num_res_blocks
        self.attn_scale, self.time_embed_dim, self.time_scale = attn_scale, time_embed_dim, time_scale
        self.data_max = data_max
        temb = 4 * time_embed_dim
        self.temb_modules = nn.ModuleList([nn.Linear(time_embed_dim, temb), nn.Linear(temb, temb)])
        for lin in self.temb_modules:
            nn.init.zeros_(lin.bias)
        self.input_conv = nn.Conv2d(in_channels, ch, kernel_size=3, padding=1)

        def block(i: int, o: int) -> ResBlock:
            return ResBlock(i, o, temb, dropout, skip_rescale)

        skips, c = [ch], ch  # channels of the features the up path concatenates
        down: list[nn.Module] = []
        for scale, mult in enumerate(self.ch_mult):
            for _ in range(num_res_blocks):
                down.append(block(c, ch * mult))
                c = ch * mult
                if scale == attn_scale:
                    down.append(AttnBlock(c, skip_rescale))
                skips.append(c)
            if scale != len(self.ch_mult) - 1:
                down.append(Downsample(c))
                skips.append(c)
        self.downsampling_modules = nn.ModuleList(down)
        self.bottleneck_channels = c
        self.middle_modules = nn.ModuleList([block(c, c), AttnBlock(c, skip_rescale), block(c, c)])
        up: list[nn.Module] = []
        for scale in reversed(range(len(self.ch_mult))):
            for _ in range(num_res_blocks + 1):
                up.append(block(c + skips.pop(), ch * self.ch_mult[scale]))
                c = ch * self.ch_mult[scale]
                if scale == attn_scale:
                    up.append(AttnBlock(c, skip_rescale))
            if scale != 0:
                up.append(Upsample(c))
        self.upsampling_modules = nn.ModuleList(up)
        self.output_modules = nn.ModuleList([group_norm(c), nn.Conv2d(c, 2 * in_channels, 3, padding=1)])
        self.latent_path: ResBlockLatentPath | None = None

    def set_latent_path(self, path: ResBlockLatentPath | None) -> None:
        """Install (or remove) the per-ResBlock extra input; it is not registered as a submodule, so
        the U-Net's parameters and state dict stay those of the published network.
        """
        object.__setattr__(self, "latent_path", path)

    def resblocks(self) -> list[ResBlock]:
        """The ResBlocks in the order ``ResBlockLatentPath.block_offset`` numbers them."""
        mods = [*self.downsampling_modules, *self.middle_modules, *self.upsampling_modules]
        return [m for m in mods if isinstance(m, ResBlock)]

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        centred = 2.0 * (x.float() / self.data_max) - 1.0  # (B, C, H, W) in [-1, 1], as tau-LDR
        feats = tauldr_timestep_embedding(t * self.time_scale, self.time_embed_dim)  # (B, 128)
        temb = self.temb_modules[1](F.silu(self.temb_modules[0](feats)))  # (B, 512)
        path = self.latent_path
        offsets = _Offsets(path, path.embed(feats, None) if path is not None else None)
        h = self.input_conv(centred)
        h, hs = self._down(h, [h], temb, offsets)
        offsets.embedding = path.embed(feats, h) if path is not None else None
        mods = iter(self.middle_modules)
        h = next(mods)(h, temb, offsets.next())
        h = next(mods)(h)
        h = next(mods)(h, temb, offsets.next())
        h = self._up(h, hs, temb, offsets)
        h = self.output_modules[1](F.silu(self.output_modules[0](h)))  # (B, 2C, H, W)
        C = self.in_channels
        return torch.cat([torch.tanh(centred + h[:, :C]), h[:, C:]], dim=1)

    def _down(self, h: Tensor, hs: list[Tensor], temb: Tensor, offsets: _Offsets) -> tuple[Tensor, list]:
        mods = iter(self.downsampling_modules)
        for scale in range(len(self.ch_mult)):
            for _ in range(self.num_res_blocks):
                h = next(mods)(h, temb, offsets.next())
                if scale == self.attn_scale:
                    h = next(mods)(h)
                hs.append(h)
            if scale != len(self.ch_mult) - 1:
                h = next(mods)(h)
                hs.append(h)
        return h, hs

    def _up(self, h: Tensor, hs: list[Tensor], temb: Tensor, offsets: _Offsets) -> Tensor:
        mods = iter(self.upsampling_modules)
        for scale in reversed(range(len(self.ch_mult))):
            for _ in range(self.num_res_blocks + 1):
                h = next(mods)(torch.cat([h, hs.pop()], dim=1), temb, offsets.next())
                if scale == self.attn_scale:
                    h = next(mods)(h)
            if scale != 0:
                h = next(mods)(h)
        return h


class _Offsets:
    """Hands each ResBlock, in order, its extra input from a ``ResBlockLatentPath`` (or None)."""

    def __init__(self, path: ResBlockLatentPath | None, embedding: Tensor | None) -> None:
        self.path, self.embedding, self.index = path, embedding, 0

    def next(self) -> Tensor | None:
        index, self.index = self.index, self.index + 1
        return None if self.embedding is None else self.path.block_offset(index, self.embedding)
