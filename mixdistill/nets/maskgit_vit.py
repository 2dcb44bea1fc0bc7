"""MaskGIT's bidirectional transformer, key-compatible with valeoai/Maskgit-pytorch v1 checkpoints.

Architecture (the published ``MaskTransformer``, written here from its description): the image tokens
and one class token go through a shared embedding ``tok_emb`` plus learned positions ``pos_emb``,
then ``first_layer`` (LayerNorm, Dropout, Linear, GELU, LayerNorm, Dropout, Linear), a stack of
pre-norm blocks (multi-head self-attention, then a GELU MLP, each added to the residual stream),
``last_layer`` (LayerNorm, Dropout, Linear, GELU, LayerNorm), and logits tied to the embedding:
``x @ tok_emb^T + bias`` restricted to the image positions and to the codes plus the mask id.
Every LayerNorm outside the blocks uses eps 1e-12; those inside use PyTorch's default 1e-5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass(frozen=True)
class MaskGITSizes:
    """Sizes of a MaskGIT transformer; the defaults are the published ImageNet 256 "base" model.

    Attributes:
        codebook_size: VQ codes ``S`` (1024); id ``S`` is the mask.
        num_classes: Class labels (1000); ``num_classes`` is the "no class" label of guidance.
        grid: Side of the token grid (16 for 256 px and an f16 VQGAN).
        hidden: Model width (768).
        depth: Number of blocks (24).
        heads: Attention heads (16).
        mlp_dim: MLP width (3072).
        dropout: Dropout of the embedding layers, the attention weights and the MLP (0.1).
    """

    codebook_size: int = 1024
    num_classes: int = 1000
    grid: int = 16
    hidden: int = 768
    depth: int = 24
    heads: int = 16
    mlp_dim: int = 3072
    dropout: float = 0.1


class PreNorm(nn.Module):
    """``fn(LayerNorm(x))`` (keys ``norm.*`` and ``fn.*``)."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm, self.fn = nn.LayerNorm(dim), fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(self.norm(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter names and layout
    (``in_proj_weight`` ``[3H, H]`` as q, k, v; ``in_proj_bias``; ``out_proj``), computed with
    ``scaled_dot_product_attention``. Dropout acts on the attention weights, as in PyTorch's module.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"SelfAttention: hidden={dim} must be divisible by heads={heads}.")
        self.heads, self.dropout = heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        B, L, H = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (B, L, 3H)
        q, k, v = qkv.view(B, L, 3, self.heads, H // self.heads).permute(2, 0, 3, 1, 4)  # (B, h, L, H/h)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, h, L, H/h)
        return self.out_proj(out.transpose(1, 2).reshape(B, L, H))


class Attention(nn.Module):
    """Holds the attention under the name ``mha``, as the published checkpoints do."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.mha = SelfAttention(dim, heads, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.mha(x)


class FeedForward(nn.Module):
    """``Linear -> GELU -> Dropout -> Linear -> Dropout`` (keys ``net.0``, ``net.3``)."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Encoder(nn.Module):
    """``depth`` pre-norm blocks: ``x += attn(norm(x)); x += mlp(norm(x))`` (keys ``layers.N.{0,1}``)."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    PreNorm(dim, Attention(dim, heads, dropout)),
                    PreNorm(dim, FeedForward(dim, mlp_dim, dropout)),
                ]
            )
            for _ in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        for attn, ff in self.layers:
            x = x + attn(x)
            x = x + ff(x)
        return x


def _head(dim: int, dropout: float, last: bool) -> nn.Sequential:
    """``first_layer`` (``last=False``) or ``last_layer`` of the published model."""
    layers = [nn.LayerNorm(dim, eps=1e-12), nn.Dropout(dropout), nn.Linear(dim, dim), nn.GELU()]
    layers.append(nn.LayerNorm(dim, eps=1e-12))
    if not last:
        layers += [nn.Dropout(dropout), nn.Linear(dim, dim)]
    return nn.Sequential(*layers)


class MaskGITTransformer(nn.Module):
    """The MaskGIT v1 transformer: ``(tokens (B, D), labels (B,)) -> logits (B, D, S + 1)``.

    Embedding ids: codes ``0..S-1``, mask ``S``, class ``y`` at ``S + 1 + y`` (``y = num_classes`` is
    the guidance "no class" id, 2025 for the published model). The class token is appended after
    the ``D`` image tokens. Implements ``LatentTokenBackbone``: ``latent_token`` ``(B, hidden)``, when
    set, is appended after the class token without a position embedding and dropped at the output
    (the Di4C MaskGIT student).

    Args:
        sizes: The model's sizes (the published ImageNet 256 model by default).
    """

    def __init__(self, sizes: MaskGITSizes | None = None) -> None:
        super().__init__()
        sizes = sizes if sizes is not None else MaskGITSizes()
        self.sizes = sizes
        self.num_dims = sizes.grid * sizes.grid
        vocab = sizes.codebook_size + 1 + sizes.num_classes + 1
        self.tok_emb = nn.Embedding(vocab, sizes.hidden)  # (2026, 768)
        self.pos_emb = nn.Parameter(
            nn.init.trunc_normal_(torch.zeros(1, self.num_dims + 1, sizes.hidden), std=0.02)
        )
        self.first_layer = _head(sizes.hidden, sizes.dropout, last=False)
        self.transformer = Encoder(sizes.hidden, sizes.depth, sizes.heads, sizes.mlp_dim, sizes.dropout)
        self.last_layer = _head(sizes.hidden, sizes.dropout, last=True)
        self.bias = nn.Parameter(torch.zeros(self.num_dims + 1, vocab))  # (257, 2026)
        self.latent_token: Tensor | None = None
        self.latent_width = sizes.hidden

    def forward(self, tokens: Tensor, labels: Tensor) -> Tensor:
        """Logits ``(B, D, S + 1)`` over the codes and the mask id.

        Args:
            tokens: Image tokens ``(B, D)`` (or ``(B, grid, grid)``) in ``0..S`` (``S`` = mask).
            labels: Class labels ``(B,)`` in ``0..num_classes`` (``num_classes`` = no class).
        """
        B, D, S = tokens.shape[0], self.num_dims, self.sizes.codebook_size
        ids = torch.cat([tokens.reshape(B, D), (labels + S + 1).view(B, 1)], 1)  # (B, D + 1)
        x = self.tok_emb(ids) + self.pos_emb  # (B, D + 1, H)
        if self.latent_token is not None:
            x = torch.cat([x, self.latent_token.to(x.dtype).unsqueeze(1)], 1)  # (B, D + 2, H)
        x = self.last_layer(self.transformer(self.first_layer(x)))[:, :D]  # (B, D, H)
        # Only the code and mask columns are returned, so only those rows of the tied matrix are used.
        return x @ self.tok_emb.weight[: S + 1].T + self.bias[:D, : S + 1]  # (B, D, S + 1)
