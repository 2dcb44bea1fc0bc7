"""Sampling from categorical distributions in float64.

Float32 Gumbel or multinomial sampling over large vocabularies truncates the tail and lowers the
diversity of generated text (a known cause of irreproducible generative perplexities), so every
categorical draw in mixdistill goes through one inverse-CDF sampler that works in float64. The
float64 copies are made a chunk of rows at a time (``CHUNK_ELEMENTS``), so their memory stays bounded
whatever the batch: at MDLM's shape, 16 latents x 1024 tokens x 50258 states, two whole float64
copies would take 13 GB per example.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

#: Finite stand-in for log(0): exp() of it is exactly 0 in every float dtype, yet, unlike -inf,
#: differences and products with zero stay finite, so KL terms and their gradients never turn NaN.
NEG_INF = -1.0e6

#: Elements of the float64 working copies per chunk (2^26: 512 MB each).
CHUNK_ELEMENTS = 2**26


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
    return _chunked(lambda p: p.to(torch.float64, copy=True), probs, num_samples, generator)


def sample_from_logits(
    logits: Tensor, num_samples: int | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Draw categorical samples from unnormalised log-probabilities ``(..., K)`` (see sample_from_probs)."""

    def weights(chunk: Tensor) -> Tensor:
        x = chunk.to(torch.float64, copy=True)
        return x.sub_(x.amax(-1, keepdim=True)).exp_()

    return _chunked(weights, logits, num_samples, generator)


def _chunked(
    weights: Callable[[Tensor], Tensor],
    values: Tensor,
    num_samples: int | None,
    generator: torch.Generator | None,
) -> Tensor:
    """Inverse-CDF draws from ``weights(rows)`` (float64 ``(r, K)``), a bounded chunk of rows at a time."""
    k = values.shape[-1]
    m = 1 if num_samples is None else num_samples
    rows = values.reshape(-1, k)  # (R, K)
    out = torch.empty(rows.shape[0], m, dtype=torch.long, device=values.device)
    step = max(1, CHUNK_ELEMENTS // k)
    for start in range(0, rows.shape[0], step):
        cdf = weights(rows[start : start + step]).cumsum_(-1)  # (r, K) float64
        u = torch.rand(cdf.shape[0], m, dtype=torch.float64, device=values.device, generator=generator)
        u.mul_(cdf[:, -1:])  # normalise implicitly: scale the uniform to the total mass
        out[start : start + step] = torch.searchsorted(cdf, u, right=True).clamp_(max=k - 1)
    out = out.view(*values.shape[:-1], m)
    return out.squeeze(-1) if num_samples is None else out
