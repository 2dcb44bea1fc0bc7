"""SDTT's product distillation (Deschenaux & Gulcehre, 2024), the baseline beside Di4C.

The student learns, in one step of ``Delta``, the ``x_0`` distribution that ``k`` teacher steps of
``Delta / k`` reach from the same ``x_t`` (SDTT: ``k = 2``, ``Delta`` doubling every round from
``2/1024``). Per masked dimension, the target is the teacher's ``x_0`` prediction at the step where
that token was unmasked, and its last step's prediction for tokens still masked after the ``k``
steps; the loss is ``KL(target || student)`` averaged over the masked tokens of ``x_t``.

The student is a ``MixtureStudent`` with one random lambda per example. The target does not depend
on lambda, so every component is trained toward the same product denoiser: the loss is minimised by
a student that ignores lambda, which is SDTT's product student, while its sampler (one lambda per
sample) and the ``DistillModule`` plumbing stay unchanged, and the result can start a Di4C round
(the paper's text teacher is an SDTT student). A fixed lambda would leave the other lambdas, which
the sampler draws, untrained.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixdistill.di4c.base import Objective
from mixdistill.student import MixtureStudent
from mixdistill.teachers.base import Teacher


class SDTTObjective(Objective):
    """``mean over masked tokens of KL(teacher's k-step target || student's one-step x_0)``.

    Args:
        step: The student's step ``Delta`` (``k`` teacher steps of ``Delta / k``); SDTT's first
            round: ``2 / 1024``.
        teacher_steps: ``k``, teacher steps per student step (SDTT: 2).
        t_min: Times are drawn as ``t ~ U(t_min, 1)``; steps end at ``max(t - Delta, 0)``.
        reverse: Minimise ``KL(student || target)`` instead (SDTT's ``kl-bwd`` setting).
    """

    def __init__(
        self, step: float = 2.0 / 1024, teacher_steps: int = 2, t_min: float = 0.0, reverse: bool = False
    ) -> None:
        super().__init__()
        if not 0 < step <= 1:
            raise ValueError(f"SDTTObjective: step={step} must lie in (0, 1].")
        if teacher_steps < 1:
            raise ValueError(f"SDTTObjective: teacher_steps={teacher_steps} must be at least 1.")
        if not 0 <= t_min < 1:
            raise ValueError(f"SDTTObjective: t_min={t_min} must lie in [0, 1).")
        self.step, self.teacher_steps, self.t_min, self.reverse = step, teacher_steps, t_min, reverse

    def times(self, t: Tensor) -> Tensor:
        """The teacher's ``k + 1`` times ``(k + 1, B)`` from ``t`` to ``max(t - Delta, 0)``, evenly spaced."""
        u = (t - self.step).clamp_min(0.0)
        frac = torch.linspace(0.0, 1.0, self.teacher_steps + 1, device=t.device, dtype=torch.float64)
        return (t.double() + frac[:, None] * (u.double() - t.double())[None]).to(t.dtype)

    @torch.no_grad()
    def target(self, teacher: Teacher, x_t: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        """Per-dimension target log-probabilities ``(B, D, S)`` float32 from ``k`` teacher steps.

        A token takes the teacher's ``x_0`` prediction of the step that unmasked it; tokens not
        unmasked in the ``k`` steps take the last step's prediction.
        """
        ts = self.times(t)  # (k + 1, B)
        x, done, target = x_t, torch.zeros_like(x_t, dtype=torch.bool), None
        for k in range(self.teacher_steps):
            logits = teacher.sampling_logits(x, ts[k], cond)  # (B, D, S)
            logp = logits.float().log_softmax(-1)
            x_next = teacher.step_from_logits(x, logits, ts[k], ts[k + 1])
            new = (x_next != x) & ~done  # (B, D): unmasked in this step
            target = logp if target is None else torch.where(new.unsqueeze(-1), logp, target)
            x, done = x_next, done | new
        return torch.where(done.unsqueeze(-1), target, logp)  # still masked: the last prediction

    def forward(
        self, teacher: Teacher, student: MixtureStudent, x0: Tensor, cond: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Loss on clean data ``x0`` ``(B, D)``: ``loss`` and ``masked`` (fraction of masked tokens)."""
        mask_id = getattr(teacher.process, "mask_id", None)
        if mask_id is None:
            raise ValueError(
                f"SDTTObjective: needs an absorbing (masking) process; {type(teacher.process).__name__} "
                "has no mask_id. Use Di4CObjective for other processes."
            )
        t = self.t_min + (1.0 - self.t_min) * torch.rand(x0.shape[0], device=x0.device)
        x_t = teacher.process.corrupt(x0, t)
        target = self.target(teacher, x_t, t, cond)  # (B, D, S)
        lam = student.sample_latent(x0.shape[0], device=x0.device)
        logp = student.denoise(x_t, t, cond, lam).float().log_softmax(-1)  # (B, D, S)
        p, q = (logp, target) if self.reverse else (target, logp)
        kl = (p.exp() * (p - q)).sum(-1)  # (B, D)
        masked = x_t == mask_id
        count = masked.sum()
        loss = (kl * masked).sum() / count.clamp_min(1)
        return {"loss": loss, "masked": count.float() / masked.numel()}
