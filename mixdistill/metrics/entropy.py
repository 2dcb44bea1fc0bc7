"""Unigram token entropy of each generated sample: the diversity measure reported beside perplexity."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


def unigram_entropy(x: Tensor) -> Tensor:
    """Entropy in nats of each sample's token histogram, ``(B, *shape)`` ids -> ``(B,)`` float64.

    Counts distinct values by sorting, so the cost does not depend on the vocabulary size.
    """
    s = x.flatten(1).sort(dim=1).values  # (B, L)
    length = s.shape[1]
    new_value = torch.ones_like(s, dtype=torch.long)
    new_value[:, 1:] = (s[:, 1:] != s[:, :-1]).long()
    run = new_value.cumsum(1) - 1  # (B, L): index of each token's distinct value, in [0, L)
    counts = torch.zeros(s.shape, dtype=torch.float64, device=s.device)
    counts.scatter_add_(1, run, torch.ones_like(counts))  # (B, L): histogram, zero-padded
    p = counts / length
    return -torch.special.xlogy(p, p).sum(1)  # 0 log 0 = 0


class UnigramEntropy(Metric):
    """Mean over generated samples of the entropy (nats) of each sample's own token histogram.

    As MDLM, SDTT and Di4C report it beside generative perplexity: low entropy flags repetitive
    samples that a perplexity alone would reward. Reference (``real=True``) batches are ignored.

    Args:
        name: Name shown in tables.
    """

    higher_is_better = True
    full_state_update = False

    def __init__(self, name: str = "entropy") -> None:
        super().__init__()
        self.name = name
        self.add_state("entropy_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, x: Tensor, real: bool = False) -> None:
        """Add a batch of samples ``(B, *shape)`` of token ids; ``real`` batches are ignored."""
        if real:
            return
        if x.dim() < 2 or x.shape[0] == 0:
            raise ValueError(f"{self.name}: expected samples (B >= 1, *shape), got shape {tuple(x.shape)}.")
        self.entropy_sum += unigram_entropy(x).sum()
        self.count += x.shape[0]

    def compute(self) -> Tensor:
        if self.count == 0:
            raise RuntimeError(f"{self.name}: no generated samples were given to update(x, real=False).")
        return (self.entropy_sum / self.count).float()
