"""Share of the words of text samples that the reference text never uses: a dictionary check."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchmetrics import Metric

from mixdistill.metrics.decoded_text import decoded_text
from mixdistill.metrics.word_counts import WordCounts, split_words


class NonWordRate(Metric):
    """Fraction of the decoded samples' words (all samples pooled) outside a reference vocabulary.

    The reference's words are the dictionary, so the rate needs no trained model: a sampler that
    glues sub-word tokens into non-words is caught even where a sub-word LM forgives it.
    Reference (``real=True``) batches are ignored.

    Args:
        counts: Word counts of the reference text (only its vocabulary is used).
        decode: Maps token id lists to texts; ``QualityEvaluation`` sets it to the DataModule's
            ``decode`` when left unset here.
        name: Name shown in tables.
    """

    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        counts: WordCounts,
        decode: Callable[[list[list[int]]], list[str]] | None = None,
        name: str = "nonword_rate",
    ) -> None:
        super().__init__()
        self.counts, self.decode, self.name = counts, decode, name
        self.add_state("unknown", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("words", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def meta(self) -> dict[str, object]:
        """The dictionary: the vocabulary of a named reference text."""
        return {
            "evaluator": "nonword-rate",
            "evaluator_version": self.counts.fingerprint,
            "reference": self.counts.source,
            "vocabulary": len(self.counts.words),
        }

    def update(self, x: Tensor, real: bool = False) -> None:
        """Count the words of a batch of generated samples ``(B, L)``; ``real`` batches are ignored."""
        if real:
            return
        words = [w for text in decoded_text(self.name, self.decode, x) for w in split_words(text)]
        ids = self.counts.ids(words)
        self.unknown += (ids == self.counts.unknown).sum().to(self.unknown.device)
        self.words += ids.numel()

    def compute(self) -> Tensor:
        if self.words == 0:
            raise RuntimeError(f"{self.name}: the samples contained no words.")
        return (self.unknown / self.words).float()
