"""Schedules ``alpha(t)`` that weight the correlation part of the data loss."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor


class CorrelationWeight(ABC):
    """Weight ``alpha(t)`` ``(B,)`` of ``corr(x0_data)`` in the data loss."""

    @abstractmethod
    def __call__(self, t: Tensor) -> Tensor:
        """Weight for each time in ``t`` ``(B,)``."""


class SigmoidWeight(CorrelationWeight):
    """``scale * sigmoid(sharpness (t - center))`` (the paper: scale 1 for tau-LDR, 0.1 for MaskGIT/SDTT).

    Args:
        scale: Overall factor.
        sharpness: Slope of the sigmoid (the paper: 20).
        center: Time at which the weight is ``scale / 2``.
    """

    def __init__(self, scale: float = 1.0, sharpness: float = 20.0, center: float = 0.5) -> None:
        if scale < 0:
            raise ValueError(f"SigmoidWeight: scale={scale} must be non-negative.")
        self.scale, self.sharpness, self.center = scale, sharpness, center

    def __call__(self, t: Tensor) -> Tensor:
        return self.scale * torch.sigmoid(self.sharpness * (t - self.center))


class LinearWeight(CorrelationWeight):
    """``scale * t``."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def __call__(self, t: Tensor) -> Tensor:
        return self.scale * t


class ConstantWeight(CorrelationWeight):
    """A constant; 0 switches the correlation part of the data loss off."""

    def __init__(self, value: float = 1.0) -> None:
        self.value = value

    def __call__(self, t: Tensor) -> Tensor:
        return torch.full_like(t, self.value)
