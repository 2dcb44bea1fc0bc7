"""Loading, training and fingerprinting the ``tokenizers`` tokenizers that ``TextData`` uses."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from mixdistill.assets import resolve_asset

#: Files that make a tokenizer directory: one ``tokenizer.json``, or GPT-2 style BPE vocab and merges.
TOKENIZER_JSON = "tokenizer.json"
BPE_FILES = ("vocab.json", "merges.txt")


def tokenizer_files(path: str) -> list[Path]:
    """The files that define the tokenizer at ``path`` (a ``tokenizer.json`` or a directory).

    ``asset:NAME`` names a tokenizer shipped in ``mixdistill/assets``. A directory must hold
    ``tokenizer.json`` or both ``vocab.json`` and ``merges.txt`` (GPT-2 BPE).

    Raises:
        FileNotFoundError: Naming ``path`` and what it should contain.
    """
    p = resolve_asset(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        if (p / TOKENIZER_JSON).is_file():
            return [p / TOKENIZER_JSON]
        if all((p / name).is_file() for name in BPE_FILES):
            return [p / name for name in BPE_FILES]
    raise FileNotFoundError(
        f"tokenizer='{path}' is neither a tokenizer.json file nor a directory holding tokenizer.json or "
        f"vocab.json + merges.txt; give one, or leave tokenizer unset to train a byte-level BPE."
    )


def load_tokenizer(path: str) -> Tokenizer:
    """A tokenizer from a ``tokenizer.json`` or a directory (see ``tokenizer_files``)."""
    files = tokenizer_files(path)
    if len(files) == 1:
        return Tokenizer.from_file(str(files[0]))
    # GPT-2 byte-level BPE, as ``tokenizers.ByteLevelBPETokenizer`` assembles it.
    tok = Tokenizer(models.BPE.from_file(str(files[0]), str(files[1])))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # vocab.json lists GPT-2's "<|endoftext|>" as a plain entry; registered as special (same id),
    # it is matched whole in text instead of being split into bytes, as in GPT-2's own tokenizer.
    specials = [t for t in tok.get_vocab() if t.startswith("<|") and t.endswith("|>")]
    tok.add_special_tokens(sorted(specials))
    return tok


def train_byte_level_bpe(documents: Iterable[str], vocab_size: int, special_tokens: list[str]) -> Tokenizer:
    """A byte-level BPE tokenizer trained on ``documents``; every string round-trips through it.

    Args:
        documents: Training texts.
        vocab_size: Largest vocabulary (256 bytes + special tokens + merges); a small corpus may
            yield fewer tokens.
        special_tokens: Tokens given the first ids, e.g. the end-of-text separator.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(documents, trainer)
    return tok


def save_tokenizer(tok: Tokenizer, path: Path) -> None:
    """Write ``tok`` as ``tokenizer.json`` atomically (a concurrent reader never sees half a file)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tok.save(str(tmp))
    os.replace(tmp, path)
