"""A pre-norm bidirectional transformer block with rotary position embeddings (as MDLM/SDTT's DiT uses)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rotary_tables(length: int, head_dim: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """``cos`` and ``sin`` ``(length, head_dim)`` of RoPE's angles, frequencies repeated for both halves."""
    if head_dim % 2:
        raise ValueError(f"rotary embeddings need an even head dimension, got {head_dim}.")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (Dh/2,)
    angles = torch.arange(length, dtype=torch.float64)[:, None] * inv_freq[None, :]  # (L, Dh/2)
    angles = torch.cat([angles, angles], dim=1)  # (L, Dh)
    return angles.cos().float(), angles.sin().float()


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate query/key features ``(B, H, L, Dh)`` by their positions' angles (half-split pairs)."""
    half = x.shape[-1] // 2
    turned = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + turned * sin.to(x.dtype)


class RotaryBlock(nn.Module):
    """``x + attn(norm(x))`` then ``x + mlp(norm(x))``; attention scores depend on relative positions.

    Relative positions matter for masked denoisers: a masked token carries no information itself,
    so its prediction must come from its neighbours. With absolute learned positions a small net
    sat at the unigram loss for hundreds of steps before finding them; with RoPE it does not.

    Args:
        dim: Model width.
        heads: Attention heads (``dim / heads`` must be even).
        mlp_ratio: Feed-forward width as a multiple of ``dim``.
        dropout: Dropout on the attention weights and the two residual branches.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"RotaryBlock: dim={dim} / heads={heads} must be an even integer.")
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        b, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)  # (B, H, L, Dh) each
        p = self.dropout if self.training else 0.0
        attn = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, H, L, Dh)
        x = x + self.drop(self.proj(attn.transpose(1, 2).reshape(b, length, dim)))
        return x + self.drop(self.mlp(self.norm2(x)))
