"""Classifier-free guidance with the weight ramped linearly over the steps of a chain (MaskGIT)."""

from __future__ import annotations

from torch import Tensor

from mixdistill.sampling.step_rule import StepContext


class ClassifierFreeGuidance:
    """``logits = (1 + w') cond - w' uncond`` with ``w' = weight * progress`` (MaskGIT's ramp) or
    ``w' = weight`` throughout.

    The unconditional pass uses the teacher's "no class" label (``num_classes``). A lone step
    outside a chain (a consistency target) uses the full weight.

    Args:
        weight: Guidance weight ``w`` (MaskGIT at 256 px: 3).
        ramp: Increase the weight linearly from 0 at the first step to ``weight`` at the last.
    """

    def __init__(self, weight: float = 3.0, ramp: bool = True) -> None:
        if weight < 0:
            raise ValueError(f"ClassifierFreeGuidance: weight={weight} must be >= 0.")
        self.weight, self.ramp = weight, ramp

    def weight_at(self, context: StepContext | None) -> float:
        """The guidance weight ``w'`` of the step at ``context``."""
        if self.ramp and context is not None:
            return self.weight * context.progress
        return self.weight

    def combine(self, cond_logits: Tensor, uncond_logits: Tensor, context: StepContext | None) -> Tensor:
        """Guided logits ``(B, D, S)`` from the conditional and unconditional ones."""
        w = self.weight_at(context)
        return (1.0 + w) * cond_logits - w * uncond_logits
