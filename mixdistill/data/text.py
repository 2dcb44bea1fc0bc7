"""Text corpora tokenised and packed into fixed-length sequences, cached on disk."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import Tensor

from mixdistill.data.base import SPLITS, Arrays, TensorDataModule, split_indices
from mixdistill.data.tokenizer import (
    TOKENIZER_JSON,
    load_tokenizer,
    save_tokenizer,
    tokenizer_files,
    train_byte_level_bpe,
)
from mixdistill.evaluation.fingerprint import files_fingerprint

#: ``datasets`` builder for each file suffix.
BUILDERS = {".txt": "text", ".text": "text", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}

#: Documents tokenised per ``encode_batch`` call (bounds the memory of the encodings).
ENCODE_CHUNK = 1024


class TextData(TensorDataModule):
    """Text from local files or the Hugging Face hub as packed token sequences ``x0`` ``(seq_len,)``.

    Documents (rows of ``text_field``; empty or blank ones are skipped) are split into train/val/test
    by a seeded permutation, tokenised, joined with ``eos_token`` after each document, and cut into
    sequences of ``seq_len`` tokens per split (the last partial sequence of a split is dropped). Without
    ``tokenizer`` a byte-level BPE of ``train_tokenizer_vocab`` tokens is trained on the train split.
    The tokenizer and the packed tensors are cached under ``cache_dir`` in a folder named by a hash of
    the files (path, size, mtime), the tokenizer, the split and ``seq_len``; a later run reloads them.

    Args:
        files: Local ``.txt``/``.text`` (``text`` builder), ``.json``/``.jsonl`` or ``.parquet`` files,
            all of one kind.
        hub_name: A dataset on the Hugging Face hub (needs network access), instead of ``files``.
        hub_config: Configuration name of the hub dataset.
        hub_split: Split of the hub dataset to read.
        text_field: Column holding the text.
        sample_by: What a document is in ``.txt`` files: a ``line``, a ``paragraph`` or the whole file.
        tokenizer: A ``tokenizer.json``, or a directory holding one or GPT-2's ``vocab.json`` and
            ``merges.txt``; ``None`` trains a byte-level BPE.
        train_tokenizer_vocab: Vocabulary size of the trained BPE (at least 257: 256 bytes + EOS).
        eos_token: Separator appended after every document; must be in the tokenizer's vocabulary.
        seq_len: Tokens per sequence.
        cache_dir: Folder of the cache.
        batch_size: Sequences per batch.
        num_workers: DataLoader worker processes.
        seed: Seed of the document split.
        val_fraction: Fraction of the documents held out for validation.
        test_fraction: Fraction held out for testing; 0 makes test reuse val.
    """

    def __init__(
        self,
        files: list[str] | None = None,
        hub_name: str | None = None,
        hub_config: str | None = None,
        hub_split: str = "train",
        text_field: str = "text",
        sample_by: Literal["line", "paragraph", "document"] = "line",
        tokenizer: str | None = None,
        train_tokenizer_vocab: int = 4096,
        eos_token: str = "<|endoftext|>",
        seq_len: int = 128,
        cache_dir: str = ".mixdistill_cache",
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.05,
        test_fraction: float = 0.0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, val_fraction, test_fraction)
        if not files and hub_name is None:
            raise ValueError("TextData: files and hub_name are both unset; give files=[...] or hub_name=...")
        if files and hub_name is not None:
            raise ValueError(f"TextData: give files={files} or hub_name='{hub_name}', not both.")
        if seq_len < 2:
            raise ValueError(f"TextData: seq_len={seq_len} must be >= 2.")
        if tokenizer is None and train_tokenizer_vocab < 257:
            raise ValueError(
                f"TextData: train_tokenizer_vocab={train_tokenizer_vocab} must be >= 257 "
                f"(256 byte tokens + eos_token)."
            )
        self.files, self.hub_name, self.hub_config, self.hub_split = files, hub_name, hub_config, hub_split
        self.text_field, self.sample_by = text_field, sample_by
        self.tokenizer_path, self.train_tokenizer_vocab = tokenizer, train_tokenizer_vocab
        self.eos_token, self.seq_len, self.cache_dir = eos_token, seq_len, Path(cache_dir)
        self._tokenizer: Tokenizer | None = None
        self._documents: dict[str, list[str]] | None = None

    @property
    def source(self) -> str:
        return f"TextData(files={self.files})" if self.files else f"TextData(hub_name='{self.hub_name}')"

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.seq_len,)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def eos_id(self) -> int:
        """Id of ``eos_token``, the separator between documents."""
        eos = self.tokenizer.token_to_id(self.eos_token)
        if eos is None:
            raise ValueError(
                f"TextData: eos_token='{self.eos_token}' is not in the vocabulary of "
                f"tokenizer='{self.tokenizer_path}'; set eos_token to its end-of-text token (e.g. '</s>')."
            )
        return eos

    def decode(self, ids: Tensor | list[list[int]]) -> list[str]:
        """Texts of token sequences ``(B, L)`` (special tokens such as ``eos_token`` are kept)."""
        rows = ids.tolist() if isinstance(ids, Tensor) else ids
        return self.tokenizer.decode_batch(rows, skip_special_tokens=False)

    # ----- the corpus ---------------------------------------------------------------------------

    def corpus_id(self) -> dict[str, object]:
        """What identifies the documents and their split (for cache keys)."""
        if self.files:
            stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in self.check_files()]
            origin: object = {"files": stats, "sample_by": self.sample_by}
        else:
            origin = {"hub": [self.hub_name, self.hub_config, self.hub_split]}
        fractions = [self.val_fraction, self.test_fraction]
        return {"origin": origin, "field": self.text_field, "seed": self.seed, "fractions": fractions}

    def check_files(self) -> list[Path]:
        """The files as paths; raises naming a missing or empty file or an unsupported or mixed suffix.

        (``datasets`` fails on a 0-byte file with a bare ``DatasetGenerationError`` naming no file.)
        """
        paths = [Path(f) for f in self.files or []]
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"TextData: files contains '{p}', which does not exist.")
            if p.stat().st_size == 0:
                raise ValueError(
                    f"TextData: files contains '{p}', which is empty (0 bytes); drop it or fill it."
                )
            if p.suffix not in BUILDERS:
                raise ValueError(f"TextData: files contains '{p}'; suffixes allowed: {sorted(BUILDERS)}.")
        if len({BUILDERS[p.suffix] for p in paths}) > 1:
            raise ValueError(f"TextData: files={self.files} mixes formats; give files of one kind.")
        return paths

    def load_dataset(self) -> Any:
        """The ``datasets.Dataset`` of the files or the hub dataset.

        (Annotated ``Any``: importing ``datasets`` for the annotation would slow every ``--help``.)
        """
        import datasets  # imported here: slow to import and only needed when the cache is cold

        hf_cache = str(self.cache_dir / "hf")
        if not self.files:
            name, config, split = self.hub_name, self.hub_config, self.hub_split
            return datasets.load_dataset(name, config, split=split, cache_dir=hf_cache)
        paths = [str(p) for p in self.check_files()]
        builder = BUILDERS[Path(paths[0]).suffix]
        extra = {"sample_by": self.sample_by} if builder == "text" else {}
        return datasets.load_dataset(builder, data_files=paths, split="train", cache_dir=hf_cache, **extra)

    def documents(self) -> dict[str, list[str]]:
        """Non-blank documents of each split (test is empty when ``test_fraction`` is 0), in file order."""
        if self._documents is None:
            ds = self.load_dataset()
            if self.text_field not in ds.column_names:
                raise KeyError(
                    f"{self.source} has no column text_field='{self.text_field}'; "
                    f"its columns are {ds.column_names}."
                )
            docs = [d for d in ds[self.text_field] if d is not None and str(d).strip()]
            if not docs:
                raise ValueError(f"{self.source} holds no non-blank text in text_field='{self.text_field}'.")
            what = f"{len(docs)} documents (sample_by='{self.sample_by}')"
            index = split_indices(len(docs), self.val_fraction, self.test_fraction, self.seed, what)
            self._documents = {name: [str(docs[i]) for i in index[name].tolist()] for name in SPLITS}
        return self._documents

    # ----- tokenizer and packing ----------------------------------------------------------------

    def cache_folder(self) -> Path:
        """Folder of this corpus + tokenizer in the cache, named by a hash of both."""
        if self.tokenizer_path is None:
            tok_id: object = {"train_bpe": self.train_tokenizer_vocab}
        else:
            tok_id = {"sha256": files_fingerprint(tokenizer_files(self.tokenizer_path))}
        key = {"corpus": self.corpus_id(), "tokenizer": tok_id, "eos": self.eos_token}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return self.cache_dir / digest

    @property
    def tokenizer(self) -> Tokenizer:
        """The ``tokenizers.Tokenizer``: loaded from ``tokenizer``, from the cache, or trained."""
        if self._tokenizer is None:
            if self.tokenizer_path is not None:
                self._tokenizer = load_tokenizer(self.tokenizer_path)
            else:
                self._tokenizer = self.trained_tokenizer()
        return self._tokenizer

    def trained_tokenizer(self) -> Tokenizer:
        """The byte-level BPE of the train split, reloaded from the cache when it was trained before."""
        path = self.cache_folder() / TOKENIZER_JSON
        if path.is_file():
            return Tokenizer.from_file(str(path))
        tok = train_byte_level_bpe(self.documents()["train"], self.train_tokenizer_vocab, [self.eos_token])
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tokenizer(tok, path)
        return tok

    def pack(self, docs: list[str], split: str) -> Tensor:
        """``docs`` tokenised, each followed by ``eos_token``, concatenated and cut: ``(n, seq_len)``."""
        eos = self.eos_id
        pieces, content = [], 0
        for start in range(0, len(docs), ENCODE_CHUNK):
            chunk = docs[start : start + ENCODE_CHUNK]
            for enc in self.tokenizer.encode_batch(chunk, add_special_tokens=False):
                content += len(enc.ids)
                pieces.append(np.asarray(enc.ids + [eos], dtype=np.int64))
        if content == 0:
            raise ValueError(f"{self.source}: the {split} split is empty after tokenization; check the text.")
        stream = np.concatenate(pieces)
        n = stream.size // self.seq_len
        if n == 0:
            raise ValueError(
                f"{self.source}: the {split} split has {stream.size} tokens, fewer than one sequence of "
                f"seq_len={self.seq_len}; lower seq_len, raise the split's fraction or add text."
            )
        return torch.from_numpy(stream[: n * self.seq_len].reshape(n, self.seq_len))

    def packed(self) -> dict[str, Tensor]:
        """Packed sequences of each non-empty split, loaded from the cache or built and cached."""
        path = self.cache_folder() / f"packed-{self.seq_len}.pt"
        if path.is_file():
            return torch.load(path, map_location="cpu", weights_only=True)
        docs = self.documents()
        out = {name: self.pack(docs[name], name) for name in SPLITS if docs[name]}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # atomic: DDP ranks may race here
        torch.save(out, tmp)
        os.replace(tmp, path)
        return out

    def prepare_data(self) -> None:
        """Build the cache (Lightning calls this on one process before ``setup`` on all)."""
        self.packed()

    def load_splits(self) -> dict[str, Arrays]:
        return {name: Arrays(x0) for name, x0 in self.packed().items()}
