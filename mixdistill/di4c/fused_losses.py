"""The three Di4C losses in one autograd function from the logits: the fast path of Di4CObjective.

It computes exactly what the per-term functions of ``mixdistill.di4c.losses`` compute (tested to 1e-10 in
float64, gradients included, in tests/test_loss_terms.py) but keeps nothing of shape ``(B, n, D, S)``
between forward and backward and builds the gradient in place, which halves peak memory and time
against composing the per-term functions (docs/benchmarks.md). The per-term functions remain the
reference definition of the maths.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mixdistill.di4c.chunks import TILE_ELEMENTS, sequence_tiles, working_dtype
from mixdistill.di4c.losses import marginal_kl


class _Di4CTerms(torch.autograd.Function):
    """The three losses straight from the logits, with a hand-written, in-place backward pass.

    Forward: ``L = log_softmax(logits)`` and the mixture marginal are built one sequence tile at a
    time (``chunks.sequence_tiles``), reduced to per-example values and small ``(B, D, S)`` /
    ``(B, n, m)`` tensors, and freed: nothing of shape ``(B, n, D, S)`` is saved (``logits`` is
    saved by reference, in its own dtype: bf16 logits are cast to float32 a tile at a time).

    Backward: with per-example output gradients ``g``, every term's dependence on ``L`` is one of
    ``sum_{d,v} C^d(v) lm^d(v)`` (marginal KLs and marginal log-probabilities, ``lm`` the mixture
    marginal), ``sum_{j,d,v} E^d(v) L_j^d(v)`` (distillation) and ``-c_i logsumexp_j sum_d
    L_j^d(y_i^d)`` (mixture log-likelihoods of data and targets). So
    ``dloss/dL_j = w_j C + E + sparse``, with ``w_j = exp(L_j - logsumexp_j L_j)`` the
    responsibilities and ``sparse`` the posteriors ``softmax_j`` of the component log-likelihoods
    scattered to the targets' values, and ``dloss/dlogits = dL - softmax * rowsum(dL)``. Per tile,
    two working buffers are built: the recomputed ``L`` (turned into ``w`` and then into the
    softmax term in place) and the gradient (built in place, then written into the output).
    """

    @staticmethod
    def forward(
        ctx,
        logits: Tensor,
        teacher_logp: Tensor | None,
        x0: Tensor | None,
        corr_weight: Tensor | None,
        targets: Tensor | None,
        target_log_marginal: Tensor | None,
        rows: Tensor | None,
        distil: bool,
        control_variate: bool,
        tile_elements: int | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        B, n, D, _ = logits.shape
        log_n = math.log(n)
        tiles = sequence_tiles(logits, tile_elements)
        dt = working_dtype(logits)
        distil_out, consis_out, data_out = (logits.new_zeros(B, dtype=dt) for _ in range(3))
        y_all = None
        if targets is not None:
            if rows is None:
                rows = torch.arange(B, device=logits.device)
                y_all = targets.transpose(1, 2)  # (B, D, m)
            else:  # one gather over all rows (value 0 where there is no target) beats copying L[rows]
                y_all = targets.new_zeros(B, D, targets.shape[1])
                y_all.index_copy_(0, rows, targets.transpose(1, 2))
        p_t = teacher_logp.exp() if teacher_logp is not None else None
        lse_n, comp0, comp_all, cross = _tile_reductions(logits, tiles, x0, y_all, p_t if distil else None)
        lm = lse_n - log_n
        if distil:
            distil_out = (p_t * teacher_logp).sum((1, 2)) - cross / n
        resp0 = resp = None
        if x0 is not None:
            resp0 = torch.softmax(comp0, 1)
            marg0 = torch.gather(lm, 2, x0.unsqueeze(2)).sum((1, 2))
            corr0 = marg0 - (torch.logsumexp(comp0, 1) - log_n)
            if control_variate:
                kl = marginal_kl(teacher_logp, lm)
            else:
                kl = torch.gather(teacher_logp, 2, x0.unsqueeze(2)).sum((1, 2)) - marg0
            data_out = corr_weight * corr0 + kl
        if targets is not None:
            comp = comp_all[rows]  # (b, n, m)
            resp = torch.softmax(comp, 1)
            lm_r = lm[rows]
            y = y_all[rows]  # (b, D, m)
            marg = torch.gather(lm_r, 2, y).sum(1)  # (b, m)
            corr = (marg - (torch.logsumexp(comp, 1) - log_n)).mean(1)
            if control_variate:
                consis_r = corr + marginal_kl(target_log_marginal, lm_r)
            else:
                gap = torch.gather(target_log_marginal, 2, y).sum(1) - marg
                consis_r = corr + gap.mean(1)
            consis_out = consis_out.index_copy(0, rows, consis_r.to(consis_out.dtype))
        ctx.save_for_backward(logits, lse_n, p_t, x0, corr_weight, y_all, target_log_marginal)
        ctx.rows, ctx.resp0, ctx.resp, ctx.tiles = rows, resp0, resp, tiles
        ctx.distil, ctx.control_variate = distil, control_variate
        return distil_out, consis_out, data_out

    @staticmethod
    def backward(ctx, g_distil: Tensor, g_consis: Tensor, g_data: Tensor):
        logits, lse_n, p_t, x0, corr_weight, y_all, target_lm = ctx.saved_tensors
        rows, resp0, resp = ctx.rows, ctx.resp0, ctx.resp
        B, n, D, S = logits.shape
        coef = lse_n.new_zeros(B, D, S)  # C: the gradient w.r.t. the mixture marginal lm
        scatters = []  # (index, values) to add to dloss/dL along the value axis
        if x0 is not None:
            # alpha corr(x0) = alpha [sum_d lm(x0^d) - logsumexp_j comp0_j + log n], plus the marginal part.
            g_lm = g_data * (corr_weight if ctx.control_variate else corr_weight - 1)
            coef.scatter_add_(2, x0.unsqueeze(2), g_lm[:, None, None].expand(B, D, 1).to(coef.dtype))
            if ctx.control_variate:
                coef.sub_(g_data[:, None, None] * p_t)
            val = (-(g_data * corr_weight)[:, None] * resp0)[:, :, None, None]  # (B, n, 1, 1)
            scatters.append((x0[:, None, :, None].expand(-1, n, -1, -1), val.expand(-1, -1, D, -1)))
        if y_all is not None:
            m = y_all.shape[2]
            g = g_consis[rows] / m  # (b,)
            y = y_all[rows]  # (b, D, m)
            if ctx.control_variate:
                # mean_i corr(y_i) + KL(target || lm): counts of the targets minus the target marginal.
                counts = coef.new_zeros(len(rows), D, S).scatter_add_(2, y, g[:, None, None].expand(y.shape))
                coef.index_add_(0, rows, counts - (m * g)[:, None, None] * target_lm.exp())
            # (Without the control variate the marginal log-probabilities of corr and gap cancel.)
            val = coef.new_zeros(B, n, m).index_copy_(0, rows, -g[:, None, None] * resp)
            idx = y_all.unsqueeze(1).expand(-1, n, -1, -1)  # (B, n, D, m)
            scatters.append((idx, val.unsqueeze(2).expand(-1, -1, D, -1)))
        distil = (g_distil[:, None, None] / n * p_t).unsqueeze(1) if ctx.distil else None
        if len(ctx.tiles) == 1 and logits.dtype == coef.dtype:
            return _tile_gradient(logits, lse_n, coef, distil, scatters, ctx.tiles[0]), *[None] * 9
        grad = torch.empty_like(logits)
        for sl in ctx.tiles:
            grad[:, :, sl] = _tile_gradient(logits, lse_n, coef, distil, scatters, sl)
        return grad, *[None] * 9


def _tile_reductions(
    logits: Tensor, tiles: list[slice], x0: Tensor | None, y_all: Tensor | None, p_t: Tensor | None
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """One pass over the tiles of ``L = log_softmax(logits)``: ``logsumexp_j L_j`` ``(B, D, S)``, the
    component log-likelihoods of ``x0`` ``(B, n)`` and of the targets ``(B, n, m)``, and
    ``sum_{d,v} p_t sum_j L_j`` ``(B,)`` (the distillation cross-entropy, when ``p_t`` is given).
    """
    B, n, D, S = logits.shape
    dt = working_dtype(logits)
    lse_n = logits.new_empty(B, D, S, dtype=dt)
    comp0 = None if x0 is None else logits.new_zeros(B, n, dtype=dt)
    comp_all = None if y_all is None else logits.new_zeros(B, n, y_all.shape[2], dtype=dt)
    cross = None if p_t is None else logits.new_zeros(B, dtype=dt)
    for sl in tiles:
        L = logits[:, :, sl].log_softmax(-1, dtype=dt)  # (B, n, d, S)
        # Everything that reads L itself first, then the logsumexp over components in L's buffer.
        if cross is not None:
            cross += (p_t[:, sl] * L.sum(1)).sum((1, 2))
        if comp0 is not None:
            comp0 += torch.gather(L, 3, x0[:, None, sl, None].expand(-1, n, -1, -1)).sum((2, 3))
        if comp_all is not None:
            comp_all += torch.gather(L, 3, y_all[:, None, sl].expand(-1, n, -1, -1)).sum(2)
        top = L.amax(1, keepdim=True)
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        lse_n[:, sl] = L.sub_(top).exp_().sum(1).log_().add_(top.squeeze(1))
    return lse_n, comp0, comp_all, cross


def _tile_gradient(
    logits: Tensor, lse_n: Tensor, coef: Tensor, distil: Tensor | None, scatters: list, sl: slice
) -> Tensor:
    """``dloss/dlogits`` on the sequence tile ``sl``: ``(B, n, d, S)`` in the working dtype."""
    lse = lse_n[:, sl].unsqueeze(1)  # (B, 1, d, S)
    # w_j = exp(L_j - lse_n), in place in the buffer of the recomputed L. The softmax is
    # exp(L_j) = w_j exp(lse_n), with exp(lse_n) <= n, so one exp serves both.
    w = logits[:, :, sl].log_softmax(-1, dtype=lse_n.dtype).sub_(lse).exp_()
    grad = torch.mul(w, coef[:, sl].unsqueeze(1))  # w_j C
    if distil is not None:
        grad.sub_(distil[:, :, sl])
    for idx, val in scatters:
        grad.scatter_add_(3, idx[:, :, sl], val[:, :, sl])
    row_sum = grad.sum(-1, keepdim=True)  # (B, n, d, 1)
    return grad.sub_(w.mul_(lse.exp()).mul_(row_sum))  # dL - softmax * rowsum(dL)


def di4c_loss_terms(
    logits: Tensor,
    teacher_logp: Tensor | None = None,
    x0: Tensor | None = None,
    corr_weight: Tensor | None = None,
    targets: Tensor | None = None,
    target_log_marginal: Tensor | None = None,
    rows: Tensor | None = None,
    distil: bool = True,
    control_variate: bool = True,
    tile_elements: int | None = TILE_ELEMENTS,
) -> tuple[Tensor, Tensor, Tensor]:
    """Distillation, consistency and data loss of one batch from the student's logits: 3 x ``(B,)``.

    The same values and gradients as ``logp = logits.log_softmax(-1)`` followed by

    * ``distillation_loss(teacher_logp, logp)`` if ``distil``, else 0;
    * ``consistency_loss(logp[rows], targets, target_log_marginal, control_variate)`` at ``rows``
      and 0 elsewhere, if ``targets`` is given, else 0;
    * ``data_loss(logp, x0, teacher_logp, corr_weight, control_variate)`` if ``x0`` is given, else 0;

    computed as one autograd function that keeps no ``(B, n, D, S)`` tensor between forward and
    backward and builds the gradient w.r.t. the logits in place: at most two such tensors exist at
    a time besides ``logits`` (three for the composition above: ``logp``, the gradient w.r.t. it
    and the one w.r.t. the logits), and fewer are allocated and swept per step.

    Args:
        logits: Student logits at ``(x_t, t)`` ``(B, n, D, S)``: bf16 / fp16 (computed in float32
            a tile at a time, the gradient returned in the logits' dtype), float32 or float64.
        teacher_logp: Teacher log-probabilities ``(B, D, S)``; needed for ``distil`` and the data loss.
        x0: The clean data ``(B, D)`` long, or ``None`` for no data loss.
        corr_weight: ``alpha(t)`` ``(B,)`` of the data loss.
        targets: Consistency targets ``(b, m, D)`` for the examples ``rows``, or ``None``.
        target_log_marginal: ``(b, D, S)``, the average of the distributions the targets came from.
        rows: Long indices ``(b,)`` of the examples the targets belong to (``None``: all, ``b = B``).
        distil: Compute the distillation loss against ``teacher_logp`` on these logits.
        control_variate: Exact marginal KLs instead of their sample estimates (both losses).
        tile_elements: Most elements of one float32 working tile along the sequence (``None``: the
            whole tensor at once). Tiling changes only the order of float sums over ``D``.

    ``teacher_logp`` and ``target_log_marginal`` are constant targets: no gradient flows into
    them, and a ``ValueError`` is raised if they require one.
    """
    for name, value in (("teacher_logp", teacher_logp), ("target_log_marginal", target_log_marginal)):
        if value is not None and value.requires_grad and torch.is_grad_enabled():
            raise ValueError(f"di4c_loss_terms: {name} is a constant target and must not require grad.")
    if (distil or x0 is not None) and teacher_logp is None:
        raise ValueError("di4c_loss_terms: the distillation and data losses need teacher_logp.")
    if x0 is not None and corr_weight is None:
        raise ValueError("di4c_loss_terms: the data loss needs corr_weight.")
    if targets is not None and target_log_marginal is None:
        raise ValueError("di4c_loss_terms: the consistency loss needs target_log_marginal.")
    return _Di4CTerms.apply(
        logits,
        teacher_logp,
        x0,
        corr_weight,
        targets,
        target_log_marginal,
        rows,
        distil,
        control_variate,
        tile_elements,
    )
