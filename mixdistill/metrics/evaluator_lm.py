"""Evaluator causal LMs that score generated text: the interface and its Hugging Face / own-network kinds.

The evaluator's network is held outside any ``nn.Module`` tree on purpose: its weights never enter a
student checkpoint, and a trainer's precision setting (e.g. ``bf16-true``) never casts it.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixdistill.data.tokenizer import load_tokenizer, tokenizer_files
from mixdistill.evaluation.fingerprint import files_fingerprint, module_fingerprint
from mixdistill.metrics.checkpoint import load_frozen

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


def next_token_logprobs(logits: Tensor, ids: Tensor) -> Tensor:
    """``log p(ids[:, i+1] | ids[:, :i+1])`` ``(B, L-1)`` in float64 from logits ``(B, L, V)``.

    The log-softmax runs in float64 so that long sums of per-token NLLs do not lose digits.
    """
    logp = F.log_softmax(logits[:, :-1].double(), dim=-1)  # (B, L-1, V)
    return logp.gather(-1, ids[:, 1:, None]).squeeze(-1)


class CausalLMEvaluator(ABC):
    """A causal LM with its own tokenizer that scores text.

    Attributes:
        name: Identifies the evaluator in ``quality.json`` (e.g. ``"gpt2-large"``).
        version: Identifies its weights and tokenizer (a fingerprint), so tables can be compared.
        context_length: Longest sequence (BOS included) that ``token_logprobs`` accepts.
        bos_id: Token that conditions the first token of every chunk (GPT-2: ``<|endoftext|>``).
    """

    name: str
    version: str
    context_length: int
    bos_id: int

    @abstractmethod
    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text under the evaluator's tokenizer, without added special tokens."""

    @abstractmethod
    def token_logprobs(self, ids: Tensor) -> Tensor:
        """``log p(ids[:, i+1] | ids[:, :i+1])`` for ids ``(B, L)`` long: float64 ``(B, L-1)``."""

    def to(self, device: torch.device | str) -> CausalLMEvaluator:
        """Move the network to ``device`` (no-op for evaluators without one)."""
        return self


class HFCausalLM(CausalLMEvaluator):
    """Any Hugging Face causal LM and its tokenizer from a local directory (GPT-2 Large is what papers use).

    Needs the optional package ``transformers``. Nothing is downloaded: fetch the model once, e.g.
    ``huggingface-cli download gpt2-large --local-dir models/gpt2-large``.

    Args:
        path: Local directory holding the model (``config.json``, weights) and its tokenizer files.
        dtype: Dtype of the network's weights; the log-softmax is float64 whatever this is.
        context_length: Tokens per chunk (BOS included); ``None`` takes the model's
            ``n_positions``/``max_position_embeddings``.
        name: Name in tables; ``None`` takes the directory's name.
    """

    def __init__(
        self,
        path: str,
        dtype: Literal["float32", "float64", "bfloat16"] = "float32",
        context_length: int | None = None,
        name: str | None = None,
    ) -> None:
        directory = Path(path)
        if not directory.is_dir():
            raise FileNotFoundError(
                f"HFCausalLM: path='{path}' is not a directory. Download the evaluator once, e.g. "
                f"`huggingface-cli download gpt2-large --local-dir {path}`, and point path at it."
            )
        try:
            import transformers
        except ImportError as err:
            raise ImportError(
                f"HFCausalLM(path='{path}') needs the optional package transformers: "
                f"`pip install transformers`."
            ) from err
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        self.model = model.to(DTYPES[dtype]).eval().requires_grad_(False)
        self.name = name or directory.resolve().name
        self.version = f"transformers-{transformers.__version__}:{directory_fingerprint(directory)}"
        self.context_length = context_length or model_context_length(model.config, path)
        bos = self.tokenizer.bos_token_id
        bos = self.tokenizer.eos_token_id if bos is None else bos
        if bos is None:
            raise ValueError(
                f"HFCausalLM: the tokenizer in path='{path}' has neither a BOS nor an EOS token."
            )
        self.bos_id = int(bos)

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    @torch.no_grad()
    def token_logprobs(self, ids: Tensor) -> Tensor:
        return next_token_logprobs(self.model(input_ids=ids).logits, ids)

    def to(self, device: torch.device | str) -> HFCausalLM:
        self.model.to(device)
        return self


def model_context_length(config: object, path: str) -> int:
    """The context length named in a Hugging Face model config."""
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 1:
            return value
    raise ValueError(f"HFCausalLM: the config in path='{path}' names no context length; give context_length.")


def directory_fingerprint(directory: Path) -> str:
    """Short SHA-256 of ``config.json`` and the names and sizes of the files (cheap for GB of weights)."""
    h = hashlib.sha256()
    for p in sorted(q for q in directory.rglob("*") if q.is_file() and ".cache" not in q.parts):
        h.update(f"{p.relative_to(directory)}:{p.stat().st_size};".encode())
    if (directory / "config.json").is_file():
        h.update((directory / "config.json").read_bytes())
    return h.hexdigest()[:16]


class TorchCausalLM(CausalLMEvaluator):
    """A causal LM network of mixdistill's own (e.g. ``CausalTransformer``) with a ``tokenizers`` tokenizer.

    Args:
        net: Maps ids ``(B, L)`` to next-token logits ``(B, L, V)``.
        tokenizer_path: A ``tokenizer.json`` (or a directory holding one, or GPT-2's vocab and merges).
        checkpoint: Weights of ``net`` (``.safetensors``, ``.pt``, ``asset:NAME``); ``None`` uses ``net``
            as given (e.g. just trained in this process).
        bos_token: Token that conditions the first token of every chunk.
        context_length: Tokens per chunk (BOS included); ``None`` takes ``net.context_length``.
        name: Name in tables.
    """

    def __init__(
        self,
        net: nn.Module,
        tokenizer_path: str,
        checkpoint: str | None = None,
        bos_token: str = "<|endoftext|>",
        context_length: int | None = None,
        name: str = "mixdistill-causal-lm",
    ) -> None:
        self.tokenizer = load_tokenizer(tokenizer_path)
        if checkpoint is not None:
            net = load_frozen(
                net,
                checkpoint,
                "TorchCausalLM",
                "train one with mixdistill.metrics.train_causal_lm and save its state_dict with safetensors.",
            )
        self.net = net.eval().requires_grad_(False)
        bos = self.tokenizer.token_to_id(bos_token)
        if bos is None:
            raise ValueError(
                f"TorchCausalLM: bos_token='{bos_token}' is not in the vocabulary of "
                f"tokenizer_path='{tokenizer_path}'; set bos_token to its end-of-text token."
            )
        self.bos_id = bos
        self.context_length = context_length or getattr(net, "context_length", 0)
        if self.context_length < 2:
            raise ValueError(
                f"TorchCausalLM: context_length={context_length} and {type(net).__name__} has no "
                f"context_length attribute; give context_length >= 2."
            )
        tok_sha = files_fingerprint(tokenizer_files(tokenizer_path))[:16]
        self.name, self.version = name, f"weights:{module_fingerprint(net)[:16]},tokenizer:{tok_sha}"

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [enc.ids for enc in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    @torch.no_grad()
    def token_logprobs(self, ids: Tensor) -> Tensor:
        return next_token_logprobs(self.net(ids), ids)

    def to(self, device: torch.device | str) -> TorchCausalLM:
        self.net.to(device)
        return self
