"""tau-LDR's samplers on ordinal states: tau-leaping (with its predictor-corrector variant) and the
product step on tau-LDR's time grid, which the Di4C paper uses for its CIFAR-10 comparisons.

Both run on ``linspace(1, min_t, steps)`` followed by a last step to ``t = 0`` that takes the most
likely ``x_0`` of the denoiser at ``min_t`` (tau-LDR stops at ``min_t = 0.01``): ``steps`` network
calls, ``steps - 1`` of them moving the state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from torch import Tensor

from mixdistill.processes.base import ForwardProcess
from mixdistill.sampling.step_rule import AncestralStep, StepContext, StepRule

if TYPE_CHECKING:  # the sampler needs only the Teacher protocol; importing it would be a cycle
    from mixdistill.teachers.base import Teacher


@runtime_checkable
class RateProcess(Protocol):
    """A continuous-time Markov chain exposing its rate matrix (``GaussianRateProcess`` does)."""

    def rate_matrix(self, t: Tensor) -> Tensor:
        """Rates ``(B, K, K)`` at times ``t`` ``(B,)``: entry ``[i, j]`` is the rate of ``i -> j``."""

    def marginal_matrix(self, t: Tensor) -> Tensor:
        """``q_{t|0}`` ``(B, S, K)``."""


def min_time_grid(steps: int, min_t: float) -> Tensor:
    """``linspace(1, min_t, steps)`` then 0: ``(steps + 1,)`` (one step: ``[1, 0]``)."""
    if steps < 1 or not 0.0 < min_t < 1.0:
        raise ValueError(f"min_time_grid: need steps >= 1 (got {steps}) and 0 < min_t < 1 (got {min_t}).")
    head = torch.linspace(1.0, min_t, steps, dtype=torch.float64)
    return torch.cat([head, head.new_zeros(1)]).float()


def _at(matrix: Tensor, x: Tensor) -> Tensor:
    """``matrix[b, :, x[b, d]]`` for ``matrix`` ``(B, R, K)`` and ``x`` ``(B, D)``: ``(B, D, R)``."""
    return torch.gather(matrix.transpose(1, 2), 1, x.unsqueeze(-1).expand(-1, -1, matrix.shape[1]))


def reverse_rates(process: RateProcess, x_t: Tensor, probs: Tensor, t: Tensor, eps: float = 1e-9) -> Tensor:
    """tau-LDR's reverse rates ``(B, D, K)`` of ``x_t -> y`` (0 at ``y = x_t``):
    ``R_t(y, x) sum_v p(v) q_t0(y | v) / (q_t0(x | v) + eps)`` for ``p`` ``(B, D, S)`` at ``x_t``.
    """
    q_t0 = process.marginal_matrix(t).to(probs.dtype)  # (B, S, K)
    ratio = (probs / (_at(q_t0, x_t) + eps)) @ q_t0  # (B, D, K)
    rates = ratio * _at(process.rate_matrix(t).to(probs.dtype), x_t)  # R_t(y -> x_t)
    return rates.scatter(-1, x_t.unsqueeze(-1), 0.0)


def poisson_leap(x: Tensor, rates: Tensor, h: Tensor) -> Tensor:
    """One ordinal tau-leap: ``x + sum_y N_y (y - x)``, ``N_y ~ Poisson(h rates_y)``, clipped to the
    states; ``x`` ``(..., D)``, ``rates`` ``(..., D, K)``, ``h`` broadcastable to ``(..., 1, 1)``.
    """
    K = rates.shape[-1]
    jumps = torch.poisson(rates * h)  # (..., D, K)
    # sum_y N_y (y - x) = sum_y N_y y - x sum_y N_y, without a (..., D, K) tensor of differences;
    # the counts are small integers, so both float sums are exact.
    values = torch.arange(K, device=x.device, dtype=rates.dtype)
    moved = jumps @ values - x.to(rates.dtype) * jumps.sum(-1)  # (..., D)
    return (x + moved.long()).clamp(0, K - 1)


def _rate_process(process: ForwardProcess) -> RateProcess:
    if not isinstance(process, RateProcess):
        raise ValueError(
            f"tau-leaping needs a process with rate_matrix(t) (e.g. GaussianRateProcess); got "
            f"{type(process).__name__}. Use AncestralStep for it."
        )
    return process


class TauLeapingStep(StepRule):
    """tau-LDR's tau-leaping step ``t -> s``: Poisson jump counts with the reverse rates at ``t`` over
    ``h = t - s``; the last step (``s = 0``) returns the most likely ``x_0``. This is tau-LDR's
    ``PCTauLeaping`` without its corrector (the corrector needs further network calls at ``s``,
    which a step rule cannot make; ``pc_tau_leaping`` runs the full sampler).

    Args:
        min_t: Last time of the default grid before the final argmax (tau-LDR: 0.01).
        eps_ratio: Added to ``q_t0(x | v)`` in the rate ratio (tau-LDR: 1e-9).
    """

    def __init__(self, min_t: float = 0.01, eps_ratio: float = 1e-9) -> None:
        self.min_t, self.eps_ratio = min_t, eps_ratio

    def grid(self, steps: int) -> Tensor:
        return min_time_grid(steps, self.min_t)

    def step(self, process, x_t, logits, t, s, num_samples=None, context=None) -> Tensor:
        n = 1 if num_samples is None else num_samples
        rates = reverse_rates(_rate_process(process), x_t, logits.float().softmax(-1), t, self.eps_ratio)
        h = (t - s).to(rates.dtype).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        x_s = poisson_leap(x_t.unsqueeze(1).expand(-1, n, -1), rates.unsqueeze(1).expand(-1, n, -1, -1), h)
        last = (s == 0).view(-1, 1, 1)  # (B, 1, 1)
        x_s = torch.where(last, logits.argmax(-1).unsqueeze(1), x_s)  # (B, n, D)
        return x_s[:, 0] if num_samples is None else x_s


class MinTimeAncestralStep(AncestralStep):
    """The product step on ``min_time_grid``, with the most likely ``x_0`` in the last step: how the
    Di4C authors sample tau-LDR teachers and students in few steps (and their teacher step in the
    consistency loss is this product step).

    Args:
        min_t: Last time of the default grid before the final argmax (the authors: 0.01).
    """

    def __init__(self, min_t: float = 0.01) -> None:
        self.min_t = min_t

    def grid(self, steps: int) -> Tensor:
        return min_time_grid(steps, self.min_t)

    def draw_x0(self, logits: Tensor, n: int, s: Tensor) -> Tensor:
        x0 = super().draw_x0(logits, n, s)  # (B, n, D)
        last = (s == 0).view(-1, 1, 1)
        return torch.where(last, logits.argmax(-1).unsqueeze(1), x0)


@torch.no_grad()
def pc_tau_leaping(
    model: Teacher,
    num_samples: int,
    steps: int = 500,
    min_t: float = 0.01,
    corrector_steps: int = 10,
    corrector_entry_time: float = 0.1,
    corrector_step_size: float = 1.5,
    eps_ratio: float = 1e-9,
) -> Tensor:
    """tau-LDR's ``PCTauLeaping`` sampler (its CIFAR-10 evaluation settings by default).

    Predictor leaps over ``linspace(1, min_t + 1/steps, steps)``; after each leap from a time
    ``t <= corrector_entry_time`` to ``s``, ``corrector_steps`` leaps of length
    ``corrector_step_size * (t - s)`` with the forward plus reverse rates at ``s``; finally the most
    likely ``x_0`` under the denoiser at ``min_t``.

    Returns:
        Samples ``(num_samples, *model.shape)`` long.
    """
    process = _rate_process(model.process)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = model.process.prior((num_samples, model.num_dims), device=device)  # (B, D)
    ones = torch.ones(num_samples, device=device)
    ts = torch.linspace(1.0, min_t + 1.0 / steps, steps, dtype=torch.float64).tolist()
    for i, (t, s) in enumerate(zip(ts[:-1], ts[1:], strict=True)):
        probs = model.sampling_logits(x, t * ones, context=StepContext(i, steps)).float().softmax(-1)
        x = poisson_leap(x, reverse_rates(process, x, probs, t * ones, eps_ratio), t - s)
        if t > corrector_entry_time:
            continue
        for _ in range(corrector_steps):
            probs = model.sampling_logits(x, s * ones).float().softmax(-1)
            rates = reverse_rates(process, x, probs, s * ones, eps_ratio)
            rates = rates + _at(process.rate_matrix(s * ones).transpose(1, 2), x)  # + R_s(x -> y)
            rates = rates.scatter(-1, x.unsqueeze(-1), 0.0)
            x = poisson_leap(x, rates, corrector_step_size * (t - s))
    x0 = model.sampling_logits(x, min_t * ones).argmax(-1)
    return x0.view(num_samples, *model.shape)
