"""The convolutional encoder and decoder of taming-transformers' VQGAN, key-compatible with its checkpoints.

Written from the published architecture (CompVis/taming-transformers ``diffusionmodules/model.py``, as
vendored by MaskGIT-pytorch): GroupNorm(32, eps 1e-6) + swish pre-activation residual blocks with a
1x1 ``nin_shortcut`` when the width changes, single-head spatial self-attention blocks at the
``attn_resolutions``, strided-conv downsampling with a (0, 1, 0, 1) zero pad, nearest-neighbour x2
upsampling followed by a 3x3 conv. No time embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torch.nn import functional as F


@dataclass(frozen=True)
class VQGANSizes:
    """Sizes of a VQGAN; the defaults are MaskGIT's ImageNet f16 model (``model.yaml``).

    Attributes:
        ch: Base width (128).
        ch_mult: Width multipliers per resolution ((1, 1, 2, 2, 4): four halvings, f16).
        num_res_blocks: Residual blocks per resolution (2; the decoder has one more).
        attn_resolutions: Feature-map sides with attention blocks ((16,)).
        resolution: Image side the ``attn_resolutions`` refer to (256).
        in_channels: Image channels (3).
        out_ch: Decoded channels (3).
        z_channels: Encoder output channels (256).
        double_z: Whether the encoder outputs ``2 z_channels`` (False for VQGAN).
        embed_dim: Codebook vector size (256).
        n_embed: Codebook entries (1024).
        dropout: Dropout inside residual blocks (0).
    """

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    resolution: int = 256
    in_channels: int = 3
    out_ch: int = 3
    z_channels: int = 256
    double_z: bool = False
    embed_dim: int = 256
    n_embed: int = 1024
    dropout: float = 0.0

    @property
    def factor(self) -> int:
        """Downsampling factor from images to token grids (16)."""
        return 2 ** (len(self.ch_mult) - 1)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups and eps 1e-6 (taming's ``Normalize``)."""
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


def conv3(c_in: int, c_out: int, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    """A 3x3 convolution."""
    return nn.Conv2d(c_in, c_out, 3, stride, padding)


class ResnetBlock(nn.Module):
    """``x + conv2(drop(swish(norm2(conv1(swish(norm1(x)))))))`` with a 1x1 shortcut across widths."""

    def __init__(self, c_in: int, c_out: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), conv3(c_in, c_out)
        self.norm2, self.dropout, self.conv2 = group_norm(c_out), nn.Dropout(dropout), conv3(c_out, c_out)
        self.nin_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the ``H * W`` positions, 1x1 convs for q, k, v and the output."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        h = self.norm(x)
        q, k, v = (
            m(h).view(B, 1, C, H * W).transpose(-1, -2) for m in (self.q, self.k, self.v)
        )  # (B,1,HW,C)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, 1, HW, C), scale C^-1/2 as published
        return x + self.proj_out(out.transpose(-1, -2).reshape(B, C, H, W))


class Downsample(nn.Module):
    """Zero-pad right and bottom by one, then a stride-2 3x3 conv without padding."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = conv3(channels, channels, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = conv3(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def level(
    blocks: list[nn.Module], attns: list[nn.Module], resample: nn.Module | None, name: str
) -> nn.Module:
    """One resolution: ``block.N``, ``attn.N`` and ``downsample``/``upsample`` (taming's key names)."""
    out = nn.Module()
    out.block, out.attn = nn.ModuleList(blocks), nn.ModuleList(attns)
    if resample is not None:
        out.add_module(name, resample)
    return out


def middle(channels: int, dropout: float) -> nn.Module:
    """``block_1``, ``attn_1``, ``block_2`` at the lowest resolution."""
    mid = nn.Module()
    mid.block_1, mid.attn_1 = ResnetBlock(channels, channels, dropout), AttnBlock(channels)
    mid.block_2 = ResnetBlock(channels, channels, dropout)
    return mid


def run_level(lvl: nn.Module, h: Tensor) -> Tensor:
    """Residual blocks of one resolution, each followed by its attention block when it has one."""
    for i, block in enumerate(lvl.block):
        h = block(h)
        if len(lvl.attn) > 0:
            h = lvl.attn[i](h)
    return h


def run_middle(mid: nn.Module, h: Tensor) -> Tensor:
    """The middle of an encoder or decoder: block, attention, block."""
    return mid.block_2(mid.attn_1(mid.block_1(h)))


class Encoder(nn.Module):
    """Images ``(B, in_channels, R, R)`` -> features ``(B, z_channels, R / f, R / f)``."""

    def __init__(self, sizes: VQGANSizes) -> None:
        super().__init__()
        ch, mult, res = sizes.ch, (1, *sizes.ch_mult), sizes.resolution
        self.conv_in = conv3(sizes.in_channels, ch)
        self.down = nn.ModuleList()
        for i in range(len(sizes.ch_mult)):
            c_in, c_out = ch * mult[i], ch * mult[i + 1]
            blocks = [
                ResnetBlock(c_in if j == 0 else c_out, c_out, sizes.dropout)
                for j in range(sizes.num_res_blocks)
            ]
            attns = [AttnBlock(c_out) for _ in blocks] if res in sizes.attn_resolutions else []
            last = i == len(sizes.ch_mult) - 1
            self.down.append(level(blocks, attns, None if last else Downsample(c_out), "downsample"))
            res = res if last else res // 2
        c = ch * sizes.ch_mult[-1]
        self.mid, self.norm_out = middle(c, sizes.dropout), group_norm(c)
        self.conv_out = conv3(c, 2 * sizes.z_channels if sizes.double_z else sizes.z_channels)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for lvl in self.down:
            h = run_level(lvl, h)
            if hasattr(lvl, "downsample"):
                h = lvl.downsample(h)
        return self.conv_out(F.silu(self.norm_out(run_middle(self.mid, h))))


class Decoder(nn.Module):
    """Features ``(B, z_channels, R / f, R / f)`` -> images ``(B, out_ch, R, R)``; ``up`` is indexed
    from the highest resolution (0) to the lowest, as in taming's checkpoints.
    """

    def __init__(self, sizes: VQGANSizes) -> None:
        super().__init__()
        ch, n = sizes.ch, len(sizes.ch_mult)
        c, res = ch * sizes.ch_mult[-1], sizes.resolution // sizes.factor
        self.conv_in = conv3(sizes.z_channels, c)
        self.mid = middle(c, sizes.dropout)
        levels: list[nn.Module] = []
        for i in reversed(range(n)):
            c_out = ch * sizes.ch_mult[i]
            blocks = [
                ResnetBlock(c if j == 0 else c_out, c_out, sizes.dropout)
                for j in range(sizes.num_res_blocks + 1)
            ]
            attns = [AttnBlock(c_out) for _ in blocks] if res in sizes.attn_resolutions else []
            levels.insert(0, level(blocks, attns, Upsample(c_out) if i != 0 else None, "upsample"))
            c, res = c_out, res * 2 if i != 0 else res
        self.up = nn.ModuleList(levels)
        self.norm_out, self.conv_out = group_norm(c), conv3(c, sizes.out_ch)

    def forward(self, z: Tensor) -> Tensor:
        h = run_middle(self.mid, self.conv_in(z))
        for lvl in reversed(self.up):
            h = run_level(lvl, h)
            if hasattr(lvl, "upsample"):
                h = lvl.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
