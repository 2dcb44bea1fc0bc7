"""Sampling from categorical distributions in float64.

Float32 Gumbel or multinomial sampling over large vocabularies truncates the tail and lowers the
diversity of generated text (a known cause of irreproducible generative perplexities), so every
categorical draw in mixdistill goes through one inverse-CDF sampler that works in float64. The
float64 copies are made a chunk of rows at a time (``CHUNK_ELEMENTS``), so their memory stays bounded
whatever the batch: at MDLM's shape, 16 latents x 1024 tokens x 50258 states, two whole float64
copies would take 13 GB per example. Where only some rows are random (the masked positions of a
masking process), ``where`` draws those alone, with the random stream of a draw over all rows.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

#: Finite stand-in for log(0): exp() of it is exactly 0 in every float dtype, yet, unlike -inf,
#: differences and products with zero stay finite, so KL terms and their gradients never turn NaN.
NEG_INF = -1.0e6

#: Elements of the float64 working copies per chunk (2^26: 512 MB each): large, so that each
#: accelerator kernel has work enough.
CHUNK_ELEMENTS = 2**26
#: The CPU's limit (2^20: 8 MB): a chunk's five passes then run in cache, 2.2-3.5x faster than on
#: chunks of 2^26 (bench/sampler_chunks.py, 2 cores).
CPU_CHUNK_ELEMENTS = 2**20


def sample_from_probs(
    probs: Tensor,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    where: Tensor | None = None,
    otherwise: Tensor | None = None,
) -> Tensor:
    """Draw categorical samples along the last axis by inverse CDF in float64.

    Args:
        probs: Non-negative weights ``(..., K)``; need not be normalised.
        num_samples: ``None`` for one draw per distribution, else that many independent draws.
        generator: Optional random generator for reproducibility.
        where: Optional bool ``(...)``: draw only these rows (one draw each); the others take
            ``otherwise``. The uniforms are drawn for every row, so the random stream and the drawn
            rows are those of a draw over all rows.
        otherwise: Long ``(...)``, the values of the rows not in ``where``.

    Returns:
        Long tensor ``(...)`` when ``num_samples`` is ``None``, else ``(..., num_samples)``.
    """
    return _draw(probs, _copy_weights, num_samples, generator, where, otherwise)


def sample_from_logits(
    logits: Tensor,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    where: Tensor | None = None,
    otherwise: Tensor | None = None,
) -> Tensor:
    """Draw categorical samples from unnormalised log-probabilities ``(..., K)`` (see sample_from_probs)."""
    return _draw(logits, _exp_weights, num_samples, generator, where, otherwise)


def _copy_weights(chunk: Tensor) -> Tensor:
    return chunk.to(torch.float64, copy=True)


def _exp_weights(chunk: Tensor) -> Tensor:
    x = chunk.to(torch.float64, copy=True)
    return x.sub_(x.amax(-1, keepdim=True)).exp_()


def _draw(
    values: Tensor,
    weights: Callable[[Tensor], Tensor],
    num_samples: int | None,
    generator: torch.Generator | None,
    where: Tensor | None,
    otherwise: Tensor | None,
) -> Tensor:
    """Inverse-CDF draws from ``weights`` of the rows of ``values``, a bounded chunk of rows at a time."""
    k = values.shape[-1]
    m = 1 if num_samples is None else num_samples
    rows = values.reshape(-1, k)  # (R, K)
    # One stream of uniforms for all rows, whatever the chunks or the selection.
    u = torch.rand(rows.shape[0], m, dtype=torch.float64, device=values.device, generator=generator)
    picked = _picked_rows(values, num_samples, where, otherwise)
    if picked is not None:
        u = u[picked]
    out = torch.empty(u.shape, dtype=torch.long, device=values.device)
    limit = min(CHUNK_ELEMENTS, CPU_CHUNK_ELEMENTS) if values.device.type == "cpu" else CHUNK_ELEMENTS
    step = max(1, limit // max(k, 1))
    for start in range(0, u.shape[0], step):
        sl = slice(start, start + step)
        # The selected rows' copy is not kept past weights(): only the float64 one is live below.
        cdf = weights(rows[sl] if picked is None else rows.index_select(0, picked[sl])).cumsum_(-1)  # (r, K)
        x = torch.minimum(u[sl] * cdf[:, -1:], cdf[:, -1:] * (1 - 2**-50))  # never past the last weight
        out[sl] = torch.searchsorted(cdf, x, right=True).clamp_(max=k - 1)
    if picked is not None:
        full = otherwise.reshape(-1).clone()
        full[picked] = out.squeeze(1)
        return full.view(values.shape[:-1])
    out = out.view(*values.shape[:-1], m)
    return out.squeeze(-1) if num_samples is None else out


def _picked_rows(values: Tensor, num_samples: int | None, where: Tensor | None, otherwise: Tensor | None):
    """Indices of the rows ``where`` selects ``(R_sel,)``, or None to draw every row."""
    if where is None and otherwise is None:
        return None
    if where is None or otherwise is None or num_samples is not None:
        raise ValueError(
            "sample_from_logits/probs: where and otherwise go together and only with num_samples=None "
            f"(got where={where is not None}, otherwise={otherwise is not None}, num_samples={num_samples})."
        )
    if where.shape != values.shape[:-1] or otherwise.shape != values.shape[:-1]:
        raise ValueError(
            f"sample_from_logits/probs: where {tuple(where.shape)} and otherwise {tuple(otherwise.shape)} "
            f"must have the shape of the rows, {tuple(values.shape[:-1])}."
        )
    return where.reshape(-1).nonzero().squeeze(1)
