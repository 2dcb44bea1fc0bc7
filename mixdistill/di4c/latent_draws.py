"""How the objective draws the ``n`` lambdas per example that estimate the student's mixture.

The Di4C losses score a target ``y`` by ``log (1/n) sum_j p_theta(y | lambda_j)``, a lower bound of
``log p_theta(y)`` for any draw in which every ``lambda_j`` is marginally uniform. With independent
draws a component of the mixture with prior mass ``1/n`` is missed by all ``n`` lambdas with
probability ``(1 - 1/n)^n ~ 1/e``, and the estimate then charges the target as if the student could
not produce it: the student is rewarded for far fewer than ``n`` distinguishable components
(``bench/latent_cap.py`` measures it). Stratified draws hit every ``1/n`` slice of each coordinate
exactly once, so ``n`` components aligned with the slices are scored exactly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor


class LatentDraw(ABC):
    """Draws ``(batch, n, k)`` lambdas, each one marginally ``U[0,1]^k``."""

    @abstractmethod
    def __call__(self, batch: int, n: int, k: int, device: torch.device | None = None) -> Tensor:
        """Lambdas ``(batch, n, k)`` for ``n`` mixture components per example."""


class IndependentDraw(LatentDraw):
    """``n`` independent uniform lambdas per example (the paper's estimator)."""

    def __call__(self, batch: int, n: int, k: int, device: torch.device | None = None) -> Tensor:
        return torch.rand(batch, n, k, device=device)


class StratifiedDraw(LatentDraw):
    """Latin-hypercube lambdas: in each coordinate, an example's ``n`` lambdas fall one in each slice
    ``[i/n, (i+1)/n)``, uniformly within it, the slices in an independent random order per
    coordinate. Each lambda is still marginally uniform (the bound stays a bound) and the estimate
    of ``log p_theta(y)`` has lower variance.
    """

    def __call__(self, batch: int, n: int, k: int, device: torch.device | None = None) -> Tensor:
        # argsort of iid noise is a uniformly random permutation of the n slices, per (example, coordinate)
        slices = torch.rand(batch, n, k, device=device).argsort(dim=1)  # (B, n, k)
        return (slices + torch.rand(batch, n, k, device=device)) / n
