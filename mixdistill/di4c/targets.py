"""Where the consistency target's joint samples come from.

The consistency loss scores ``n`` joint samples ``x_0^(i)`` of "the jump from ``x_t``" under the
student's mixture at ``x_t`` and matches the mixture's marginal to the average of the ``n``
distributions they were drawn from (METHOD.md, section 3). Di4C draws them as "one teacher step
``t -> u``, then the student at ``u``" (``StudentAtU``): the student's own correlations at ``u``
carry the target, so the correlations the teacher reveals in one short step propagate to earlier
times only through many rounds of training. ``TeacherRollout`` draws them from the teacher's own
chain of several steps from ``t`` to data instead: each target is a sample of the many-step
teacher, whose correlations the student then has to produce in one jump.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from mixdistill.di4c.losses import tiled_log_marginal
from mixdistill.di4c.times import TimeDraw
from mixdistill.sampling.categorical import sample_from_logits
from mixdistill.student import MixtureStudent
from mixdistill.teachers.base import Teacher


class ConsistencyTarget(ABC):
    """Draws the consistency target of a batch: ``n`` joint samples and their average marginal."""

    @abstractmethod
    def __call__(
        self,
        teacher: Teacher,
        student: MixtureStudent,
        x_t: Tensor,
        draw: TimeDraw,
        cond: Tensor | None,
        teacher_logp: Tensor,
        n: int,
        tile_elements: int | None,
    ) -> tuple[Tensor, Tensor]:
        """Targets ``(b, n, D)`` long and the log of their average distribution ``(b, D, S)``.

        Args:
            teacher: The frozen teacher.
            student: The student being trained (its predictions are targets only without gradient).
            x_t: States ``(b, D)`` at ``draw.t``.
            draw: Times of these examples (``u`` is the teacher step's end).
            cond: Class labels ``(b,)`` or None.
            teacher_logp: The teacher's log-marginal at ``x_t`` ``(b, D, S)``, reused for its first
                step where ``teacher.marginal_drives_step`` allows.
            n: Number of joint samples per example.
            tile_elements: Size limit of the float32 tiles of the marginal.
        """


def _draw_from(logits: Tensor, states: Tensor, teacher: Teacher, tile_elements: int | None):
    """Joint samples ``(b, n, D)`` from ``logits`` ``(b, n, D, S)`` at ``states`` ``(b, n, D)``, and
    the log of the average of those ``n`` distributions ``(b, D, S)``.
    """
    free = teacher.process.random_positions(states)  # (b, n, D): None when every position is random
    # Only the random positions are drawn (the rest are pinned to the states), from the same uniforms.
    targets = sample_from_logits(logits, where=free, otherwise=None if free is None else states)
    return targets, tiled_log_marginal(logits, tile_elements)


class StudentAtU(ConsistencyTarget):
    """Di4C's target: ``n`` teacher steps ``t -> u``, then the student at each ``x_u`` with its own
    lambda (in eval mode: a prediction without dropout noise).
    """

    @torch.no_grad()
    def __call__(self, teacher, student, x_t, draw, cond, teacher_logp, n, tile_elements):
        reuse = teacher_logp if teacher.marginal_drives_step else None
        x_u = teacher.consistency_step(x_t, draw.t, draw.u, cond, n, logits=reuse)  # (b, n, D)
        b = x_u.shape[0]
        rep_cond = None if cond is None else cond.repeat_interleave(n, 0)
        lam = student.sample_latent(b * n, device=x_t.device)
        was_training = student.training
        student.eval()
        try:
            logits = student.denoise(x_u.flatten(0, 1), draw.u.repeat_interleave(n), rep_cond, lam)
        finally:
            student.train(was_training)
        logits = logits.view(b, n, *logits.shape[1:])  # (b, n, D, S), the network's dtype
        return _draw_from(logits, x_u, teacher, tile_elements)


class TeacherRollout(ConsistencyTarget):
    """``n`` chains of the teacher's consistency step from ``t`` to data in ``steps`` equal steps of
    time: the first ``steps - 1`` steps move the states, and the last one draws ``x_0`` from the
    teacher's ``consistency_logits`` at the final state (the product step to ``t = 0``). ``draw.u``
    is not used.

    The student at ``x_t`` then learns the joint of a ``steps``-step teacher in one jump, without
    waiting for its own predictions at later times to become correlated. It costs ``steps - 1``
    teacher calls on ``b * n`` rows per batch, instead of one student call.

    Args:
        steps: Teacher steps per chain (1: a single product step, which has no correlations).
    """

    def __init__(self, steps: int = 8) -> None:
        if steps < 1:
            raise ValueError(f"TeacherRollout: steps={steps} must be at least 1.")
        self.steps = steps

    @torch.no_grad()
    def __call__(self, teacher, student, x_t, draw, cond, teacher_logp, n, tile_elements):
        b, t = x_t.shape[0], draw.t
        rep_cond = None if cond is None else cond.repeat_interleave(n, 0)
        states = x_t.unsqueeze(1).expand(b, n, x_t.shape[1])  # (b, n, D)
        logits = teacher_logp.unsqueeze(1).expand(b, n, *teacher_logp.shape[1:])  # (b, n, D, S)
        if self.steps > 1:
            reuse = teacher_logp if teacher.marginal_drives_step else None
            first = t * (1 - 1 / self.steps)
            states = teacher.consistency_step(x_t, t, first, cond, n, logits=reuse).flatten(0, 1)
            rep_t = t.repeat_interleave(n)  # (b * n,)
            for k in range(1, self.steps - 1):
                now, nxt = rep_t * (1 - k / self.steps), rep_t * (1 - (k + 1) / self.steps)
                states = teacher.consistency_step(states, now, nxt, rep_cond, 1)[:, 0]
            last = rep_t / self.steps
            logits = teacher.consistency_logits(states, last, rep_cond).view(b, n, -1, teacher.vocab_size)
            states = states.view(b, n, -1)
        return _draw_from(logits, states, teacher, tile_elements)
