"""MaskGIT's confidence-based unmasking step (Chang et al. 2022; valeoai/Maskgit-pytorch v1 sampler)."""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

from mixdistill.processes.base import ForwardProcess
from mixdistill.processes.masking import MaskingProcess
from mixdistill.sampling.categorical import sample_from_logits
from mixdistill.sampling.step_rule import StepContext, StepRule


@lru_cache(maxsize=64)
def maskgit_schedule(steps: int, num_tokens: int) -> tuple[int, ...]:
    """Tokens unmasked at each of ``steps`` steps by MaskGIT's arccos schedule (v1 ``adap_sche``).

    ``r = linspace(1, 0, steps)``; weights ``arccos(r) / (pi / 2)`` normalised to ``num_tokens`` and
    rounded; a step that rounds to 0 takes 1; the last step takes the remainder so that the counts
    sum to ``num_tokens``. Computed in float32 as the published code does. With one step the
    published formula divides by zero; here that step takes every token.

    Args:
        steps: Number of steps of the chain.
        num_tokens: Number of tokens ``D`` (256 for a 16 x 16 grid).
    """
    if steps < 1 or num_tokens < 1:
        raise ValueError(f"maskgit_schedule: steps={steps} and num_tokens={num_tokens} must be >= 1.")
    if steps == 1:
        return (num_tokens,)
    r = torch.linspace(1.0, 0.0, steps)
    weight = torch.arccos(r) / (0.5 * math.pi)
    counts = (weight / weight.sum() * num_tokens).round()
    counts[counts == 0] = 1
    counts[-1] += num_tokens - counts.sum()
    return tuple(int(c) for c in counts)


class ConfidenceUnmasking(StepRule):
    """MaskGIT's step: sample ``x_0`` for every masked token, keep the ``k`` most confident ones.

    For each masked token, ``x_0 ~ softmax(logits * sm_temp)`` (the published code multiplies the
    logits by the temperature), and its confidence is
    ``log p(x_0) + r_temp * Gumbel * (1 - progress)``: the noise anneals to zero over the chain.
    The ``k`` masked tokens of highest confidence take their sampled value; every other token is
    carried over (unmasked ones unchanged, the rest stay masked).

    How many tokens, and how much noise:

    * Inside a chain (``context`` given): ``k`` is MaskGIT's count for step ``context.index`` of
      ``context.total`` (``maskgit_schedule``), and ``progress = index / (total - 1)``.
    * A lone step ``t -> s`` (no context; the Di4C consistency target): ``k`` is the expected count of
      the forward process, ``round(m * (alpha(s) - alpha(t)) / (1 - alpha(t)))`` for ``m`` masked
      tokens, at least 1 when ``m > 0``; and ``progress = 1 - t`` (MaskGIT's unmasked ratio ``r``,
      the many-step limit of ``index / (total - 1)`` on the uniform grid ``t_i = 1 - i / total``).
      The authors' Di4C fork instead unmasks up to the schedule's total at ``s`` and scales ``r`` by
      ``N / (N - 1)`` for an ``N``-step teacher; both agree as ``N`` grows.

    Either way ``k`` is capped at ``m``, and a step that reaches ``s = 0`` unmasks every token.

    Args:
        sm_temp: Multiplier of the logits before the softmax (MaskGIT at 256 px: 1).
        r_temp: Scale of the Gumbel noise on the confidences (MaskGIT at 256 px: 4.5).
    """

    def __init__(self, sm_temp: float = 1.0, r_temp: float = 4.5) -> None:
        if sm_temp <= 0 or r_temp < 0:
            raise ValueError(f"ConfidenceUnmasking: need sm_temp={sm_temp} > 0 and r_temp={r_temp} >= 0.")
        self.sm_temp, self.r_temp = sm_temp, r_temp

    def step(self, process, x_t, logits, t, s, num_samples=None, context=None) -> Tensor:
        mask_id = self._mask_id(process)
        n = 1 if num_samples is None else num_samples
        B, D = x_t.shape
        scaled = logits.float() * self.sm_temp  # (B, D, S)
        x0 = sample_from_logits(scaled, n)  # (B, D, n)
        logp = scaled.log_softmax(-1).gather(-1, x0).permute(0, 2, 1)  # (B, n, D)
        x0 = x0.permute(0, 2, 1)  # (B, n, D)
        masked = (x_t == mask_id).unsqueeze(1).expand(B, n, D)  # (B, n, D)
        k = self.unmask_counts(process, masked[:, 0].sum(-1), t, s, D, context)  # (B,)
        noise = self.r_temp * (1.0 - self.progress(t, context))  # (B,)
        conf = logp + noise.view(B, 1, 1) * _gumbel(logp.shape, logp.device)
        chosen = masked & (_ranks(conf.masked_fill(~masked, -math.inf)) < k.view(B, 1, 1))
        x_s = torch.where(chosen, x0, x_t.unsqueeze(1))  # (B, n, D)
        return x_s[:, 0] if num_samples is None else x_s

    def progress(self, t: Tensor, context: StepContext | None) -> Tensor:
        """Fraction of the chain done ``(B,)``: ``context.progress``, or ``1 - t`` for a lone step."""
        if context is not None:
            return torch.full_like(t, context.progress, dtype=torch.float32)
        return (1.0 - t.float()).clamp(0.0, 1.0)

    def unmask_counts(
        self,
        process: MaskingProcess,
        masked: Tensor,
        t: Tensor,
        s: Tensor,
        num_tokens: int,
        context: StepContext | None,
    ) -> Tensor:
        """Number of tokens to unmask per example ``(B,)`` long, for ``masked`` ``(B,)`` masked tokens.

        See the class docstring for the rule with and without ``context``.
        """
        if context is not None:
            k = torch.full_like(masked, maskgit_schedule(context.total, num_tokens)[context.index])
        else:
            k = (masked.double() * process.unmask_prob(t, s).double()).round().long()
            k = torch.maximum(k, (masked > 0).long())
        k = torch.where(s <= 0, masked, k)  # the last step leaves no token masked
        return k.clamp(min=0).minimum(masked)

    @staticmethod
    def _mask_id(process: ForwardProcess) -> int:
        if not isinstance(process, MaskingProcess):
            raise ValueError(
                "ConfidenceUnmasking needs a MaskingProcess (it unmasks tokens); got "
                f"{type(process).__name__}. Use AncestralStep for other processes."
            )
        return process.mask_id

    def __repr__(self) -> str:
        return f"ConfidenceUnmasking(sm_temp={self.sm_temp}, r_temp={self.r_temp})"


def _gumbel(shape: torch.Size, device: torch.device) -> Tensor:
    """Standard Gumbel noise ``-log(-log U)`` of ``shape``, from float64 uniforms kept off 0 and 1."""
    u = torch.rand(shape, dtype=torch.float64, device=device).clamp(1e-300, 1.0 - 1e-16)
    return (-torch.log(-torch.log(u))).float()


def _ranks(conf: Tensor) -> Tensor:
    """Rank of each entry along the last axis, 0 for the largest ``(..., D)`` long."""
    order = torch.sort(conf, dim=-1, descending=True, stable=True).indices
    ranks = torch.arange(conf.shape[-1], device=conf.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, ranks)
