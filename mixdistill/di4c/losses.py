"""The Di4C loss terms as pure, batched functions.

Shapes: ``B`` examples, a latent batch of ``n`` lambdas per example, ``D`` dimensions, ``S`` values.
Student log-probabilities ``logp`` are ``(B, n, D, S)`` (``log_softmax`` of the logits for each
lambda). Every function reduces over the latent batch with one gather and one logsumexp; none loops
in Python. Each returns one value per example ``(B,)`` (or ``(B, m)``) so that callers weight and
average as they need.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mixdistill.di4c.chunks import sequence_tiles, working_dtype


class _MixtureLogMarginal(torch.autograd.Function):
    """``logsumexp_j logp_j - log n`` with a backward pass that builds one ``(B, n, D, S)`` tensor.

    ``torch.logsumexp``'s own backward materialises ``logp - lse``, its ``exp`` and the product with
    the incoming gradient as three separate full-size tensors; here the responsibilities
    ``exp(logp_j - lse)`` are computed into one buffer and scaled in place. ``logp`` is saved by
    reference (the ``log_softmax`` that produced it saves the same storage), so nothing is copied.
    """

    @staticmethod
    def forward(ctx, logp: Tensor) -> Tensor:
        lse = torch.logsumexp(logp, dim=1)
        ctx.save_for_backward(logp, lse)
        return lse - math.log(logp.shape[1])

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        logp, lse = ctx.saved_tensors
        return torch.sub(logp, lse.unsqueeze(1)).exp_().mul_(grad.unsqueeze(1))


def mixture_log_marginal(logp: Tensor) -> Tensor:
    """``log pbar^d(v) = logsumexp_j log p_j^d(v) - log n``: ``(B, n, D, S)`` -> ``(B, D, S)``."""
    if torch.is_grad_enabled() and logp.requires_grad:
        return _MixtureLogMarginal.apply(logp)
    return torch.logsumexp(logp, dim=1) - math.log(logp.shape[1])


def tiled_log_marginal(logits: Tensor, tile_elements: int | None = None) -> Tensor:
    """``mixture_log_marginal(logits.log_softmax(-1))`` without gradient, one sequence tile at a time.

    The float32 (float64 for float64 logits) working copies hold at most ``tile_elements``
    elements (``chunks.sequence_tiles``), so bf16 logits ``(B, n, D, S)`` need no whole float32 copy.

    Returns:
        ``(B, D, S)`` in the working dtype.
    """
    B, n, D, S = logits.shape
    out = logits.new_empty(B, D, S, dtype=working_dtype(logits))
    with torch.no_grad():
        for sl in sequence_tiles(logits, tile_elements):
            logp = logits[:, :, sl].log_softmax(-1, dtype=out.dtype)  # (B, n, d, S), ours to overwrite
            # logsumexp over the latents in place: torch.logsumexp would add a second tile-size temporary.
            top = logp.amax(1)  # (B, d, S), finite: log_softmax of finite logits
            mass = logp.sub_(top.unsqueeze(1)).exp_().sum(1)
            out[:, sl] = mass.log_().add_(top).sub_(math.log(n))
    return out


def component_log_prob(logp: Tensor, y: Tensor) -> Tensor:
    """``sum_d log p_j^d(y_i^d)`` for every component j and target i: ``(B, n, m)``.

    Args:
        logp: ``(B, n, D, S)``.
        y: Targets ``(B, m, D)`` long.
    """
    n = logp.shape[1]
    idx = y.transpose(1, 2).unsqueeze(1).expand(-1, n, -1, -1)  # (B, n, D, m)
    return torch.gather(logp, 3, idx).sum(2)  # (B, n, m)


def mixture_log_prob(logp: Tensor, y: Tensor) -> Tensor:
    """``log p_hat(y_i) = logsumexp_j sum_d log p_j^d(y_i^d) - log n``: ``(B, m)``."""
    return torch.logsumexp(component_log_prob(logp, y), dim=1) - math.log(logp.shape[1])


def marginal_log_prob(log_marginal: Tensor, y: Tensor) -> Tensor:
    """``sum_d log pbar^d(y_i^d)`` for ``log_marginal`` ``(B, D, S)`` and ``y`` ``(B, m, D)``: ``(B, m)``."""
    return torch.gather(log_marginal, 2, y.transpose(1, 2)).sum(1)


def correlation_term(logp: Tensor, y: Tensor, log_marginal: Tensor | None = None) -> Tensor:
    """``corr(y) = -(log p_hat(y) - sum_d log pbar^d(y^d))``: ``(B, m)``.

    The per-dimension part is subtracted as a control variate; what remains is the part of the
    negative log-likelihood that only the correlations between dimensions can lower.

    Args:
        logp: Student log-probabilities ``(B, n, D, S)``.
        y: Targets ``(B, m, D)``.
        log_marginal: ``mixture_log_marginal(logp)`` if already computed.
    """
    if log_marginal is None:
        log_marginal = mixture_log_marginal(logp)
    return marginal_log_prob(log_marginal, y) - mixture_log_prob(logp, y)


def marginal_kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """``sum_d KL(p^d || q^d)`` for log-probabilities ``(B, D, S)``: ``(B,)``.

    Terms where ``p`` is 0 contribute 0 (log-probabilities must be finite, see ``NEG_INF``).
    """
    p = log_p.exp()
    return (p * (log_p - log_q)).sum((1, 2))


def distillation_loss(teacher_logp: Tensor, logp: Tensor) -> Tensor:
    """``(1/n) sum_j sum_d KL(p_T^d || p_j^d)``: every component must match the teacher. ``(B,)``.

    Written as ``sum p_T log p_T - (1/n) sum_{d,v} p_T^d(v) sum_j log p_j^d(v)`` so that no
    ``(B, n, D, S)`` temporary beyond ``logp`` itself is built, forward or backward (the gradient
    w.r.t. ``logp`` is a broadcast of ``-p_T / n``), and every sum is a float-accurate reduction.

    Args:
        teacher_logp: Teacher log-probabilities ``(B, D, S)`` (a constant target).
        logp: Student log-probabilities ``(B, n, D, S)``.
    """
    p = teacher_logp.exp()
    neg_entropy = (p * teacher_logp).sum((1, 2))
    cross = (p * logp.sum(1)).sum((1, 2)) / logp.shape[1]
    return neg_entropy - cross


def consistency_loss(
    logp: Tensor,
    targets: Tensor,
    target_log_marginal: Tensor,
    control_variate: bool = True,
    log_marginal: Tensor | None = None,
) -> Tensor:
    """Consistency loss against ``n`` two-step samples: ``(B,)``.

    With the control variate: ``(1/m) sum_i corr(y_i) + sum_d KL(pbar_target^d || pbar^d)``.
    Without it, the marginal KL is replaced by its single-sample estimate from the same targets,
    ``(1/m) sum_i sum_d [log pbar_target^d(y_i^d) - log pbar^d(y_i^d)]``, so the two agree in
    expectation and differ only in variance (the gradient is then that of the plain NLL).

    Args:
        logp: Student log-probabilities at ``(x_t, t)`` ``(B, n, D, S)``.
        targets: ``x_0`` samples of "teacher step then student" ``(B, m, D)``.
        target_log_marginal: Average of the student distributions the targets came from ``(B, D, S)``.
        control_variate: Use the exact marginal KL (lower variance) instead of its estimate.
        log_marginal: ``mixture_log_marginal(logp)`` if already computed.
    """
    if log_marginal is None:
        log_marginal = mixture_log_marginal(logp)
    corr = correlation_term(logp, targets, log_marginal).mean(1)
    if control_variate:
        return corr + marginal_kl(target_log_marginal, log_marginal)
    gap = marginal_log_prob(target_log_marginal, targets) - marginal_log_prob(log_marginal, targets)
    return corr + gap.mean(1)


def data_loss(
    logp: Tensor,
    x0: Tensor,
    teacher_logp: Tensor,
    corr_weight: Tensor,
    control_variate: bool = True,
    log_marginal: Tensor | None = None,
) -> Tensor:
    """Data loss ``alpha(t) corr(x0) + sum_d KL(p_T^d || pbar^d)``: ``(B,)``.

    Without the control variate the marginal KL is estimated from ``x0`` alone,
    ``sum_d [log p_T^d(x0^d) - log pbar^d(x0^d)]``; the two agree in expectation when ``x0`` is
    distributed as the teacher's marginals say.

    Args:
        logp: Student log-probabilities at ``(x_t, t)`` ``(B, n, D, S)``.
        x0: The clean data ``(B, D)``.
        teacher_logp: Teacher log-probabilities at ``(x_t, t)`` ``(B, D, S)``.
        corr_weight: ``alpha(t)`` per example ``(B,)``.
        control_variate: Use the exact marginal KL.
        log_marginal: ``mixture_log_marginal(logp)`` if already computed.
    """
    y = x0.unsqueeze(1)  # (B, 1, D)
    if log_marginal is None:
        log_marginal = mixture_log_marginal(logp)
    corr = correlation_term(logp, y, log_marginal)[:, 0]
    if control_variate:
        kl = marginal_kl(teacher_logp, log_marginal)
    else:
        kl = (marginal_log_prob(teacher_logp, y) - marginal_log_prob(log_marginal, y))[:, 0]
    return corr_weight * corr + kl
