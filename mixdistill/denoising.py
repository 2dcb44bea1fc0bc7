"""Training losses of product (x0-prediction) denoisers, used by TeacherModule."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from mixdistill.processes.masking import MaskingProcess
from mixdistill.teachers.base import Teacher


class DenoisingLoss(ABC):
    """Per-example loss ``(B,)`` of a denoiser on clean data."""

    @abstractmethod
    def __call__(self, model: Teacher, x0: Tensor, cond: Tensor | None) -> Tensor:
        """Loss for ``x0`` ``(B, D)``."""


class CrossEntropyDenoising(DenoisingLoss):
    """``E_t sum_d -log p(x_0^d | x_t)`` with ``t ~ U[t_min, 1]`` (any process).

    Args:
        t_min: Smallest training time.
    """

    def __init__(self, t_min: float = 1e-3) -> None:
        self.t_min = t_min

    def sample_t(self, batch: int, device: torch.device) -> Tensor:
        # Stratified ("low-discrepancy") times lower the variance of the time average.
        u = (torch.arange(batch, device=device) + torch.rand((), device=device)) / batch
        return self.t_min + (1.0 - self.t_min) * u[torch.randperm(batch, device=device)]

    def weight(self, model: Teacher, t: Tensor) -> Tensor:
        """Per-example weight ``(B,)``."""
        return torch.ones_like(t)

    def __call__(self, model: Teacher, x0: Tensor, cond: Tensor | None) -> Tensor:
        t = self.sample_t(x0.shape[0], x0.device)
        x_t = model.process.corrupt(x0, t)
        logp = model.denoise(x_t, t, cond).float().log_softmax(-1)  # (B, D, S)
        nll = -torch.gather(logp, 2, x0.unsqueeze(-1)).squeeze(-1).sum(1)
        return self.weight(model, t) * nll


class MaskedDiffusionELBO(CrossEntropyDenoising):
    """MDLM's continuous-time bound: masked-token cross-entropy weighted by ``-alpha'(t) / (1 - alpha(t))``.

    Unmasked tokens contribute nothing because the denoiser carries them over.
    """

    def weight(self, model: Teacher, t: Tensor) -> Tensor:
        if not isinstance(model.process, MaskingProcess):
            raise TypeError(
                f"MaskedDiffusionELBO needs a MaskingProcess; the model has {type(model.process).__name__}. "
                f"Use CrossEntropyDenoising."
            )
        with torch.enable_grad():
            tt = t.detach().requires_grad_(True)
            alpha = model.process.schedule.alpha(tt)
            (d_alpha,) = torch.autograd.grad(alpha.sum(), tt)
        return (-d_alpha / (1.0 - alpha.detach()).clamp_min(1e-6)).detach()


class ClassDropout(DenoisingLoss):
    """``loss`` with each class label replaced by the "no class" label with probability ``p``.

    One network then learns both the conditional and the unconditional denoiser, which
    classifier-free guidance combines at sampling time (MaskGIT drops 10% of the labels).

    Args:
        loss: The loss computed on the relabelled batch.
        p: Probability that an example's label is dropped.
    """

    def __init__(self, loss: DenoisingLoss, p: float = 0.1) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"ClassDropout: p={p} must lie in [0, 1].")
        self.loss, self.p = loss, p

    def __call__(self, model: Teacher, x0: Tensor, cond: Tensor | None) -> Tensor:
        if cond is None:
            raise ValueError(
                "ClassDropout needs class labels (cond) in the batch; this data serves none. Use the "
                "inner loss alone for unconditional data."
            )
        return self.loss(model, x0, drop_labels(cond, self.p, model.num_classes))


def drop_labels(cond: Tensor, p: float, null: int) -> Tensor:
    """``cond`` ``(B,)`` with each label replaced by ``null`` (the "no class" label) with probability
    ``p``, drawn from the global generator.
    """
    drop = torch.rand(cond.shape, device=cond.device) < p
    return torch.where(drop, torch.full_like(cond, null), cond)
