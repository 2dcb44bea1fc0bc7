"""A small bidirectional transformer denoiser (rotary positions, time added to the input)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixdistill.nets.embeddings import TimeEmbedding
from mixdistill.nets.rotary import RotaryBlock, rotary_tables


class TransformerDenoiserNet(nn.Module):
    """Tokens of ``x_t`` + (time [+ class]) embedding -> pre-norm rotary blocks -> logits.

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
        # N(0, 1) token embeddings: at GPT-2's 0.02 the time embedding swamped them, every position
        # looked alike to attention and a masked-text model sat at the unigram loss far longer.
        self.tokens = nn.Embedding(num_states, dim)
        self.time_embed = TimeEmbedding(dim)
        self.class_embed = nn.Embedding(num_classes + 1, dim) if num_classes else None
        self.blocks = nn.ModuleList(RotaryBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        cos, sin = rotary_tables(num_dims, dim // heads)
        self.register_buffer("rope_cos", cos, persistent=False)  # (D, dim / heads)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)
        # ExtraTokenInjection sets this (B, dim) token; it is appended without rotary position.
        self.latent_token: Tensor | None = None
        self.latent_width = dim

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        c = self.time_embed(t)  # (B, dim)
        if self.class_embed is not None and cond is not None:
            c = c + self.class_embed(cond)
        h = self.tokens(x_t) + c.unsqueeze(1)  # (B, D, dim)
        cos, sin = self.rope_cos, self.rope_sin
        if self.latent_token is not None:
            h = torch.cat([h, self.latent_token.to(h.dtype).unsqueeze(1)], 1)  # (B, D + 1, dim)
            cos = torch.cat([cos, cos.new_ones(1, cos.shape[1])])  # identity rotation: no position
            sin = torch.cat([sin, sin.new_zeros(1, sin.shape[1])])
        for block in self.blocks:
            h = block(h, cos, sin)
        return self.head(self.norm(h[:, : self.num_dims]))  # (B, D, S)
