"""A small bidirectional transformer denoiser (DiT-style input conditioning), vocabulary-agnostic."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixdistill.student import sinusoidal_embedding


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


class TransformerDenoiserNet(nn.Module):
    """Tokens of ``x_t`` + positions + (time [+ class]) embedding -> pre-norm encoder -> logits.

    Args:
        num_dims: Sequence length ``D`` (a flattened image has ``H * W`` tokens).
        num_states: Input vocabulary ``K`` (``S + 1`` with a mask token).
        vocab_size: Output vocabulary ``S``.
        dim: Model width.
        depth: Number of encoder layers.
        heads: Attention heads.
        mlp_ratio: Feed-forward width as a multiple of ``dim``.
        dropout: Dropout inside the encoder.
        num_classes: Class labels accepted as ``cond`` (0: unconditional). Label ``num_classes``
            is the "no class" label used for classifier-free guidance.
    """

    def __init__(
        self,
        num_dims: int,
        num_states: int,
        vocab_size: int,
        dim: int = 128,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.num_dims, self.vocab_size = num_dims, vocab_size
        self.tokens = nn.Embedding(num_states, dim)
        self.positions = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, num_dims, dim), std=0.02))
        self.time_embed = TimeEmbedding(dim)
        self.class_embed = nn.Embedding(num_classes + 1, dim) if num_classes else None
        layer = nn.TransformerEncoderLayer(
            dim, heads, mlp_ratio * dim, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        c = self.time_embed(t)  # (B, dim)
        if self.class_embed is not None and cond is not None:
            c = c + self.class_embed(cond)
        h = self.tokens(x_t) + self.positions + c.unsqueeze(1)  # (B, D, dim)
        return self.head(self.norm(self.encoder(h)))  # (B, D, S)
