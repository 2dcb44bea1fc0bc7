"""Generative perplexity of text samples under an evaluator causal LM, in float64, fixed retokenisation."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchmetrics import Metric

from mixdistill.metrics.evaluator_lm import CausalLMEvaluator


def chunk_tokens(ids: list[int], context_length: int, bos_id: int) -> list[list[int]]:
    """``ids`` cut into runs of ``context_length - 1`` tokens, each preceded by ``bos_id``.

    Every token is scored exactly once; the first token of each chunk is conditioned on BOS only.
    """
    step = context_length - 1
    return [[bos_id, *ids[i : i + step]] for i in range(0, len(ids), step)]


def pad_chunks(chunks: list[list[int]], pad_id: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Chunks right-padded into ids ``(N, C)`` and a mask ``(N, C-1)`` of the scored positions.

    Right padding cannot change a causal LM's log-probabilities at the real positions before it.
    """
    width = max(len(c) for c in chunks)
    ids = torch.full((len(chunks), width), pad_id, dtype=torch.long)
    for i, c in enumerate(chunks):
        ids[i, : len(c)] = torch.tensor(c, dtype=torch.long)
    lengths = torch.tensor([len(c) for c in chunks])  # (N,)
    mask = torch.arange(1, width)[None, :] < lengths[:, None]  # (N, C-1): position i predicts token i+1
    return ids.to(device), mask.to(device)


class GenerativePerplexity(Metric):
    """``exp`` of the mean per-token NLL of generated samples under an evaluator LM (token-weighted).

    Retokenisation is fixed: samples (ids of the diffusion model's tokenizer) are decoded to text with
    ``decode``, re-encoded with the evaluator's tokenizer, and cut into chunks of the evaluator's
    ``context_length`` in which the first token is conditioned on the evaluator's BOS token (for
    GPT-2: ``<|endoftext|>``), so every evaluator token of a sample is scored once. Log-probabilities
    and sums are float64. Reference (``real=True``) batches are ignored.

    Args:
        evaluator: The causal LM that scores the text, e.g. ``HFCausalLM`` or ``TorchCausalLM``.
        decode: Maps token id lists to texts; ``QualityEvaluation`` sets it to the DataModule's
            ``decode`` when left unset here.
        batch_size: Chunks scored per evaluator call.
        name: Name shown in tables.
    """

    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        evaluator: CausalLMEvaluator,
        decode: Callable[[list[list[int]]], list[str]] | None = None,
        batch_size: int = 16,
        name: str = "gen_ppl",
    ) -> None:
        super().__init__()
        if evaluator.context_length < 2:
            raise ValueError(
                f"{name}: the evaluator's context_length={evaluator.context_length} must be >= 2."
            )
        if batch_size < 1:
            raise ValueError(f"{name}: batch_size={batch_size} must be >= 1.")
        self.evaluator, self.decode, self.batch_size, self.name = evaluator, decode, batch_size, name
        self.add_state("nll_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def meta(self) -> dict[str, object]:
        """What a reader needs to compare perplexities: the evaluator and the retokenisation."""
        ev = self.evaluator
        return {
            "evaluator": ev.name,
            "evaluator_version": ev.version,
            "context_length": ev.context_length,
            "retokenisation": "decode -> evaluator encode -> chunks of context_length with BOS first",
            "dtype": "float64",
        }

    def chunks(self, x: Tensor) -> list[list[int]]:
        """Evaluator-token chunks of samples ``(B, L)``."""
        if self.decode is None:
            raise RuntimeError(
                f"{self.name}: decode is unset, so samples cannot be turned into text; give decode= "
                f"(e.g. the DataModule's decode) or evaluate through QualityEvaluation, which sets it."
            )
        texts = self.decode(x.tolist())
        ev = self.evaluator
        return [c for ids in ev.encode(texts) if ids for c in chunk_tokens(ids, ev.context_length, ev.bos_id)]

    def update(self, x: Tensor, real: bool = False) -> None:
        """Score a batch of generated samples ``(B, L)`` of token ids; ``real`` batches are ignored."""
        if real:
            return
        chunks, ev = self.chunks(x), self.evaluator.to(self.device)
        for start in range(0, len(chunks), self.batch_size):
            ids, mask = pad_chunks(chunks[start : start + self.batch_size], ev.bos_id, self.device)
            logp = ev.token_logprobs(ids)  # (b, C-1) float64
            if logp.dtype != torch.float64 or logp.shape != mask.shape:
                raise TypeError(
                    f"{self.name}: {type(ev).__name__}.token_logprobs returned {logp.dtype} "
                    f"{tuple(logp.shape)}; it must return float64 of shape {tuple(mask.shape)}."
                )
            self.nll_sum -= torch.where(mask, logp, 0.0).sum()
            self.tokens += mask.sum()

    def compute(self) -> Tensor:
        if self.tokens == 0:
            raise RuntimeError(f"{self.name}: no evaluator tokens were scored; were generated samples empty?")
        return (self.nll_sum / self.tokens).exp().float()
