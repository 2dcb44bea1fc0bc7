"""Word-level perplexity of text samples under an interpolated Kneser-Ney bigram model of counts.

An evaluator that nothing in mixdistill trained: it is the reference text's word counts, smoothed.
A sample of non-words pays for each one (they get only the smoothing mass of the unknown word), and
a sample of real words in an order the reference never uses pays for each unseen pair.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchmetrics import Metric

from mixdistill.metrics.decoded_text import decoded_text
from mixdistill.metrics.word_counts import WordCounts, split_words


class KneserNeyBigram:
    """Interpolated Kneser-Ney bigram probabilities over the vocabulary plus one unknown word.

    ``P(w | v) = max(c(v, w) - d, 0) / c(v) + d N(v .) / c(v) * P_cont(w)``, where ``N(v .)`` counts
    the distinct words after ``v``, and the continuation probability
    ``P_cont(w) = (max(N(. w) - d, 0) + d T / (V + 1)) / N(. .)`` spreads the discounted mass evenly
    over all ``V + 1`` ids (``T``: words with ``N(. w) > 0``). Both sum to 1 over the ``V + 1`` ids.
    A word without a known predecessor (the first of a sample, or after an unknown word) gets
    ``P_cont``.

    Args:
        counts: The reference's word and bigram counts.
        discount: The absolute discount ``d`` in (0, 1).
    """

    def __init__(self, counts: WordCounts, discount: float = 0.75) -> None:
        if not 0 < discount < 1:
            raise ValueError(f"KneserNeyBigram: discount={discount} must lie in (0, 1).")
        if counts.bigram_keys.numel() == 0:
            raise ValueError(f"KneserNeyBigram: the reference ({counts.source}) has no adjacent word pairs.")
        size = counts.unknown + 1
        self.size, self.discount = size, discount
        self.keys, self.counts = counts.bigram_keys, counts.bigram_counts.double()  # (K,), (K,)
        prev, nxt = self.keys // size, self.keys % size
        self.history = torch.bincount(prev, weights=self.counts, minlength=size)  # (V+1,) c(v)
        self.followers = torch.bincount(prev, minlength=size).double()  # (V+1,) N(v .)
        cont = torch.bincount(nxt, minlength=size).double()  # (V+1,) N(. w)
        seen = (cont > 0).sum().double()
        self.p_cont = ((cont - discount).clamp_min(0) + discount * seen / size) / cont.sum()

    def log_prob(self, prev: Tensor, nxt: Tensor) -> Tensor:
        """``log P(nxt | prev)`` in float64 for id pairs ``(N,)``; ``prev = -1`` means no predecessor."""
        known = prev >= 0
        v = prev.clamp_min(0)
        query = v * self.size + nxt
        pos = torch.searchsorted(self.keys, query).clamp_max(self.keys.numel() - 1)
        pair = torch.where(self.keys[pos] == query, self.counts[pos], 0.0)  # (N,) c(v, w)
        history = self.history[v]
        base = self.p_cont[nxt]
        safe = history.clamp_min(1.0)
        mixed = (pair - self.discount).clamp_min(0) / safe + self.discount * self.followers[v] / safe * base
        return torch.where(known & (history > 0), mixed, base).log()


def word_pairs(counts: WordCounts, texts: list[str]) -> tuple[Tensor, Tensor]:
    """``(prev, next)`` ids of every word of ``texts``, ``prev = -1`` for each text's first word."""
    ids = [counts.ids(split_words(t)) for t in texts]
    ids = [s for s in ids if s.numel()]
    if not ids:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    prev = [torch.cat([torch.tensor([-1]), s[:-1]]) for s in ids]
    return torch.cat(prev), torch.cat(ids)


class WordPerplexity(Metric):
    """``exp`` of the mean per-word NLL of decoded samples under a Kneser-Ney word-bigram model.

    Samples (ids of the diffusion model's tokenizer) are decoded with ``decode``, split into
    lower-cased words, and every word is scored given the word before it in the same sample.
    Reference (``real=True``) batches are ignored.

    Args:
        counts: Word counts of the reference text, e.g.
            ``WordCounts(path=asset:shakespeare_words.safetensors)``.
        discount: Kneser-Ney absolute discount.
        decode: Maps token id lists to texts; ``QualityEvaluation`` sets it to the DataModule's
            ``decode`` when left unset here.
        name: Name shown in tables.
    """

    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        counts: WordCounts,
        discount: float = 0.75,
        decode: Callable[[list[list[int]]], list[str]] | None = None,
        name: str = "word_ppl",
    ) -> None:
        super().__init__()
        self.counts, self.model = counts, KneserNeyBigram(counts, discount)
        self.decode, self.name = decode, name
        self.add_state("nll_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("words", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def meta(self) -> dict[str, object]:
        """The evaluator: a count model of a named reference text."""
        return {
            "evaluator": f"word-bigram-kneser-ney (discount {self.model.discount})",
            "evaluator_version": self.counts.fingerprint,
            "reference": self.counts.source,
            "vocabulary": len(self.counts.words),
        }

    def update(self, x: Tensor, real: bool = False) -> None:
        """Score a batch of generated samples ``(B, L)`` of token ids; ``real`` batches are ignored."""
        if real:
            return
        prev, nxt = word_pairs(self.counts, decoded_text(self.name, self.decode, x))
        self.nll_sum -= self.model.log_prob(prev, nxt).sum().to(self.nll_sum.device)
        self.words += nxt.numel()

    def compute(self) -> Tensor:
        if self.words == 0:
            raise RuntimeError(f"{self.name}: the samples contained no words.")
        return (self.nll_sum / self.words).exp().float()
