"""The mixture student: a teacher-shaped network with an extra random input lambda.

``p_theta(x_0 | x_t) = E_{lambda ~ U[0,1]^k} prod_d p_theta^d(x_0^d | x_t, lambda)``. Lambda enters
through a ``LatentInjection``; the built-in one adds a zero-initialised embedding of lambda at a named
layer of the backbone, so a student copied from a teacher computes exactly the teacher's function
until training moves it.
"""

from __future__ import annotations

import copy
import math
from functools import partial

import torch
from torch import Tensor

from mixdistill.injection.base import LatentInjection
from mixdistill.sampling.step_rule import StepContext
from mixdistill.teachers.base import Teacher


class MixtureStudent(Teacher):
    """A mixture of product denoisers indexed by ``lambda ~ U[0,1]^k``.

    It satisfies the Teacher contract (``denoise`` draws lambda when none is given, and ``step``
    then samples a joint, correlated ``x_0``), so a trained student can sit in the teacher's seat
    for another round of distillation.

    Args:
        base: The backbone denoiser (usually a copy of the teacher; see ``from_teacher``).
        injection: How lambda enters ``base``.
        latent_dim: ``k``, the dimension of lambda.
        marginal_latents: Number of lambdas averaged when the student acts as a teacher.
    """

    def __init__(
        self,
        base: Teacher,
        injection: LatentInjection,
        latent_dim: int = 1,
        marginal_latents: int = 16,
    ) -> None:
        super().__init__(base.process, base.shape, base.num_classes, base.step_rule, base.guidance)
        if latent_dim < 1:
            raise ValueError(f"MixtureStudent: latent_dim={latent_dim} must be at least 1.")
        self.base, self.injection = base, injection
        self.latent_dim, self.marginal_latents = latent_dim, marginal_latents
        injection.attach(base, latent_dim)

    @classmethod
    def from_teacher(
        cls,
        teacher: Teacher,
        injection: LatentInjection,
        latent_dim: int = 1,
        marginal_latents: int = 16,
    ) -> MixtureStudent:
        """A trainable student initialised from (a deep copy of) the teacher's weights."""
        base = copy.deepcopy(teacher).unfreeze().train()
        return cls(base, injection, latent_dim, marginal_latents)

    def sample_latent(self, *batch_shape: int, device: torch.device | None = None) -> Tensor:
        """Draw ``lambda ~ U[0,1]^k``: ``(*batch_shape, k)``."""
        return torch.rand(*batch_shape, self.latent_dim, device=device)

    def network_logits(
        self, x_t: Tensor, t: Tensor, cond: Tensor | None = None, lam: Tensor | None = None
    ) -> Tensor:
        if lam is None:
            lam = self.sample_latent(x_t.shape[0], device=x_t.device)
        self.injection.set_latent(lam)
        try:
            return self.base.network_logits(x_t, t, cond)
        finally:
            self.injection.set_latent(None)

    def denoise(
        self, x_t: Tensor, t: Tensor, cond: Tensor | None = None, lam: Tensor | None = None
    ) -> Tensor:
        """Logits ``(B, D, S)`` of the product component for ``lam`` ``(B, k)`` (random if None)."""
        return self.process.constrain_logits(self.network_logits(x_t, t, cond, lam), x_t)

    def denoise_latent(self, x_t: Tensor, t: Tensor, cond: Tensor | None, lam: Tensor) -> Tensor:
        """Logits ``(B, n, D, S)`` for a latent batch ``lam`` ``(B, n, k)`` in one network call."""
        B, n = lam.shape[:2]
        rep = x_t.repeat_interleave(n, 0)  # (B n, D)
        c = None if cond is None else cond.repeat_interleave(n, 0)
        logits = self.denoise(rep, t.repeat_interleave(n, 0), c, lam.reshape(B * n, -1))
        return logits.view(B, n, *logits.shape[1:])

    def log_marginal(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Mixture marginal ``log pbar^d`` ``(B, D, S)`` over ``marginal_latents`` lambdas."""
        lam = self.sample_latent(x_t.shape[0], self.marginal_latents, device=x_t.device)
        logp = self.denoise_latent(x_t, t, cond, lam).float().log_softmax(-1)
        return torch.logsumexp(logp, 1) - math.log(self.marginal_latents)

    @property
    def marginal_drives_step(self) -> bool:
        # A mixture step samples one lambda and a joint x_0; the averaged marginal cannot drive it.
        return False

    def sampling_logits(
        self, x_t: Tensor, t: Tensor, cond: Tensor | None = None, context: StepContext | None = None
    ) -> Tensor:
        """Logits ``(B, D, S)`` of one product component per example (one lambda each), guided with
        the same lambda in the conditional and unconditional pass.
        """
        lam = self.sample_latent(x_t.shape[0], device=x_t.device)
        return self._guided(partial(self.denoise, lam=lam), x_t, t, cond, context)

    def consistency_step(
        self,
        x_t: Tensor,
        t: Tensor,
        s: Tensor,
        cond: Tensor | None,
        num_samples: int,
        logits: Tensor | None = None,
    ) -> Tensor:
        """``n`` mixture steps per example, each with its own lambda: ``(B, n, D)``."""
        if logits is not None:
            raise ValueError(
                "MixtureStudent.consistency_step: logits cannot be reused for a mixture step (each of the "
                "n steps draws its own lambda); call it without logits."
            )
        rep = x_t.repeat_interleave(num_samples, 0)
        c = None if cond is None else cond.repeat_interleave(num_samples, 0)
        t_rep, s_rep = t.repeat_interleave(num_samples), s.repeat_interleave(num_samples)
        x_s = self.step(rep, t_rep, s_rep, c)
        return x_s.view(x_t.shape[0], num_samples, -1)
