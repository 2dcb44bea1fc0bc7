"""Step rules: how one sampling step turns denoiser logits at ``x_t`` into the next state ``x_s``.

A teacher owns one rule; its sampler and the Di4C consistency target both call it, and a mixture
student uses its teacher's rule with one lambda per sample. A new sampler is a new ``StepRule``
subclass chosen by ``class_path``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from torch import Tensor

from mixdistill.processes.base import ForwardProcess
from mixdistill.sampling.categorical import sample_from_logits
from mixdistill.sampling.grids import uniform_grid


@dataclass(frozen=True)
class StepContext:
    """Where a step sits in a sampling chain (absent for a lone step, e.g. a consistency target).

    Attributes:
        index: 0-based number of the step.
        total: Number of steps in the chain.
    """

    index: int
    total: int

    @property
    def progress(self) -> float:
        """``index / (total - 1)`` in ``[0, 1]`` (0 for a one-step chain), as MaskGIT anneals by."""
        return self.index / (self.total - 1) if self.total > 1 else 0.0


class StepRule(ABC):
    """Turns logits ``(B, D, S)`` at ``x_t`` into ``x_s`` for one step ``t -> s``."""

    #: Whether a sampler may reuse the logits of a row whose state did not change since the last
    #: network call (exact when the denoiser ignores time, as MDLM's does).
    reuses_unchanged_logits: bool = False

    def grid(self, steps: int) -> Tensor:
        """Times ``(steps + 1,)`` of a ``steps``-step chain when the caller gives none (uniform)."""
        return uniform_grid(steps)

    @abstractmethod
    def step(
        self,
        process: ForwardProcess,
        x_t: Tensor,
        logits: Tensor,
        t: Tensor,
        s: Tensor,
        num_samples: int | None = None,
        context: StepContext | None = None,
    ) -> Tensor:
        """Next states: ``(B, D)`` when ``num_samples`` is None, else ``n`` independent ``(B, n, D)``.

        Args:
            process: The teacher's forward process.
            x_t: Current state ``(B, D)``.
            logits: Denoiser logits at ``x_t`` ``(B, D, S)``, already constrained to ``x_t``.
            t: Current times ``(B,)``.
            s: Target times ``(B,)``, ``s <= t``.
            num_samples: Independent next states per example drawn from the same logits.
            context: Position of the step in its chain, when there is one.
        """


class AncestralStep(StepRule):
    """The product step: ``x_0^d ~ p^d`` independently per dimension, then ``x_s ~ q(. | x_t, x_0)``."""

    def step(self, process, x_t, logits, t, s, num_samples=None, context=None) -> Tensor:
        n = 1 if num_samples is None else num_samples
        x0 = self.draw_x0(logits, n, s)  # (B, n, D)
        rep = x_t.unsqueeze(1).expand_as(x0).reshape(-1, x_t.shape[1])
        x_s = process.posterior_sample(
            rep, x0.reshape_as(rep), t.repeat_interleave(n), s.repeat_interleave(n)
        )
        x_s = x_s.view(x_t.shape[0], n, -1)
        return x_s[:, 0] if num_samples is None else x_s

    def draw_x0(self, logits: Tensor, n: int, s: Tensor) -> Tensor:
        """``n`` draws of ``x_0`` per example ``(B, n, D)`` from logits ``(B, D, S)``."""
        return sample_from_logits(logits, n).permute(0, 2, 1)


class CachedAncestralStep(AncestralStep):
    """MDLM's ``ddpm_cache`` sampler: the product step, and rows whose state did not change since
    the last network call reuse its logits (``sample_chain`` counts the calls saved).

    The reuse is exact for denoisers that ignore time (MDLM and SDTT run without time
    conditioning); for a time-conditioned network it approximates the logits at the new time by
    those at the old one.

    Args:
        argmax_last: Take the most likely value instead of a sample in the final step (``s = 0``).
            MDLM's and SDTT's samplers sample that step too (down to ``t = 1e-5``) and take the
            argmax only for the tokens still masked there, so they match ``argmax_last=False``.
    """

    reuses_unchanged_logits = True

    def __init__(self, argmax_last: bool = False) -> None:
        self.argmax_last = argmax_last

    def draw_x0(self, logits: Tensor, n: int, s: Tensor) -> Tensor:
        x0 = super().draw_x0(logits, n, s)
        if not self.argmax_last:
            return x0
        last = (s == 0).view(-1, 1, 1)  # (B, 1, 1)
        return x0.where(~last, logits.argmax(-1).unsqueeze(1).expand_as(x0))
