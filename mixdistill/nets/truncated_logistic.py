"""tau-LDR's output head: per-pixel logistics discretised into ``S`` equal bins of ``[-1, 1]``.

The head's ``(B, C, H, W, S)`` tensors are the largest of a tau-LDR step (the U-Net's activations are
``S`` times smaller), and autograd through the elementwise chain would keep four of them per network
call until backward. ``_BinLogits`` keeps only the means and scales and recomputes the chain in
backward, from the closed-form derivative of the log-space formula.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: tau-LDR's constant inside its log-minus-exp: bin logit = log(cdf_r - cdf_l + EPS cdf_r).
EPS = 1e-6


def truncated_logistic_logits(out: Tensor, num_states: int, fix_logistic: bool = False) -> Tensor:
    """Log-probabilities of ``num_states`` equal bins of ``[-1, 1]`` under per-pixel logistics.

    ``out`` ``(B, 2C, H, W)`` holds the means ``mu`` and log-scales; ``inv_scale = exp(2 - log_scale)``.
    Bin ``k`` spans ``[-1 + k w, -1 + (k + 1) w]``, ``w = 2 / num_states``; its logit is
    ``log(sig(right) - sig(left))`` computed as tau-LDR does, ``a + log1p(-exp(b - a) + 1e-6)`` with
    ``a, b`` the log-CDFs (so ``log(sig(r) - sig(l) + 1e-6 sig(r))``). ``fix_logistic`` takes the
    minimum with the complementary form, which is more accurate in the right tail (tau-LDR: False).

    Returns:
        Logits ``(B, C, H, W, num_states)``, float32 (float64 for float64 ``out``).
    """
    C = out.shape[1] // 2
    # At least float32: bf16 / fp16 outputs (autocast) cannot resolve bin edges 2 / S apart.
    dtype = torch.promote_types(out.dtype, torch.float32)
    mu, log_scale = out[:, :C].unsqueeze(-1).to(dtype), out[:, C:].unsqueeze(-1).to(dtype)  # (B, C, H, W, 1)
    edges = bin_edges(num_states, mu)
    if fix_logistic:
        z = (edges - mu) * _inv_scale(log_scale)  # (B, C, H, W, S + 1)
        log_cdf = F.logsigmoid(z)
        log_sf = log_cdf - z  # log(1 - sig(z))
        cdf_form = _log_minus_exp(log_cdf[..., 1:], log_cdf[..., :-1])
        return torch.minimum(cdf_form, _log_minus_exp(log_sf[..., :-1], log_sf[..., 1:]))
    return _BinLogits.apply(mu, log_scale, edges)


def bin_edges(num_states: int, like: Tensor) -> Tensor:
    """The ``S + 1`` bin edges ``(S + 1,)``: bin ``k``'s right edge is bin ``k + 1``'s left one."""
    width = 2.0 / num_states
    centres = torch.linspace(
        -1.0 + width / 2, 1.0 - width / 2, num_states, device=like.device, dtype=like.dtype
    )
    return torch.cat([centres - width / 2, centres[-1:] + width / 2])


def _inv_scale(log_scale: Tensor) -> Tensor:
    """tau-LDR's logistic inverse scale ``exp(2 - log_scale)``."""
    return torch.exp(-(log_scale - 2.0))


def _log_minus_exp(a: Tensor, b: Tensor, eps: float = EPS) -> Tensor:
    """``log(exp(a) - exp(b))`` for ``b < a``, with tau-LDR's ``eps`` inside the ``log1p``."""
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return a + torch.log1p(-torch.exp(b - a) + eps)
    # Without a graph (targets, sampling) the chain runs in place on one temporary.
    return (b - a).exp_().neg_().add_(eps).log1p_().add_(a)


class _BinLogits(torch.autograd.Function):
    """tau-LDR's bin logits from ``mu``, ``log_scale`` ``(..., 1)`` and the edges ``(S + 1,)``,
    saving only its inputs: backward recomputes the edges' log-CDFs.

    With ``a = log sig(r)``, ``b = log sig(l)`` and ``q = exp(b - a)``, the logit ``a + log1p(eps - q)``
    has ``d/dr = (1 + w) sig(-r)`` and ``d/dl = -w sig(-l)``, ``w = q / (1 + eps - q)``; each edge is
    the right edge of one bin and the left edge of the next.
    """

    @staticmethod
    def forward(ctx, mu: Tensor, log_scale: Tensor, edges: Tensor) -> Tensor:
        ctx.save_for_backward(mu, log_scale, edges)
        with torch.no_grad():
            log_cdf = F.logsigmoid((edges - mu) * _inv_scale(log_scale))  # (..., S + 1)
            return _log_minus_exp(log_cdf[..., 1:], log_cdf[..., :-1])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        mu, log_scale, edges = ctx.saved_tensors
        inv_scale = _inv_scale(log_scale)
        z = (edges - mu) * inv_scale  # (..., S + 1)
        log_cdf = F.logsigmoid(z)
        w = (log_cdf[..., :-1] - log_cdf[..., 1:]).exp_()  # q, (..., S)
        del log_cdf  # every step below is in place, so that backward holds few head-size tensors
        w.neg_().add_(1.0 + EPS).reciprocal_().mul_(1.0 + EPS).sub_(1.0)  # q / (1 + eps - q)
        g_z = z.new_zeros(z.shape)
        g_z[..., 1:].copy_(w).add_(1.0).mul_(grad)  # through each bin's right edge
        g_z[..., :-1].sub_(w.mul_(grad))  # and through its left edge
        del w
        g_z.mul_(torch.neg(z).sigmoid_())  # d log sig(z) / dz
        grad_mu = g_z.sum(-1, keepdim=True).mul_(inv_scale).neg_()
        grad_log_scale = (g_z.unsqueeze(-2) @ z.unsqueeze(-1)).squeeze(-1).neg_()  # -sum_j g_z z
        return grad_mu, grad_log_scale, None
