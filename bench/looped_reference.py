"""A port of the Di4C research code's looped loss formulation, for benchmarking only.

This is our own code, written from the prose description of the authors' training step
(METHOD.md section 3 and the research notes, section 0): it reproduces the *structure* of their
loss computation so that ``bench/loss_bench.py`` can compare time and peak memory against
``mixdistill.di4c.losses`` on identical inputs. It is deliberately not efficient:

* the teacher's ``softmax`` and ``log_softmax`` are both materialised, and both are repeated
  ``M`` times (``repeat_interleave``) for the per-lambda distillation KL;
* the student distributions at ``u`` are materialised as ``softmax`` *and* ``log_softmax``
  ``(B*M, D, S)``; the target marginal is the mean of the former, its log a logmeanexp of the latter;
* the mixture marginal at ``t`` is a logmeanexp over the latent rows;
* the correlation log-ratio of every consistency target is computed in a Python loop over the
  latent batch, each iteration indexing the full ``(B, M, D, S)`` log-probabilities at one target
  ``(B, D)`` to get ``(B, D, M)`` (so the backward pass scatters into ``M`` full-size zero tensors);
* the distillation term reuses the student log-probabilities at ``x_t`` against the teacher at
  ``x_t`` (as the MaskGIT and SDTT forks do), summing per-lambda KLs and dividing by ``M``.

Rows follow the research layout: the student batch is ``x_t`` repeated ``M`` times with
``repeat_interleave``, so row ``b * M + m`` is lambda ``m`` of example ``b``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _log_ratio(logp_lam: Tensor, y: Tensor, num_latent: int) -> Tensor:
    """``log p_hat(y) - sum_d log pbar^d(y^d)`` for one target per example ``y`` ``(B, D)``: ``(B,)``.

    ``logp_lam`` is the student's ``(B, M, D, S)`` view. Advanced indexing with the example index,
    a full slice over the latents and the (dimension, value) pairs of ``y`` gives ``(B*D, M)``.
    """
    b, m, d, _ = logp_lam.shape
    rows = torch.arange(b, device=y.device).repeat_interleave(d)
    dims = torch.arange(d, device=y.device).repeat(b)
    picked = logp_lam[rows, :, dims, y.reshape(-1)].view(b, d, m)  # (B, D, M)
    joint = picked.sum(1)  # (B, M): sum_d log p_m^d(y^d)
    log_m = math.log(num_latent)
    log_mixture = torch.logsumexp(joint, 1) - log_m
    log_marginals = (torch.logsumexp(picked, 2) - log_m).sum(1)
    return log_mixture - log_marginals


def looped_reference_loss(
    logits_t: Tensor,
    teacher_logits: Tensor,
    logits_u: Tensor,
    targets: Tensor,
    x0: Tensor,
    corr_weight: Tensor,
) -> tuple[Tensor, Tensor]:
    """One step's Di4C loss (distillation + data + consistency), research-code style.

    Args:
        logits_t: Student logits at ``(x_t, t)`` for ``B*M`` rows ``(B*M, D, S)`` (requires grad).
        teacher_logits: Teacher logits at ``(x_t, t)`` ``(B, D, S)``.
        logits_u: Student logits at ``(x_u, u)`` for the ``M`` consistency rows ``(B*M, D, S)``,
            already detached (the MaskGIT fork computes them with a graph and then detaches).
        targets: The ``x_0`` samples drawn from the student at ``u``, one per row ``(B, M, D)``.
        x0: The clean data ``(B, D)``.
        corr_weight: ``alpha(t)`` ``(B,)``.

    Returns:
        The mean loss and the per-example loss ``(B,)``.
    """
    bm, d, s = logits_t.shape
    b = x0.shape[0]
    m = bm // b
    log_m = math.log(m)

    # Teacher at x_t: probabilities and log-probabilities, both kept.
    p_teacher = F.softmax(teacher_logits, dim=2).detach()  # (B, D, S)
    logp_teacher = F.log_softmax(teacher_logits, dim=2).detach()

    # Student at t.
    logp_lam = F.log_softmax(logits_t, dim=2)  # (B*M, D, S)
    logp_lam4 = logp_lam.view(b, m, d, s)

    # Data loss: correlation part at the real x0, and KL(teacher || mixture marginal).
    data_cor = -_log_ratio(logp_lam4, x0, m)
    logq_t = torch.logsumexp(logp_lam4, dim=1) - log_m  # (B, D, S)
    data_indep = (p_teacher * (logp_teacher - logq_t)).view(b, -1).sum(1)

    # Distillation: teacher repeated M times, per-lambda KL summed, divided by M.
    p_teacher_rep = p_teacher.repeat_interleave(m, dim=0)  # (B*M, D, S)
    logp_teacher_rep = logp_teacher.repeat_interleave(m, dim=0)
    distil = (p_teacher_rep * (logp_teacher_rep - logp_lam)).view(b, -1).sum(1) / m

    # Consistency: the target marginal from the student at u, then the looped correlation term.
    p_u_lam = F.softmax(logits_u, dim=2)  # (B*M, D, S)
    logp_u_lam = F.log_softmax(logits_u, dim=2)
    p_u = p_u_lam.view(b, m, d, s).mean(1).detach()  # (B, D, S)
    logp_u = torch.logsumexp(logp_u_lam.view(b, m, d, s), dim=1) - log_m
    consis_indep = (p_u * (logp_u.detach() - logq_t)).view(b, -1).sum(1)
    consis_cor = torch.zeros(b, device=logits_t.device, dtype=logits_t.dtype)
    for i in range(targets.shape[1]):
        consis_cor = consis_cor - _log_ratio(logp_lam4, targets[:, i], m) / targets.shape[1]
    consis = consis_cor + consis_indep

    per_example = distil + corr_weight * data_cor + data_indep + consis
    return per_example.mean(), per_example
