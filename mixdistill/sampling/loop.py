"""The sampling loop shared by teachers and students."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from mixdistill.sampling.step_rule import StepContext

if TYPE_CHECKING:  # the sampler needs only the Teacher protocol; importing it would be a cycle
    from mixdistill.teachers.base import Teacher


@dataclass
class CallCount:
    """Network rows computed and rows a caching step rule reused, summed over a chain."""

    computed: int = 0
    reused: int = 0


@torch.no_grad()
def sample_chain(
    model: Teacher,
    num_samples: int,
    steps: int,
    cond: Tensor | None = None,
    device: torch.device | str | None = None,
    grid: Tensor | None = None,
    calls: CallCount | None = None,
) -> Tensor:
    """Run ``steps`` denoising steps from the prior to ``t = 0``.

    Each step computes ``model.sampling_logits`` (a product denoiser for a teacher; one lambda per
    sample for a student, so its ``x_0`` is joint and correlated) and applies ``model.step_rule``.
    Where the rule allows it (``reuses_unchanged_logits``), rows whose state did not change since
    their last network call reuse those logits. The last step goes to ``t = 0``.

    Args:
        model: Any ``Teacher`` (a ``MixtureStudent`` included).
        num_samples: Number of samples ``B``.
        steps: Number of steps.
        cond: Class labels ``(B,)`` for conditional models.
        device: Where to sample; defaults to the model's device.
        grid: Custom decreasing times ``(steps + 1,)``; defaults to ``model.step_rule.grid(steps)``
            (uniform unless the rule says otherwise).
        calls: Counter of network rows computed and reused, updated in place.

    Returns:
        Samples ``(B, *model.shape)`` long.
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    grid = model.step_rule.grid(steps) if grid is None else grid
    check_grid(grid, steps)
    x = model.process.prior((num_samples, model.num_dims), device=device)
    return run_steps(model, x, grid, cond, calls=calls).view(num_samples, *model.shape)


def check_grid(grid: Tensor, steps: int) -> None:
    """Raise unless ``grid`` holds ``steps + 1`` strictly decreasing times."""
    if grid.dim() != 1 or grid.numel() != steps + 1:
        raise ValueError(f"grid must have steps + 1 = {steps + 1} times; got shape {tuple(grid.shape)}.")
    if bool((grid[1:] >= grid[:-1]).any()):
        raise ValueError(f"grid must decrease strictly from noise to data; got {grid.tolist()}.")


@torch.no_grad()
def run_steps(
    model: Teacher,
    x: Tensor,
    grid: Tensor,
    cond: Tensor | None = None,
    first: int = 0,
    total: int | None = None,
    calls: CallCount | None = None,
) -> Tensor:
    """The steps ``grid[0] -> grid[1] -> ...`` of a chain from the states ``x`` ``(B, D)``: ``(B, D)``.

    Args:
        model: Any ``Teacher``.
        x: States at ``grid[0]``.
        grid: Decreasing times of these steps (a slice of the chain's grid).
        cond: Class labels ``(B,)`` for conditional models.
        first: Index of the first of these steps in the whole chain (for ``StepContext``).
        total: Number of steps of the whole chain; defaults to ``first + len(grid) - 1``.
        calls: Counter of network rows computed and reused, updated in place.
    """
    calls = calls if calls is not None else CallCount()
    total = first + grid.numel() - 1 if total is None else total
    ones = torch.ones(x.shape[0], device=x.device)
    reuse = model.step_rule.reuses_unchanged_logits
    logits, seen = None, None
    for i, (t, s) in enumerate(zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True)):
        ctx = StepContext(first + i, total)
        if reuse and logits is not None:
            logits = _refresh(model, logits, x, seen, t * ones, cond, ctx, calls)
        else:
            logits = model.sampling_logits(x, t * ones, cond, ctx)
            calls.computed += x.shape[0]
        seen = x
        x = model.step_from_logits(x, logits, t * ones, s * ones, context=ctx)
    return x


def _refresh(
    model, logits: Tensor, x: Tensor, seen: Tensor, t: Tensor, cond, ctx, calls: CallCount
) -> Tensor:
    """Logits ``(B, D, S)`` recomputed only for the rows of ``x`` that differ from ``seen``."""
    changed = (x != seen).any(1)  # (B,)
    n = int(changed.sum())
    calls.computed, calls.reused = calls.computed + n, calls.reused + x.shape[0] - n
    if n == 0:
        return logits
    if n == x.shape[0]:  # every row changed: a plain call, no gather and scatter of the rows
        return model.sampling_logits(x, t, cond, ctx)
    c = None if cond is None else cond[changed]
    # In place: the previous step's logits are referenced by this loop only.
    logits[changed] = model.sampling_logits(x[changed], t[changed], c, ctx).to(logits.dtype)
    return logits
