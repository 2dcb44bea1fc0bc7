"""The Teacher contract: a frozen x0-prediction denoiser with its forward process."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

from torch import Tensor, nn

from mixdistill.categorical import sample_from_logits
from mixdistill.processes.base import ForwardProcess


class Teacher(nn.Module, ABC):
    """A model ``p(x_0^d | x_t)`` over data of a fixed shape, with the sampler built on it.

    Subclass it to plug in a model: implement ``network_logits`` (about 30 lines with a loader).
    Frozen teachers (``freeze()``) stay in eval mode even inside a training loop.

    Tensors handed to ``denoise`` are flattened: ``x_t`` is ``(B, D)`` with ``D = prod(shape)``;
    subclasses reshape as their network needs. Logits are ``(B, D, S)`` over the data values.

    Args:
        process: The forward process the model denoises.
        shape: Shape of one data example, e.g. ``(8, 8)`` for an image or ``(L,)`` for text.
        num_classes: Number of class labels accepted as ``cond``; 0 for unconditional models.
    """

    def __init__(self, process: ForwardProcess, shape: tuple[int, ...], num_classes: int = 0) -> None:
        super().__init__()
        if not shape or any(int(n) < 1 for n in shape):
            raise ValueError(f"{type(self).__name__}: shape={shape} must be a non-empty tuple of sizes >= 1.")
        self.process = process
        self.shape = tuple(int(n) for n in shape)
        self.num_classes = num_classes
        self.frozen = False

    def freeze(self) -> Teacher:
        """Stop gradients to all parameters and pin eval mode; returns ``self``."""
        self.frozen = True
        self.requires_grad_(False)
        return super().train(False)

    def unfreeze(self) -> Teacher:
        """Undo ``freeze`` (used when a copy of a teacher becomes a trainable student)."""
        self.frozen = False
        return self.requires_grad_(True)

    def train(self, mode: bool = True) -> Teacher:
        # A frozen teacher must behave as at inference (dropout off) even inside a training loop.
        return super().train(mode and not self.frozen)

    @property
    def vocab_size(self) -> int:
        """Number of data values ``S``."""
        return self.process.vocab_size

    @property
    def num_dims(self) -> int:
        """Number of dimensions ``D`` of one flattened example."""
        return math.prod(self.shape)

    @abstractmethod
    def network_logits(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Raw network output ``(B, D, S)`` for ``x_t`` ``(B, D)`` at times ``t`` ``(B,)``."""

    def denoise(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Logits of ``p(x_0^d | x_t)`` ``(B, D, S)``, constrained to values consistent with ``x_t``."""
        return self.process.constrain_logits(self.network_logits(x_t, t, cond), x_t)

    def log_marginal(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """Per-dimension log-probabilities ``(B, D, S)`` in float32."""
        return self.denoise(x_t, t, cond).float().log_softmax(-1)

    def step_from_logits(
        self, x_t: Tensor, logits: Tensor, t: Tensor, s: Tensor, num_samples: int | None = None
    ) -> Tensor:
        """Product step ``t -> s`` from already computed logits: x0 per dimension, then posterior.

        Args:
            x_t: Current state ``(B, D)``.
            logits: Denoiser logits at ``x_t`` ``(B, D, S)``.
            t: Current times ``(B,)``.
            s: Target times ``(B,)``.
            num_samples: ``None`` for one next state ``(B, D)``; else ``n`` independent next states
                ``(B, n, D)`` drawn from the same logits without recomputing them.
        """
        n = 1 if num_samples is None else num_samples
        x0 = sample_from_logits(logits, n).permute(0, 2, 1)  # (B, n, D)
        rep = x_t.unsqueeze(1).expand_as(x0).reshape(-1, x_t.shape[1])
        x_s = self.process.posterior_sample(
            rep, x0.reshape_as(rep), t.repeat_interleave(n), s.repeat_interleave(n)
        )
        x_s = x_s.view(x_t.shape[0], n, -1)
        return x_s[:, 0] if num_samples is None else x_s

    def consistency_step(
        self,
        x_t: Tensor,
        t: Tensor,
        s: Tensor,
        cond: Tensor | None,
        num_samples: int,
        logits: Tensor | None = None,
    ) -> Tensor:
        """``num_samples`` independent teacher steps ``t -> s`` per example: ``(B, n, D)``.

        ``logits`` (``(B, D, S)``), when the caller already has them at ``x_t``, avoid a second
        network call; subclasses whose step is not a product step override this.
        """
        if logits is None:
            logits = self.denoise(x_t, t, cond)
        return self.step_from_logits(x_t, logits, t, s, num_samples)

    def step(self, x_t: Tensor, t: Tensor, s: Tensor, cond: Tensor | None = None) -> Tensor:
        """One sampling step ``t -> s``: ``(B, D)``."""
        return self.step_from_logits(x_t, self.denoise(x_t, t, cond), t, s)

    def sample(
        self, num_samples: int, steps: int, cond: Tensor | None = None, grid: Tensor | None = None
    ) -> Tensor:
        """Draw ``num_samples`` samples ``(B, *shape)`` with ``steps`` steps (see ``sample_chain``)."""
        from mixdistill.sampling import sample_chain

        return sample_chain(self, num_samples, steps, cond, grid=grid)
