"""Schedules over training: the teacher step (curricula) and multi-round distillation."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L


class TeacherStepSchedule(L.Callback):
    """Moves the objective's teacher step ``Delta`` linearly from ``start`` to ``end`` over ``steps``
    optimizer steps (a curriculum: small, accurate teacher steps first, longer jumps later).

    Works with time samplers that have a ``step`` attribute (``MaskGITTimes``, ``SDTTTimes``).

    Args:
        start: ``Delta`` at step 0.
        end: ``Delta`` from ``steps`` on.
        steps: Length of the ramp.
    """

    def __init__(self, start: float, end: float, steps: int) -> None:
        if steps < 1 or not (0 < start < 1 and 0 < end < 1):
            raise ValueError(
                f"TeacherStepSchedule: need 0 < start ({start}), end ({end}) < 1 and steps ({steps}) >= 1."
            )
        self.start, self.end, self.steps = start, end, steps

    def value(self, step: int) -> float:
        """``Delta`` at optimizer step ``step``."""
        frac = min(step / self.steps, 1.0)
        return self.start + frac * (self.end - self.start)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        times = pl_module.objective.times
        if not hasattr(times, "step"):
            raise ValueError(
                f"TeacherStepSchedule needs a time sampler with a 'step' (MaskGITTimes, SDTTTimes); "
                f"model.objective.times is {type(times).__name__}."
            )

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        pl_module.objective.times.step = self.value(trainer.global_step)


class MultiRoundDistillation(L.Callback):
    """After every ``every_n_steps`` optimizer steps, a frozen copy of the student becomes the teacher
    (Di4C^2 and SDTT rounds), up to ``max_rounds`` promotions.

    Args:
        every_n_steps: Steps per round.
        max_rounds: Number of promotions.
    """

    def __init__(self, every_n_steps: int, max_rounds: int = 1) -> None:
        if every_n_steps < 1 or max_rounds < 1:
            raise ValueError(
                f"MultiRoundDistillation: every_n_steps={every_n_steps}, max_rounds={max_rounds} "
                f"must be >= 1."
            )
        self.every, self.max_rounds = every_n_steps, max_rounds

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step and step % self.every == 0 and pl_module.round < self.max_rounds:
            pl_module.promote_student()
            pl_module.log("round", float(pl_module.round))


class LossWeightSchedule(L.Callback):
    """Moves the global weight of one loss term linearly from ``start`` to ``end`` over ``steps``
    optimizer steps (e.g. ramp the consistency loss in after the distillation loss has settled).

    Args:
        term: ``"distil"``, ``"consis"`` or ``"data"``.
        start: Weight at step 0.
        end: Weight from ``steps`` on.
        steps: Length of the ramp.
    """

    def __init__(
        self, term: Literal["distil", "consis", "data"], start: float, end: float, steps: int
    ) -> None:
        if steps < 1 or start < 0 or end < 0:
            raise ValueError(
                f"LossWeightSchedule: need start ({start}), end ({end}) >= 0 and steps ({steps}) >= 1."
            )
        self.term, self.start, self.end, self.steps = term, start, end, steps

    def value(self, step: int) -> float:
        """The weight at optimizer step ``step``."""
        return self.start + min(step / self.steps, 1.0) * (self.end - self.start)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        pl_module.objective.weights[self.term] = self.value(trainer.global_step)
