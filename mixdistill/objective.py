"""The Di4C objective: one training loss from a frozen teacher, a mixture student and clean data."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixdistill.categorical import sample_from_logits
from mixdistill.losses import (
    consistency_loss,
    data_loss,
    distillation_loss,
    mixture_log_marginal,
)
from mixdistill.student import MixtureStudent
from mixdistill.teachers.base import Teacher
from mixdistill.times import SDTTTimes, TimeDraw, TimeSampler
from mixdistill.weights import CorrelationWeight, SigmoidWeight


class Di4CObjective(nn.Module):
    """``mean_b [w_distil L_distil + w_consis L_consis + w_data L_data]`` (METHOD.md, section 3).

    The teacher runs once per input: its log-probabilities at ``x_t`` serve the data loss, the
    distillation target (when distilling on ``x_t``) and the ``n`` teacher steps of the
    consistency target. All targets are computed under ``torch.no_grad()``.

    Args:
        times: Time sampling and gating (``TauLDRTimes``, ``MaskGITTimes``, ``SDTTTimes``, ...).
        corr_weight: ``alpha(t)`` of the data loss's correlation part.
        latents: ``n``, lambdas per example (paper: 16, or 32 for MaskGIT).
        control_variates: Use the exact per-dimension KL instead of its sample estimate.
        data_loss: Include the data loss (the paper's "-d" variants).
    """

    def __init__(
        self,
        times: TimeSampler | None = None,
        corr_weight: CorrelationWeight | None = None,
        latents: int = 16,
        control_variates: bool = True,
        data_loss: bool = True,
    ) -> None:
        super().__init__()
        if latents < 1:
            raise ValueError(f"Di4CObjective: latents={latents} must be at least 1.")
        self.times = times if times is not None else SDTTTimes()
        self.corr_weight = corr_weight if corr_weight is not None else SigmoidWeight()
        self.latents, self.control_variates, self.use_data = latents, control_variates, data_loss

    def student_logp(self, student: MixtureStudent, x_t: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        """Student log-probabilities for ``n`` fresh lambdas: ``(B, n, D, S)`` float32."""
        lam = student.sample_latent(x_t.shape[0], self.latents, device=x_t.device)
        return student.denoise_latent(x_t, t, cond, lam).float().log_softmax(-1)

    @torch.no_grad()
    def consistency_targets(
        self,
        teacher: Teacher,
        student: MixtureStudent,
        x_t: Tensor,
        draw: TimeDraw,
        cond: Tensor | None,
        teacher_logp: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """``n`` samples of "teacher ``t -> u``, then student ``u -> 0``" ``(b, n, D)`` and the average
        of those student distributions ``(b, D, S)``.
        """
        n = self.latents
        x_u = teacher.consistency_step(x_t, draw.t, draw.u, cond, n, logits=teacher_logp)  # (b, n, D)
        b = x_u.shape[0]
        rep_cond = None if cond is None else cond.repeat_interleave(n, 0)
        lam = student.sample_latent(b * n, device=x_t.device)
        logits = student.denoise(x_u.flatten(0, 1), draw.u.repeat_interleave(n), rep_cond, lam)
        logp = logits.float().log_softmax(-1).view(b, n, *logits.shape[1:])  # (b, n, D, S)
        return sample_from_logits(logp), mixture_log_marginal(logp)

    def forward(
        self, teacher: Teacher, student: MixtureStudent, x0: Tensor, cond: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Loss on a batch of clean data ``x0`` ``(B, D)``; returns ``loss`` and its parts (means)."""
        draw = self.times.draw(x0.shape[0], x0.device)
        x_t = teacher.process.corrupt(x0, draw.t)
        logp = self.student_logp(student, x_t, draw.t, cond)  # (B, n, D, S)
        log_marginal = mixture_log_marginal(logp)
        with torch.no_grad():
            teacher_logp = teacher.log_marginal(x_t, draw.t, cond)  # (B, D, S)
        distil = self._distillation(teacher, student, x0, cond, draw, logp, teacher_logp)
        consis = self._consistency(teacher, student, x_t, cond, draw, logp, log_marginal, teacher_logp)
        data = torch.zeros_like(distil)
        if self.use_data:
            data = data_loss(
                logp, x0, teacher_logp, self.corr_weight(draw.t), self.control_variates, log_marginal
            )
        parts = {
            "distil": draw.w_distil * distil,
            "consis": draw.w_consis * consis,
            "data": draw.w_data * data,
        }
        # Each logged part is its weighted contribution, so that loss = distil + consis + data.
        out = {name: value.mean() for name, value in parts.items()}
        out["loss"] = out["distil"] + out["consis"] + out["data"]
        return out

    def _distillation(self, teacher, student, x0, cond, draw: TimeDraw, logp, teacher_logp) -> Tensor:
        if draw.distil_t is None:
            return distillation_loss(teacher_logp, logp)
        x_d = teacher.process.corrupt(x0, draw.distil_t)
        with torch.no_grad():
            target = teacher.log_marginal(x_d, draw.distil_t, cond)
        return distillation_loss(target, self.student_logp(student, x_d, draw.distil_t, cond))

    def _consistency(
        self, teacher, student, x_t, cond, draw: TimeDraw, logp, log_marginal, teacher_logp
    ) -> Tensor:
        out = torch.zeros(x_t.shape[0], device=x_t.device)
        sel = draw.w_consis > 0
        if not bool(sel.any()):
            return out
        sub = TimeDraw(draw.t[sel], draw.u[sel], draw.w_distil[sel], draw.w_consis[sel], draw.w_data[sel])
        c = None if cond is None else cond[sel]
        targets, target_lm = self.consistency_targets(teacher, student, x_t[sel], sub, c, teacher_logp[sel])
        out[sel] = consistency_loss(logp[sel], targets, target_lm, self.control_variates, log_marginal[sel])
        return out
