"""A tiny GPT-style causal transformer: the evaluator LM that mixdistill trains for its text examples."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CausalTransformer(nn.Module):
    """Token + learned position embeddings -> pre-norm ``nn.TransformerEncoder`` with a causal mask -> logits.

    Args:
        vocab_size: Number of token ids.
        context_length: Longest sequence the position embedding covers.
        dim: Model width.
        depth: Number of layers.
        heads: Attention heads.
        mlp_ratio: Feed-forward width as a multiple of ``dim``.
        dropout: Dropout inside the layers (0 keeps evaluation and training modes identical).
    """

    def __init__(
        self,
        vocab_size: int,
        context_length: int = 256,
        dim: int = 256,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"CausalTransformer: dim={dim} must be divisible by heads={heads}.")
        self.vocab_size, self.context_length = vocab_size, context_length
        self.tokens = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.tokens.weight, std=0.02)  # GPT-2's scale, the same as the positions'
        self.positions = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, context_length, dim), std=0.02))
        layer = nn.TransformerEncoderLayer(
            dim, heads, mlp_ratio * dim, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)

    def forward(self, ids: Tensor) -> Tensor:
        """Next-token logits ``(B, L, V)`` of ids ``(B, L)``: position ``i`` sees ids ``0..i`` only."""
        length = ids.shape[1]
        if length > self.context_length:
            raise ValueError(
                f"CausalTransformer: a sequence of {length} tokens exceeds context_length="
                f"{self.context_length}; cut it into chunks or build the network with a longer context."
            )
        h = self.tokens(ids) + self.positions[:, :length]  # (B, L, dim)
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=ids.device, dtype=h.dtype)
        h = self.encoder(h, mask=mask, is_causal=True)
        return self.head(self.norm(h))  # (B, L, V)


def next_token_loss(net: nn.Module, ids: Tensor) -> Tensor:
    """Mean cross-entropy of ``ids[:, 1:]`` under ``net(ids[:, :-1])`` for ids ``(B, L)``."""
    logits = net(ids[:, :-1])  # (B, L-1, V)
    return F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())


def train_causal_lm(
    net: CausalTransformer,
    sequences: Tensor,
    steps: int = 1000,
    batch_size: int = 32,
    lr: float = 3e-4,
    seed: int = 0,
) -> list[float]:
    """Train ``net`` by next-token cross-entropy on ``sequences`` ``(N, L)``; returns the losses.

    Sequences longer than ``net.context_length`` are cut to it. Give it text held out from the data
    the diffusion model learns, so the evaluator does not reward memorisation.

    Args:
        net: The network, trained in place.
        sequences: Token ids ``(N, L)`` of the evaluator's tokenizer, ``L >= 2``.
        steps: Optimiser steps.
        batch_size: Sequences per step.
        lr: AdamW learning rate (cosine-decayed to 0).
        seed: Seed of the batch sampling.
    """
    if sequences.dim() != 2 or sequences.shape[1] < 2:
        raise ValueError(f"train_causal_lm: sequences must be (N, L >= 2), got {tuple(sequences.shape)}.")
    sequences = sequences[:, : net.context_length]
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    device, losses = next(net.parameters()).device, []
    net.train()
    for _ in range(steps):
        batch = sequences[torch.randint(sequences.shape[0], (batch_size,), generator=gen)].to(device)
        loss = next_token_loss(net, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    net.eval()
    return losses
