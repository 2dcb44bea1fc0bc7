"""The contract of a distillation objective: one training loss from teacher, student and clean data."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from torch import Tensor, nn

if TYPE_CHECKING:
    from mixdistill.student import MixtureStudent
    from mixdistill.teachers.base import Teacher


class Objective(nn.Module, ABC):
    """A loss that ``DistillModule`` minimises over the student's parameters (``Di4CObjective``,
    ``SDTTObjective``, or a new subclass chosen by ``class_path``).
    """

    @abstractmethod
    def forward(
        self, teacher: Teacher, student: MixtureStudent, x0: Tensor, cond: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Loss on clean data ``x0`` ``(B, D)`` (labels ``cond`` ``(B,)``).

        Returns:
            ``{"loss": scalar, ...}``: the loss to minimise and any parts to log (scalars).
        """
