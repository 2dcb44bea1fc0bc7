"""Time sampling and loss gating of the Di4C objective, one class per paper setup.

A ``TimeSampler`` draws, for each example, the time ``t`` of ``x_t``, the target ``u = t - Delta``
of the teacher step, an optional separate time ``delta`` for the distillation loss, and the
weights with which the distillation, consistency and data losses enter that example's loss.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TimeDraw:
    """Per-example times and loss weights, all ``(B,)``."""

    t: Tensor
    u: Tensor
    w_distil: Tensor
    w_consis: Tensor
    w_data: Tensor
    #: Own time of a separately corrupted ``x_delta`` for distillation; None = distil on ``x_t``.
    distil_t: Tensor | None = None


class TimeSampler(ABC):
    """Draws a ``TimeDraw`` for a batch."""

    @abstractmethod
    def draw(self, batch_size: int, device: torch.device | str | None = None) -> TimeDraw:
        """Times and weights for ``batch_size`` examples."""


def _uniform(batch_size: int, low: Tensor | float, high: Tensor | float, device) -> Tensor:
    return low + (high - low) * torch.rand(batch_size, device=device)


class TauLDRTimes(TimeSampler):
    """tau-LDR: all three losses on every example, distillation on its own ``x_delta``.

    ``Delta`` is log-uniform in ``[delta_min, delta_max]``, ``t ~ U[t_min + Delta, 1]``,
    ``u = t - Delta`` and ``delta ~ U[distil_min, distil_max]``.

    Args:
        delta_min: Smallest teacher step (paper: 0.001).
        delta_max: Largest teacher step (paper: 0.01).
        t_min: Smallest time ``u`` reached by a teacher step (paper: 0.01).
        distil_min: Lower end of the distillation time (paper: 0.01).
        distil_max: Upper end of the distillation time (paper: 0.02).
        distil_atom: Probability that the distillation time is exactly ``distil_min`` (the
            authors' code puts half the draws there and spreads the rest uniformly).
    """

    def __init__(
        self,
        delta_min: float = 1e-3,
        delta_max: float = 1e-2,
        t_min: float = 0.01,
        distil_min: float = 0.01,
        distil_max: float = 0.02,
        distil_atom: float = 0.5,
    ) -> None:
        if not 0 < delta_min <= delta_max < 1 - t_min:
            raise ValueError(
                f"TauLDRTimes: need 0 < delta_min ({delta_min}) <= delta_max ({delta_max}) "
                f"< 1 - t_min ({1 - t_min})."
            )
        if not 0 <= distil_min <= distil_max <= 1:
            raise ValueError(
                f"TauLDRTimes: need 0 <= distil_min ({distil_min}) <= distil_max ({distil_max}) <= 1."
            )
        self.delta_min, self.delta_max, self.t_min = delta_min, delta_max, t_min
        if not 0 <= distil_atom <= 1:
            raise ValueError(f"TauLDRTimes: distil_atom={distil_atom} must lie in [0, 1].")
        self.distil_min, self.distil_max, self.distil_atom = distil_min, distil_max, distil_atom

    def draw(self, batch_size: int, device=None) -> TimeDraw:
        log_delta = _uniform(batch_size, math.log(self.delta_min), math.log(self.delta_max), device)
        delta = log_delta.exp()
        t = _uniform(batch_size, self.t_min + delta, 1.0, device)
        ones = torch.ones(batch_size, device=device)
        spread = torch.rand(batch_size, device=device) >= self.distil_atom
        distil_t = self.distil_min + spread * (self.distil_max - self.distil_min) * torch.rand(
            batch_size, device=device
        )
        return TimeDraw(t, t - delta, ones, ones, ones, distil_t)


class MaskGITTimes(TimeSampler):
    """MaskGIT: ``t ~ U[0, 1]``; near the data (``t <= distil_below``) the distillation loss on the
    same ``x_t`` replaces the consistency loss, with weight ``distil_weight``.

    Args:
        step: Teacher step ``Delta`` (paper: 0.05 of unmasked ratio).
        distil_below: Time under which distillation replaces consistency (paper: 0.05).
        distil_weight: Weight of the distillation loss there (paper: 1 / 0.05 = 20).
    """

    def __init__(self, step: float = 0.05, distil_below: float = 0.05, distil_weight: float = 20.0) -> None:
        if not 0 < step < 1:
            raise ValueError(f"MaskGITTimes: step={step} must lie in (0, 1).")
        self.step, self.distil_below, self.distil_weight = step, distil_below, distil_weight

    def draw(self, batch_size: int, device=None) -> TimeDraw:
        t = torch.rand(batch_size, device=device)
        near = t <= self.distil_below
        u = (t - self.step).clamp_min(0.0)
        w_distil = near.float() * self.distil_weight
        return TimeDraw(t, u, w_distil, (~near).float(), torch.ones_like(t))


class SDTTTimes(TimeSampler):
    """SDTT/MDLM: with probability ``p_distil`` an example gets ``t ~ U(0, distil_max)`` and only the
    distillation loss; otherwise ``t ~ U(distil_max, 1)`` and the consistency loss with a teacher
    step of ``step``. The data loss applies to every example.

    Args:
        p_distil: Fraction of distillation examples (paper: 0.3).
        distil_max: Upper end of the distillation times (paper: 0.02).
        step: Teacher step ``Delta`` (paper: 1/1024, one ancestral step of a 1024-step sampler).
    """

    def __init__(self, p_distil: float = 0.3, distil_max: float = 0.02, step: float = 1.0 / 1024) -> None:
        if not 0 <= p_distil <= 1:
            raise ValueError(f"SDTTTimes: p_distil={p_distil} must lie in [0, 1].")
        if not 0 < step <= distil_max < 1:
            raise ValueError(f"SDTTTimes: need 0 < step ({step}) <= distil_max ({distil_max}) < 1.")
        self.p_distil, self.distil_max, self.step = p_distil, distil_max, step

    def draw(self, batch_size: int, device=None) -> TimeDraw:
        near = torch.rand(batch_size, device=device) < self.p_distil
        t = torch.where(
            near,
            _uniform(batch_size, 0.0, self.distil_max, device),
            _uniform(batch_size, self.distil_max, 1.0, device),
        )
        # Distillation examples can have t < step; clamp so that every time lies in [0, 1].
        u = (t - self.step).clamp_min(0.0)
        return TimeDraw(t, u, near.float(), (~near).float(), torch.ones_like(t))
