"""The Di4C objective: one training loss from a frozen teacher, a mixture student and clean data."""

from __future__ import annotations

import torch
from torch import Tensor

from mixdistill.denoising import drop_labels
from mixdistill.di4c.base import Objective
from mixdistill.di4c.chunks import TILE_ELEMENTS
from mixdistill.di4c.fused_losses import di4c_loss_terms
from mixdistill.di4c.latent_draws import IndependentDraw, LatentDraw
from mixdistill.di4c.targets import ConsistencyTarget, StudentAtU
from mixdistill.di4c.times import SDTTTimes, TimeDraw, TimeSampler
from mixdistill.di4c.weights import CorrelationWeight, SigmoidWeight
from mixdistill.student import MixtureStudent
from mixdistill.teachers.base import Teacher


class Di4CObjective(Objective):
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
        weights: Global multipliers of the three terms, ``{"distil": 1, "consis": 1, "data": 1}`` by
            default; ``LossWeightSchedule`` changes them during training.
        label_dropout: Probability that an example's class label becomes the "no class" label for
            the teacher and the student alike. A student sampled with classifier-free guidance needs
            it: otherwise its unconditional predictions are never distilled and drift with the
            shared weights, and guidance amplifies the drift (MaskGIT's teachers drop 10%).
        tile_elements: Size limit of the float32 working copies of the ``(B, n, D, S)`` logits: the
            losses and the consistency targets work on tiles of the sequence of at most this many
            elements (default 2^26, 256 MB), so bf16 logits are never copied whole to float32.
            ``null``: no tiling. Tiling changes only the order of float sums over the sequence.
        latent_draw: How the ``n`` lambdas of an example are drawn for the student's mixture
            estimate: ``IndependentDraw`` (the paper's, the default) or ``StratifiedDraw`` (one
            lambda in each ``1/n`` slice: lower variance, ``n`` components scored exactly).
        target: Where the consistency target's ``n`` joint samples come from: ``StudentAtU`` (the
            paper's "teacher step ``t -> u``, then the student", the default) or
            ``TeacherRollout`` (a chain of several teacher steps from ``t`` to data).
    """

    def __init__(
        self,
        times: TimeSampler | None = None,
        corr_weight: CorrelationWeight | None = None,
        latents: int = 16,
        control_variates: bool = True,
        data_loss: bool = True,
        weights: dict[str, float] | None = None,
        label_dropout: float = 0.0,
        tile_elements: int | None = TILE_ELEMENTS,
        latent_draw: LatentDraw | None = None,
        target: ConsistencyTarget | None = None,
    ) -> None:
        super().__init__()
        if tile_elements is not None and tile_elements < 1:
            raise ValueError(
                f"Di4CObjective: tile_elements={tile_elements} must be at least 1, or null for no tiling."
            )
        self.tile_elements = tile_elements
        self.latent_draw = latent_draw if latent_draw is not None else IndependentDraw()
        self.target = target if target is not None else StudentAtU()
        if latents < 1:
            raise ValueError(f"Di4CObjective: latents={latents} must be at least 1.")
        if not 0.0 <= label_dropout < 1.0:
            raise ValueError(f"Di4CObjective: label_dropout={label_dropout} must lie in [0, 1).")
        self.label_dropout = label_dropout
        self.times = times if times is not None else SDTTTimes()
        self.corr_weight = corr_weight if corr_weight is not None else SigmoidWeight()
        self.latents, self.control_variates, self.use_data = latents, control_variates, data_loss
        self.weights = {"distil": 1.0, "consis": 1.0, "data": 1.0}
        unknown = set(weights or {}) - set(self.weights)
        if unknown:
            raise ValueError(
                f"Di4CObjective: weights has unknown terms {sorted(unknown)}; use distil, consis, data."
            )
        self.weights.update(weights or {})

    def student_logits(self, student: MixtureStudent, x_t: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        """Student logits for ``n`` fresh lambdas: ``(B, n, D, S)`` in the network's dtype (bf16 under
        bf16 autocast: the losses cast tiles of it to float32).
        """
        lam = self.latent_draw(x_t.shape[0], self.latents, student.latent_dim, device=x_t.device)
        return student.denoise_latent(x_t, t, cond, lam)

    def forward(
        self, teacher: Teacher, student: MixtureStudent, x0: Tensor, cond: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Loss on a batch of clean data ``x0`` ``(B, D)``; returns ``loss`` and its parts (means)."""
        if self.label_dropout > 0:
            if cond is None:
                raise ValueError(
                    f"Di4CObjective: label_dropout={self.label_dropout} needs class labels (cond) in the "
                    "batch; this data serves none. Set label_dropout: 0 for unconditional data."
                )
            cond = drop_labels(cond, self.label_dropout, teacher.num_classes)
        draw = self.times.draw(x0.shape[0], x0.device)
        x_t = teacher.process.corrupt(x0, draw.t)
        logits = self.student_logits(student, x_t, draw.t, cond)  # (B, n, D, S)
        with torch.no_grad():
            teacher_logp = teacher.log_marginal(x_t, draw.t, cond)  # (B, D, S)
        distil_apart = None if draw.distil_t is None else self._distillation(teacher, student, x0, cond, draw)
        targets, target_lm, rows = self._consistency_targets(teacher, student, x_t, cond, draw, teacher_logp)
        # All three losses on x_t in one pass over the logits (see losses.di4c_loss_terms).
        distil, consis, data = di4c_loss_terms(
            logits,
            teacher_logp,
            x0 if self.use_data else None,
            self.corr_weight(draw.t),
            targets,
            target_lm,
            rows,
            distil=distil_apart is None,
            control_variate=self.control_variates,
            tile_elements=self.tile_elements,
        )
        if distil_apart is not None:
            distil = distil_apart
        w = self.weights
        parts = {
            "distil": w["distil"] * draw.w_distil * distil,
            "consis": w["consis"] * draw.w_consis * consis,
            "data": w["data"] * draw.w_data * data,
        }
        # Each logged part is its weighted contribution, so that loss = distil + consis + data.
        out = {name: value.mean() for name, value in parts.items()}
        out["loss"] = out["distil"] + out["consis"] + out["data"]
        return out

    def _distillation(self, teacher, student, x0, cond, draw: TimeDraw) -> Tensor:
        """Distillation on its own ``x_delta`` at ``draw.distil_t`` (tau-LDR): ``(B,)``."""
        x_d = teacher.process.corrupt(x0, draw.distil_t)
        with torch.no_grad():
            target = teacher.log_marginal(x_d, draw.distil_t, cond)
        logits = self.student_logits(student, x_d, draw.distil_t, cond)
        return di4c_loss_terms(logits, target, distil=True, tile_elements=self.tile_elements)[0]

    def _consistency_targets(
        self, teacher, student, x_t, cond, draw: TimeDraw, teacher_logp
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """Targets and their marginal for the examples with consistency weight, and their indices."""
        sel = draw.w_consis > 0
        if not bool(sel.any()):
            return None, None, None
        rows = sel.nonzero().squeeze(1)
        sub = TimeDraw(draw.t[sel], draw.u[sel], draw.w_distil[sel], draw.w_consis[sel], draw.w_data[sel])
        c = None if cond is None else cond[sel]
        targets, target_lm = self.target(
            teacher, student, x_t[sel], sub, c, teacher_logp[sel], self.latents, self.tile_elements
        )
        return targets, target_lm, rows
