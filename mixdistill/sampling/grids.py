"""Time grids of the samplers: decreasing times from noise (t = 1) to data (t = 0)."""

from __future__ import annotations

import torch
from torch import Tensor


def uniform_grid(steps: int, t_max: float = 1.0, t_min: float = 0.0) -> Tensor:
    """``steps + 1`` equally spaced times from ``t_max`` down to ``t_min``: ``(steps + 1,)``."""
    if steps < 1:
        raise ValueError(f"steps={steps} must be at least 1.")
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ValueError(f"need 0 <= t_min ({t_min}) < t_max ({t_max}) <= 1.")
    return torch.linspace(t_max, t_min, steps + 1, dtype=torch.float64).float()
