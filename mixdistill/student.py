"""The mixture student: a teacher-shaped network with an extra random input lambda.

``p_theta(x_0 | x_t) = E_{lambda ~ U[0,1]^k} prod_d p_theta^d(x_0^d | x_t, lambda)``. Lambda enters
through a ``LatentInjection``; the built-in one adds a zero-initialised embedding of lambda at a named
layer of the backbone, so a student copied from a teacher computes exactly the teacher's function
until training moves it.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from mixdistill.teachers.base import Teacher


def sinusoidal_embedding(x: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer-style sinusoidal features of ``x`` ``(...)`` -> ``(..., dim)`` (``dim`` even)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    args = x.float().unsqueeze(-1) * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class LatentEmbedding(nn.Module):
    """lambda ``(B, k)`` -> sinusoidal features of ``scale * lambda`` -> MLP -> ``(B, out_dim)``.

    The last layer starts at zero, so the embedding is exactly 0 at initialisation.

    Args:
        out_dim: Width of the vector added to the backbone.
        latent_dim: ``k``, the dimension of lambda (1 in every experiment of the paper).
        freq_dim: Sinusoidal features per lambda coordinate (the paper: 128).
        hidden: MLP width; defaults to ``out_dim``.
        scale: Multiplier of lambda before the sinusoidal features (the paper: 1000).
    """

    def __init__(
        self,
        out_dim: int,
        latent_dim: int = 1,
        freq_dim: int = 128,
        hidden: int | None = None,
        scale: float = 1000.0,
    ) -> None:
        super().__init__()
        hidden = hidden or out_dim
        self.freq_dim, self.scale = freq_dim, scale
        self.mlp = nn.Sequential(
            nn.Linear(latent_dim * freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, out_dim)
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, lam: Tensor) -> Tensor:
        feats = sinusoidal_embedding(self.scale * lam, self.freq_dim)  # (B, k, freq_dim)
        return self.mlp(feats.flatten(1))


class LatentInjection(nn.Module, ABC):
    """Where and how lambda enters a backbone."""

    @abstractmethod
    def attach(self, model: nn.Module, latent_dim: int) -> None:
        """Install the injection into ``model`` (called once, on the student's own copy)."""

    @abstractmethod
    def set_latent(self, lam: Tensor | None) -> None:
        """Use ``lam`` ``(B, k)`` for the next forward passes; ``None`` switches the injection off."""


class AdditiveInjection(LatentInjection):
    """Adds ``LatentEmbedding(lambda)`` to the output of one named submodule via a forward hook.

    Works with any backbone: name its time/conditioning embedding (``(B, H)``) or its token
    embedding (``(B, L, H)``). The output's batch axis must be the first one.

    Args:
        layer: Dotted name of the submodule inside the teacher, e.g. ``"net.time_embed"``.
        width: Size of the output's channel axis; inferred for ``nn.Linear``/``nn.Embedding``.
        channel_dim: Axis of the output that the embedding is added along (``-1``, or ``1`` for
            ``(B, C, H, W)`` feature maps).
        freq_dim: Sinusoidal features per lambda coordinate.
        hidden: MLP width of the embedding; defaults to ``width``.
    """

    def __init__(
        self,
        layer: str,
        width: int | None = None,
        channel_dim: int = -1,
        freq_dim: int = 128,
        hidden: int | None = None,
    ) -> None:
        super().__init__()
        self.layer, self.width, self.channel_dim = layer, width, channel_dim
        self.freq_dim, self.hidden = freq_dim, hidden
        self.embedding: LatentEmbedding | None = None
        self._offset: Tensor | None = None

    def attach(self, model: nn.Module, latent_dim: int) -> None:
        try:
            target = model.get_submodule(self.layer)
        except AttributeError as err:
            names = [n for n, _ in model.named_modules() if n][:20]
            raise ValueError(
                f"AdditiveInjection: layer='{self.layer}' is not a submodule of {type(model).__name__}; "
                f"some available names: {names}"
            ) from err
        width = self.width or getattr(target, "out_features", None) or getattr(target, "embedding_dim", None)
        if width is None:
            raise ValueError(
                f"AdditiveInjection: cannot infer the width of layer='{self.layer}' "
                f"({type(target).__name__}); set width explicitly."
            )
        self.embedding = LatentEmbedding(width, latent_dim, self.freq_dim, self.hidden)
        target.register_forward_hook(self._add)

    def set_latent(self, lam: Tensor | None) -> None:
        self._offset = None if lam is None else self.embedding(lam)  # (B, H)

    def _add(self, module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        if self._offset is None:
            return output
        if output.shape[0] != self._offset.shape[0]:
            raise RuntimeError(
                f"AdditiveInjection: layer '{self.layer}' produced batch {output.shape[0]} but lambda "
                f"has batch {self._offset.shape[0]}; the layer's first axis must be the batch."
            )
        view = [1] * output.dim()
        view[0] = output.shape[0]
        view[self.channel_dim] = output.shape[self.channel_dim]
        return output + self._offset.to(output.dtype).view(view)


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
        super().__init__(base.process, base.shape, base.num_classes)
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

    def consistency_step(
        self,
        x_t: Tensor,
        t: Tensor,
        s: Tensor,
        cond: Tensor | None,
        num_samples: int,
        logits: Tensor | None = None,
    ) -> Tensor:
        """``n`` mixture steps per example, each with its own lambda (``logits`` are not reusable)."""
        rep = x_t.repeat_interleave(num_samples, 0)
        c = None if cond is None else cond.repeat_interleave(num_samples, 0)
        t_rep, s_rep = t.repeat_interleave(num_samples), s.repeat_interleave(num_samples)
        x_s = self.step(rep, t_rep, s_rep, c)
        return x_s.view(x_t.shape[0], num_samples, -1)
