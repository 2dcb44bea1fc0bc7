"""How often a trained classifier recognises the class a conditional sample was generated for."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from mixdistill.metrics.classifier import SmallImageClassifier, load_classifier
from mixdistill.metrics.decoded import TokenImageDecoder


class ClassAccuracy(Metric):
    """Fraction of generated samples that a frozen ``SmallImageClassifier`` assigns to their label.

    ``QualityEvaluation`` passes the class labels it drew for the samples as ``cond`` (this metric
    declares ``takes_labels``). It needs no reference: ``update(x, real=True)`` is ignored, and it is
    never cached (it is not a ``ReferenceStatistics``). The classifier is held outside the module
    tree, so its weights never enter a student checkpoint.

    Args:
        classifier: The classifier, built with the settings it was trained with.
        checkpoint: Its weights (``.safetensors``, ``.pt`` or ``asset:NAME``), as ``train_classifier`` writes.
        decoder: Maps token grids to the images the classifier reads (``None``: samples are images).
        name: Name shown in tables.
    """

    higher_is_better = True
    full_state_update = False
    #: ``QualityEvaluation.score`` passes ``cond=`` (the samples' labels) to ``update``.
    takes_labels = True

    def __init__(
        self,
        classifier: SmallImageClassifier,
        checkpoint: str,
        decoder: TokenImageDecoder | None = None,
        name: str = "class-acc",
    ) -> None:
        super().__init__()
        net = load_classifier(classifier, checkpoint, "ClassAccuracy")
        object.__setattr__(self, "net", net)  # outside the module tree: not in checkpoints
        self.decoder, self.name = decoder, name
        self.add_state("correct", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, x: Tensor, real: bool, cond: Tensor | None = None) -> None:
        """Count the samples ``x`` ``(B, *shape)`` classified as ``cond`` ``(B,)``; real data is ignored."""
        if real:
            return
        if cond is None or cond.shape != x.shape[:1]:
            got = None if cond is None else tuple(cond.shape)
            raise ValueError(
                f"{self.name}: needs one class label per generated sample, got cond={got} for samples "
                f"{tuple(x.shape)}; use it with a class-conditional teacher (num_classes > 0)."
            )
        with torch.no_grad():
            images = x if self.decoder is None else self.decoder(x)  # (B, *shape)
            predicted = self.net.to(x.device)(images).argmax(-1)  # (B,)
        self.correct = self.correct + (predicted == cond.to(predicted.device)).sum()
        self.total = self.total + x.shape[0]

    def compute(self) -> Tensor:
        if self.total < 1:
            raise RuntimeError(f"{self.name}: no generated samples were scored.")
        return (self.correct / self.total).float()
