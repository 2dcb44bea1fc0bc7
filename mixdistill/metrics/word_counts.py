"""Word and word-bigram counts of a reference text: the data of the word-level text evaluators.

These evaluators are counts, not a trained network, so they judge samples independently of anything
mixdistill trained (the teacher, the student and the evaluator LM). ``python -m
mixdistill.metrics.word_counts FILE... --out counts.safetensors`` counts any text; the text example
ships the counts of the ten plays held out from the teacher (``asset:shakespeare_words.safetensors``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from mixdistill.assets import resolve_asset

#: A word: letters, with inner apostrophes kept ("o'er", "thou'rt"); case is folded.
WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def split_words(text: str) -> list[str]:
    """The lower-cased words of ``text`` in order; digits and punctuation separate words."""
    return WORD.findall(text.lower())


class WordCounts:
    """The vocabulary and bigram counts of a reference text, loaded from a counts file.

    Word ids follow the vocabulary; every word outside it maps to the one unknown id ``V``
    (``len(words)``). Bigrams are stored as sorted keys ``prev * (V + 1) + next`` with their counts.

    Args:
        path: A ``.safetensors`` file written by ``WordCounts.save`` (or ``asset:NAME``).
    """

    def __init__(self, path: str) -> None:
        file = resolve_asset(path)
        if not file.is_file():
            raise FileNotFoundError(
                f"WordCounts: path={path!r} ({file}) is not a file; write one with "
                f"`python -m mixdistill.metrics.word_counts TEXT_FILE... --out {file}`."
            )
        with safe_open(str(file), framework="pt") as f:
            words = json.loads((f.metadata() or {}).get("words", "null"))
            if not isinstance(words, list):
                raise ValueError(f"WordCounts: {file} holds no word list; was it written by WordCounts.save?")
            self._set(words, f.get_tensor("bigram_keys"), f.get_tensor("bigram_counts"), str(file))

    def _set(self, words: list[str], keys: Tensor, counts: Tensor, source: str) -> None:
        self.words, self.source = words, source
        self.index = {w: i for i, w in enumerate(words)}
        self.bigram_keys, self.bigram_counts = keys.long(), counts.long()  # (K,) sorted, (K,)

    @classmethod
    def from_texts(cls, texts: Iterable[str], source: str = "texts") -> WordCounts:
        """Count the words and adjacent word pairs of ``texts`` (pairs do not cross texts)."""
        sequences = [split_words(t) for t in texts]
        words = sorted({w for s in sequences for w in s})
        if not words:
            raise ValueError(f"WordCounts: {source} contains no words.")
        counts = cls.__new__(cls)
        counts._set(words, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), source)
        prev, nxt = counts.pairs(sequences)
        keys, n = torch.unique(prev * (len(words) + 1) + nxt, return_counts=True)
        counts._set(words, keys, n, source)
        return counts

    @classmethod
    def from_files(cls, files: list[str]) -> WordCounts:
        """Count the words of text files, each file one text."""
        for f in files:
            if not Path(f).is_file():
                raise FileNotFoundError(f"WordCounts: reference text {f!r} is not a file.")
        return cls.from_texts((Path(f).read_text(encoding="utf-8") for f in files), source=",".join(files))

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the vocabulary and the counts: what the evaluators' scores depend on."""
        hasher = hashlib.sha256(json.dumps(self.words).encode())
        for t in (self.bigram_keys, self.bigram_counts):
            hasher.update(t.contiguous().numpy().tobytes())
        return hasher.hexdigest()

    @property
    def unknown(self) -> int:
        """The id of every word outside the vocabulary."""
        return len(self.words)

    def ids(self, words: list[str]) -> Tensor:
        """Word ids ``(L,)`` of a word list, ``unknown`` for words outside the vocabulary."""
        return torch.tensor([self.index.get(w, self.unknown) for w in words], dtype=torch.long)

    def pairs(self, sequences: list[list[str]]) -> tuple[Tensor, Tensor]:
        """Ids of every adjacent pair ``(prev, next)`` inside each word sequence, both ``(P,)``."""
        ids = [self.ids(s) for s in sequences if len(s) > 1]
        if not ids:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        return torch.cat([s[:-1] for s in ids]), torch.cat([s[1:] for s in ids])

    def save(self, path: str | Path) -> Path:
        """Write the counts as ``.safetensors`` (the vocabulary in its metadata)."""
        # int32 halves the file wherever the keys fit (vocabularies up to 46339 words).
        small = (self.unknown + 1) ** 2 < 2**31 and int(self.bigram_counts.sum()) < 2**31
        dtype = torch.int32 if small else torch.long
        tensors = {"bigram_keys": self.bigram_keys.to(dtype), "bigram_counts": self.bigram_counts.to(dtype)}
        save_file(tensors, str(path), metadata={"words": json.dumps(self.words), "source": self.source})
        return Path(path)


def main(argv: list[str] | None = None) -> None:
    """The command line: count ``files`` and write ``--out``."""
    parser = argparse.ArgumentParser(description="Count the words and word bigrams of text files.")
    parser.add_argument("files", nargs="+", help="reference text files (UTF-8)")
    parser.add_argument("--out", required=True, help="the counts file to write (.safetensors)")
    args = parser.parse_args(argv)
    counts = WordCounts.from_files(args.files)
    counts.save(args.out)
    print(f"{args.out}: {len(counts.words)} words, {int(counts.bigram_counts.sum())} bigrams")


if __name__ == "__main__":
    main()
