"""Noise schedules: the keep-probability alpha(t) of masking and uniform-state processes.

Time runs from t = 0 (data) to t = 1 (pure noise) in every public API; alpha(0) = 1, alpha(1) ~ 0.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor


class Schedule(ABC):
    """Probability ``alpha(t)`` that a token is still clean at time ``t``."""

    @abstractmethod
    def alpha(self, t: Tensor) -> Tensor:
        """Keep-probability at time ``t`` (any shape), in ``[0, 1]``, decreasing in ``t``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LinearSchedule(Schedule):
    """``alpha(t) = 1 - t`` (MDLM/D3PM absorbing with linear masking)."""

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - t


class CosineSchedule(Schedule):
    """``alpha(t) = cos(pi t / 2)``."""

    def alpha(self, t: Tensor) -> Tensor:
        return torch.cos(0.5 * math.pi * t).clamp(min=0.0)


class ArccosSchedule(Schedule):
    """MaskGIT's arccos schedule: masked fraction ``arccos(1 - t) / (pi / 2)``.

    MaskGIT's unmasked ratio ``r`` is ``1 - t``.
    """

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - torch.arccos((1.0 - t).clamp(-1.0, 1.0)) / (0.5 * math.pi)


class LogLinearSchedule(Schedule):
    """MDLM's log-linear schedule: mask probability ``(1 - eps) t``.

    Args:
        eps: Probability that a token is still clean at ``t = 1``; MDLM uses 1e-3.
    """

    def __init__(self, eps: float = 1e-3) -> None:
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"LogLinearSchedule: eps={eps} must lie in [0, 1).")
        self.eps = eps

    def alpha(self, t: Tensor) -> Tensor:
        return 1.0 - (1.0 - self.eps) * t

    def sigma(self, t: Tensor) -> Tensor:
        """MDLM's total noise ``sigma(t) = -log alpha(t)``, the time input of its DiT."""
        return -torch.log1p(-(1.0 - self.eps) * t)

    def __repr__(self) -> str:
        return f"LogLinearSchedule(eps={self.eps})"
