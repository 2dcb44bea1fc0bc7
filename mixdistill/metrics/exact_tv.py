"""Exact total variation and KL of an N-step sampler to a known distribution (small spaces)."""

from __future__ import annotations

from torch import Tensor

from mixdistill.evaluation.exact import kl_divergence, sampler_distribution, total_variation
from mixdistill.tables import load_table
from mixdistill.teachers.base import Teacher


class ExactDivergence:
    """``TV`` and ``KL(data || model)`` of the exact output distribution of a sampler.

    Args:
        table: Probability table of the data (``.npy``/``.pt``); ``None`` takes the table of an
            ``ExactTeacher`` given at evaluation.
        nodes: Midpoint-quadrature nodes per lambda coordinate for mixture students.
    """

    higher_is_better = False

    def __init__(self, table: str | None = None, nodes: int = 1024) -> None:
        self.table = None if table is None else load_table(table).reshape(-1)
        self.nodes = nodes

    def reference(self, teacher: Teacher) -> Tensor:
        """The data distribution ``(S^D,)``."""
        if self.table is not None:
            return self.table
        table = getattr(teacher, "table", None)
        if table is None:
            raise ValueError(
                f"ExactDivergence: table=None needs an ExactTeacher; the teacher is "
                f"{type(teacher).__name__}. "
                f"Give table= the data's probability table file."
            )
        return table.reshape(-1)

    def __call__(self, model: Teacher, steps: int, teacher: Teacher) -> dict[str, float]:
        """``{"TV": ..., "KL": ...}`` of ``model``'s ``steps``-step sampler."""
        dist = sampler_distribution(model, steps, nodes=self.nodes)
        ref = self.reference(teacher).to(dist.device)
        return {"TV": float(total_variation(dist, ref)), "KL": float(kl_divergence(ref, dist))}
