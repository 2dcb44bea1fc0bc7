"""The Teacher contract: a frozen x0-prediction denoiser with its forward process."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from mixdistill.processes.base import ForwardProcess
from mixdistill.sampling.guidance import ClassifierFreeGuidance
from mixdistill.sampling.loop import sample_chain
from mixdistill.sampling.step_rule import AncestralStep, StepContext, StepRule


class Teacher(nn.Module, ABC):
    """A model ``p(x_0^d | x_t)`` over data of a fixed shape, with the sampler built on it.

    Subclass it to plug in a model: implement ``network_logits`` (about 30 lines with a loader).
    Frozen teachers (``freeze()``) stay in eval mode even inside a training loop.

    Tensors handed to ``denoise`` are flattened: ``x_t`` is ``(B, D)`` with ``D = prod(shape)``;
    subclasses reshape as their network needs. Logits are ``(B, D, S)`` over the data values.

    Args:
        process: The forward process the model denoises.
        shape: Shape of one data example, e.g. ``(8, 8)`` for an image or ``(L,)`` for text.
        num_classes: Number of class labels accepted as ``cond``; 0 for unconditional models. Label
            ``num_classes`` is the "no class" label of classifier-free guidance.
        step_rule: How a sampling step (and the Di4C consistency target) turns logits into the next
            state; the ancestral product step by default.
        guidance: Classifier-free guidance of the sampler (conditional models only).
    """

    def __init__(
        self,
        process: ForwardProcess,
        shape: tuple[int, ...],
        num_classes: int = 0,
        step_rule: StepRule | None = None,
        guidance: ClassifierFreeGuidance | None = None,
    ) -> None:
        super().__init__()
        if not shape or any(int(n) < 1 for n in shape):
            raise ValueError(f"{type(self).__name__}: shape={shape} must be a non-empty tuple of sizes >= 1.")
        self.process = process
        self.shape = tuple(int(n) for n in shape)
        self.num_classes = num_classes
        if guidance is not None and num_classes < 1:
            raise ValueError(
                f"{type(self).__name__}: guidance needs a conditional model, but num_classes={num_classes}."
            )
        self.step_rule = step_rule if step_rule is not None else AncestralStep()
        self.guidance = guidance
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

    @property
    def marginal_drives_step(self) -> bool:
        """Whether ``consistency_step`` may reuse the logits of ``log_marginal`` (a product teacher
        without guidance: its step input is exactly its per-dimension marginal).
        """
        return self.guidance is None

    def sampling_logits(
        self, x_t: Tensor, t: Tensor, cond: Tensor | None = None, context: StepContext | None = None
    ) -> Tensor:
        """The logits a sampling step uses ``(B, D, S)``: ``denoise``, guided when ``guidance`` is set."""
        return self._guided(self.denoise, x_t, t, cond, context)

    def _guided(self, denoise, x_t: Tensor, t: Tensor, cond: Tensor | None, context) -> Tensor:
        logits = denoise(x_t, t, cond)
        if self.guidance is None or cond is None:
            return logits
        null = torch.full_like(cond, self.num_classes)  # the "no class" label
        return self.guidance.combine(logits, denoise(x_t, t, null), context)

    def step_from_logits(
        self,
        x_t: Tensor,
        logits: Tensor,
        t: Tensor,
        s: Tensor,
        num_samples: int | None = None,
        context: StepContext | None = None,
    ) -> Tensor:
        """One step ``t -> s`` of ``step_rule`` from already computed logits ``(B, D, S)``.

        Returns ``(B, D)``, or ``n`` independent next states ``(B, n, D)`` when ``num_samples`` is set.
        """
        return self.step_rule.step(self.process, x_t, logits, t, s, num_samples, context)

    def consistency_logits(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """The logits ``(B, D, S)`` a consistency step at ``x_t`` uses: ``sampling_logits`` here."""
        return self.sampling_logits(x_t, t, cond)

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

        ``logits`` (``(B, D, S)`` at ``x_t``) avoid a second network call; they are accepted only
        where ``marginal_drives_step`` holds, and anything else is an error, not ignored.
        """
        if logits is None:
            logits = self.consistency_logits(x_t, t, cond)
        elif not self.marginal_drives_step:
            raise ValueError(
                f"{type(self).__name__}.consistency_step: logits were given, but this teacher's step does "
                "not use its per-dimension marginal (guidance or a mixture); call it without logits."
            )
        return self.step_from_logits(x_t, logits, t, s, num_samples)

    def step(
        self,
        x_t: Tensor,
        t: Tensor,
        s: Tensor,
        cond: Tensor | None = None,
        context: StepContext | None = None,
    ) -> Tensor:
        """One sampling step ``t -> s``: ``(B, D)``."""
        return self.step_from_logits(x_t, self.sampling_logits(x_t, t, cond, context), t, s, context=context)

    def sample(
        self, num_samples: int, steps: int, cond: Tensor | None = None, grid: Tensor | None = None
    ) -> Tensor:
        """Draw ``num_samples`` samples ``(B, *shape)`` with ``steps`` steps (see ``sample_chain``)."""
        return sample_chain(self, num_samples, steps, cond, grid=grid)
