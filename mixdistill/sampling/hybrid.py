"""Hybrid sampling, a baseline beside Di4C: the student for the first ``k`` steps of a chain, the
teacher for the rest (the student's correlated jumps where many tokens change at once, the teacher's
product steps near the data, where one step changes few tokens).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from mixdistill.sampling.loop import CallCount, check_grid, run_steps

if TYPE_CHECKING:  # the sampler needs only the Teacher protocol; importing it would be a cycle
    from mixdistill.teachers.base import Teacher


@torch.no_grad()
def sample_hybrid(
    student: Teacher,
    teacher: Teacher,
    num_samples: int,
    steps: int,
    student_steps: int,
    cond: Tensor | None = None,
    grid: Tensor | None = None,
    calls: CallCount | None = None,
) -> Tensor:
    """``steps`` steps from the prior to ``t = 0``: the first ``student_steps`` by ``student``, the
    rest by ``teacher``, on one grid (the teacher's step rule's) with chain-wide step contexts.

    ``student_steps = steps`` is exactly ``student.sample`` and ``0`` exactly ``teacher.sample``
    (same random stream).

    Args:
        student: The model of the first steps (a ``MixtureStudent``).
        teacher: The model of the last steps.
        num_samples: Number of samples ``B``.
        steps: Number of steps of the chain.
        student_steps: ``k`` in ``[0, steps]``.
        cond: Class labels ``(B,)`` for conditional models.
        grid: Custom decreasing times ``(steps + 1,)``; defaults to ``teacher.step_rule.grid(steps)``.
        calls: Counter of network rows computed and reused, updated in place.

    Returns:
        Samples ``(B, *teacher.shape)`` long.
    """
    if not 0 <= student_steps <= steps:
        raise ValueError(f"sample_hybrid: student_steps={student_steps} must lie in [0, steps={steps}].")
    grid = teacher.step_rule.grid(steps) if grid is None else grid
    check_grid(grid, steps)
    first = student if student_steps > 0 else teacher  # the model that starts the chain
    device = next((p.device for p in first.parameters()), torch.device("cpu"))
    x = teacher.process.prior((num_samples, teacher.num_dims), device=device)
    k = student_steps
    if k > 0:
        x = run_steps(student, x, grid[: k + 1], cond, 0, steps, calls)
    if k < steps:
        x = run_steps(teacher, x, grid[k:], cond, k, steps, calls)
    return x.view(num_samples, *teacher.shape)


class HybridSampler(nn.Module):
    """A sampler object for evaluation rows: ``sample(n, steps)`` runs ``sample_hybrid`` with the
    student for the first ``student_steps`` steps. It holds (does not copy) both models.

    Args:
        student: The model of the first steps.
        teacher: The model of the last steps; its process and shape are the sampler's.
        student_steps: ``k``, at most the ``steps`` of each ``sample`` call.
    """

    def __init__(self, student: Teacher, teacher: Teacher, student_steps: int) -> None:
        super().__init__()
        if student_steps < 0:
            raise ValueError(f"HybridSampler: student_steps={student_steps} must be >= 0.")
        self.student, self.teacher, self.student_steps = student, teacher, student_steps

    @property
    def process(self):  # noqa: D102 - the teacher's
        return self.teacher.process

    @property
    def shape(self) -> tuple[int, ...]:  # noqa: D102 - the teacher's
        return self.teacher.shape

    @property
    def num_dims(self) -> int:  # noqa: D102 - the teacher's
        return self.teacher.num_dims

    def step_models(self, steps: int) -> list[Teacher]:
        """The model of each of ``steps`` steps: ``student_steps`` students, then teachers."""
        if self.student_steps > steps:
            raise ValueError(f"HybridSampler: student_steps={self.student_steps} exceeds steps={steps}.")
        return [self.student] * self.student_steps + [self.teacher] * (steps - self.student_steps)

    def sample(
        self, num_samples: int, steps: int, cond: Tensor | None = None, grid: Tensor | None = None
    ) -> Tensor:
        """``num_samples`` samples ``(B, *shape)`` of the ``steps``-step hybrid chain."""
        return sample_hybrid(self.student, self.teacher, num_samples, steps, self.student_steps, cond, grid)
