"""Sampling from categorical distributions in float64.

Float32 Gumbel or multinomial sampling over large vocabularies truncates the tail and lowers the
diversity of generated text (a known cause of irreproducible generative perplexities), so every
categorical draw in mixdistill goes through one inverse-CDF sampler that works in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Finite stand-in for log(0): exp() of it is exactly 0 in every float dtype, yet, unlike -inf,
#: differences and products with zero stay finite, so KL terms and their gradients never turn NaN.
NEG_INF = -1.0e6


def sample_from_probs(
    probs: Tensor, num_samples: int | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Draw categorical samples along the last axis by inverse CDF in float64.

    Args:
        probs: Non-negative weights ``(..., K)``; need not be normalised.
        num_samples: ``None`` for one draw per distribution, else that many independent draws.
        generator: Optional random generator for reproducibility.

    Returns:
        Long tensor ``(...)`` when ``num_samples`` is ``None``, else ``(..., num_samples)``.
    """
    cdf = probs.double().cumsum(-1)  # (..., K)
    m = 1 if num_samples is None else num_samples
    u = torch.rand(*cdf.shape[:-1], m, dtype=torch.float64, device=probs.device, generator=generator)
    u = u * cdf[..., -1:]  # normalise implicitly: scale the uniform to the total mass
    idx = torch.searchsorted(cdf.contiguous(), u, right=True).clamp_(max=probs.shape[-1] - 1)
    return idx.squeeze(-1) if num_samples is None else idx


def sample_from_logits(
    logits: Tensor, num_samples: int | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Draw categorical samples from unnormalised log-probabilities ``(..., K)`` (see sample_from_probs)."""
    probs = (logits.double() - logits.double().amax(-1, keepdim=True)).exp()
    return sample_from_probs(probs, num_samples, generator)
