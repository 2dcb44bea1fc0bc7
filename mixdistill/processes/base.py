"""The contract of a forward (noising) process, with generic matrix-based implementations.

A process corrupts each of D dimensions independently. Data values are ``0..S-1``
(``vocab_size``); noisy states are ``0..K-1`` (``num_states``; K = S + 1 for absorbing processes,
whose extra state is the mask). The generic methods here work through the ``S x K`` marginal and
``K x K`` transition matrices, which is exact for any process; subclasses override them with closed
forms where large vocabularies make the matrices impractical.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from mixdistill.sampling.categorical import NEG_INF, sample_from_probs


class ForwardProcess(nn.Module, ABC):
    """A factorised forward process ``q_{t|0}(x_t | x_0) = prod_d q(x_t^d | x_0^d)``.

    Tensors: ``x0`` and ``x_t`` are long ``(B, D)``; times ``t`` and ``s`` are float ``(B,)``.
    """

    vocab_size: int
    num_states: int

    # ---- matrices (exact; used by the generic methods and by enumeration) -------------------
    @abstractmethod
    def marginal_matrix(self, t: Tensor) -> Tensor:
        """``q_{t|0}(x_t = k | x_0 = v)`` as ``(*t.shape, S, K)``; rows sum to 1."""

    @abstractmethod
    def transition_matrix(self, s: Tensor, t: Tensor) -> Tensor:
        """``q_{t|s}(x_t = j | x_s = i)`` for ``s <= t`` as ``(*t.shape, K, K)``; rows sum to 1."""

    @abstractmethod
    def prior_probs(self) -> Tensor:
        """Distribution of one dimension at ``t = 1`` as ``(K,)``, from which sampling starts."""

    # ---- sampling ----------------------------------------------------------------------------
    def corrupt(self, x0: Tensor, t: Tensor) -> Tensor:
        """Draw ``x_t ~ q_{t|0}(. | x0)``: ``(B, D)`` long."""
        rows = self.marginal_matrix(t)  # (B, S, K)
        probs = torch.gather(rows, 1, x0.unsqueeze(-1).expand(-1, -1, rows.shape[-1]))  # (B, D, K)
        return sample_from_probs(probs)

    def prior(self, shape: tuple[int, ...], device: torch.device | str | None = None) -> Tensor:
        """Draw ``x_1`` of the given shape from the prior."""
        probs = self.prior_probs().to(device)
        return sample_from_probs(probs.expand(*shape, -1))

    def posterior_probs(self, x_t: Tensor, x0_probs: Tensor, t: Tensor, s: Tensor) -> Tensor:
        """Product-step transition ``sum_v p^d(v) q(x_s^d | x_t^d, x_0^d = v)`` as ``(B, D, K)``.

        Values ``v`` that cannot have produced ``x_t^d`` get no weight (the posterior given them is
        undefined), so ``x0_probs`` is effectively renormalised over the values consistent with
        ``x_t``; for absorbing processes this carries unmasked tokens over unchanged.

        Args:
            x_t: Current state ``(B, D)``.
            x0_probs: Per-dimension distribution of ``x_0`` ``(B, D, S)``; a one-hot ``x_0`` gives
                the posterior of a joint sample.
            t: Current time ``(B,)``.
            s: Target time ``(B,)``, ``s <= t``.
        """
        q_t0 = self.marginal_matrix(t).to(x0_probs.dtype)  # (B, S, K)
        q_s0 = self.marginal_matrix(s).to(x0_probs.dtype)  # (B, S, K)
        q_ts = self.transition_matrix(s, t).to(x0_probs.dtype)  # (B, K, K)
        lik = torch.gather(q_t0.transpose(1, 2), 1, _expand_index(x_t, q_t0.shape[1]))  # (B, D, S)
        # Rows where no value with mass can have produced x_t (round-off zeros of a matrix
        # exponential, or a network putting all mass on impossible values) fall back to treating
        # every value as possible, instead of returning an all-zero row.
        possible = lik > 0
        stuck = ~(possible & (x0_probs > 0)).any(-1, keepdim=True)
        w = torch.where(possible | stuck, x0_probs / lik.clamp_min(1e-30), torch.zeros_like(lik))
        back = torch.gather(q_ts.transpose(1, 2), 1, _expand_index(x_t, q_ts.shape[1]))  # (B, D, K)
        out = back * torch.bmm(w, q_s0)  # (B, D, K)
        return out / out.sum(-1, keepdim=True).clamp_min(1e-300)

    def posterior_sample(self, x_t: Tensor, x0: Tensor, t: Tensor, s: Tensor) -> Tensor:
        """Draw ``x_s ~ q(. | x_t, x_0)`` for a joint sample ``x0`` ``(B, D)``."""
        onehot = nn.functional.one_hot(x0, self.vocab_size).to(torch.float64)
        return sample_from_probs(self.posterior_probs(x_t, onehot, t, s))

    def constrain_logits(self, logits: Tensor, x_t: Tensor) -> Tensor:
        """Restrict denoiser logits ``(B, D, S)`` to values consistent with ``x_t``.

        The default leaves them unchanged; absorbing processes pin unmasked tokens.
        """
        return logits

    def random_positions(self, x_t: Tensor) -> Tensor | None:
        """Bool ``(..., D)``: the positions whose denoised value is random given ``x_t``; at the
        others ``constrain_logits`` puts all mass on ``x_t``'s token, so a sampler may copy it
        instead of drawing. ``None`` (the default): every position is random.
        """
        return None

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, num_states={self.num_states}"


def _expand_index(x: Tensor, size: int) -> Tensor:
    """Index ``(B, D)`` -> ``(B, D, size)`` for gathering rows ``x`` of a ``(B, K, size)`` tensor."""
    return x.unsqueeze(-1).expand(-1, -1, size)


class _GatherKeepingIndex(torch.autograd.Function):
    """``x.gather(-1, idx)`` whose backward keeps only ``idx`` and the shape: ``torch.gather`` saves
    its whole input, which would keep the full logits alive until backward (1.6 GB per example at
    MDLM's size) after ``pin_logits`` has replaced them.
    """

    @staticmethod
    def forward(ctx, x: Tensor, idx: Tensor) -> Tensor:
        ctx.save_for_backward(idx)
        ctx.shape = x.shape
        return x.gather(-1, idx)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (idx,) = ctx.saved_tensors
        return grad.new_zeros(ctx.shape).scatter_(-1, idx, grad), None


def pin_logits(logits: Tensor, keep: Tensor, x_t: Tensor) -> Tensor:
    """Logits ``(B, D, S)`` where positions with ``keep`` ``(B, D)`` False become a point mass at ``x_t``.

    Builds a single new tensor of the logits' size (a masked fill, then an in-place scatter of
    one value per position), which matters for the large student outputs; autograd keeps no copy
    of the input logits.
    """
    idx = x_t.clamp(max=logits.shape[-1] - 1).unsqueeze(-1)  # (B, D, 1)
    keep = keep.unsqueeze(-1)  # (B, D, 1)
    zero = torch.zeros((), dtype=logits.dtype, device=logits.device)
    kept = torch.where(keep, _GatherKeepingIndex.apply(logits, idx), zero)
    return logits.masked_fill(~keep, NEG_INF).scatter_(-1, idx, kept)
