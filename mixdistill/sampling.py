"""Time grids and the ancestral sampling loop shared by teachers and students."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import Tensor


@contextmanager
def seeded(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Draw reproducibly from ``seed`` inside the block and leave the global random state untouched
    afterwards (so evaluation or logging in the middle of training does not reset its randomness).
    """
    device = torch.device(device or "cpu")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


if TYPE_CHECKING:
    from mixdistill.teachers.base import Teacher


def uniform_grid(steps: int, t_max: float = 1.0, t_min: float = 0.0) -> Tensor:
    """``steps + 1`` equally spaced times from ``t_max`` down to ``t_min``: ``(steps + 1,)``."""
    if steps < 1:
        raise ValueError(f"steps={steps} must be at least 1.")
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ValueError(f"need 0 <= t_min ({t_min}) < t_max ({t_max}) <= 1.")
    return torch.linspace(t_max, t_min, steps + 1, dtype=torch.float64).float()


@torch.no_grad()
def sample_chain(
    model: Teacher,
    num_samples: int,
    steps: int,
    cond: Tensor | None = None,
    device: torch.device | str | None = None,
    grid: Tensor | None = None,
) -> Tensor:
    """Run ``steps`` denoising steps from the prior to ``t = 0``.

    Each step is ``model.step``: a product step for a teacher, a mixture step (one lambda per
    sample, a joint ``x_0``) for a student. The last step goes to ``t = 0``, where the posterior
    is the sampled ``x_0`` itself.

    Args:
        model: Any ``Teacher`` (a ``MixtureStudent`` included).
        num_samples: Number of samples ``B``.
        steps: Number of network calls.
        cond: Class labels ``(B,)`` for conditional models.
        device: Where to sample; defaults to the model's device.
        grid: Custom decreasing times ``(steps + 1,)``; defaults to ``uniform_grid(steps)``.

    Returns:
        Samples ``(B, *model.shape)`` long.
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    grid = uniform_grid(steps) if grid is None else grid
    if grid.dim() != 1 or grid.numel() != steps + 1:
        raise ValueError(f"grid must have steps + 1 = {steps + 1} times; got shape {tuple(grid.shape)}.")
    x = model.process.prior((num_samples, model.num_dims), device=device)
    ones = torch.ones(num_samples, device=device)
    for t, s in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        x = model.step(x, t * ones, s * ones, cond)
    return x.view(num_samples, *model.shape)
