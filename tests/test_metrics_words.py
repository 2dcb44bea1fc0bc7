"""Word-level text evaluators: word counts, the Kneser-Ney bigram perplexity and the non-word rate."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from mixdistill.metrics.nonword_rate import NonWordRate
from mixdistill.metrics.word_bigram import KneserNeyBigram, WordPerplexity
from mixdistill.metrics.word_counts import WordCounts, main, split_words

CORPUS = ["The cat sat on the mat. The dog sat on the cat!", "A dog, a cat; O'er the mat the dog ran."]
#: Sample "tokens" of the tests: id i decodes to WORDS[i] (so samples can hold non-words).
WORDS = ["the", "cat", "sat", "on", "mat", "dog", "zzyx", "qwv", "o'er", "ran"]


def decode(ids: list[list[int]]) -> list[str]:
    return [" ".join(WORDS[i] for i in row) for row in ids]


def reference_log_prob(texts: list[str], prev: str | None, word: str, d: float = 0.75) -> float:
    """Interpolated Kneser-Ney bigram log P(word | prev), from Python counters (no tensors)."""
    seqs = [split_words(t) for t in texts]
    vocab = sorted({w for s in seqs for w in s})
    size = len(vocab) + 1
    pairs = Counter((a, b) for s in seqs for a, b in zip(s, s[1:], strict=False))
    cont = Counter(b for _, b in pairs)
    p_cont = (max(cont.get(word, 0) - d, 0) + d * len(cont) / size) / len(pairs)
    history = sum(n for (a, _), n in pairs.items() if a == prev)
    if prev is None or history == 0:
        return math.log(p_cont)
    followers = sum(1 for a, _ in pairs if a == prev)
    return math.log(max(pairs.get((prev, word), 0) - d, 0) / history + d * followers / history * p_cont)


def test_split_words_folds_case_keeps_inner_apostrophes_and_drops_digits():
    """Invariant: words are lower-cased letter runs with inner apostrophes; digits and punctuation split."""
    words = ["o'er", "the", "hill", "thou'rt", "men", "tis"]
    assert split_words("O'er the hill, THOU'RT 3men 'tis!") == words


def test_kneser_ney_sums_to_one_for_every_history():
    """Invariant: P(. | v) sums to 1 over the V + 1 ids for every history, the unknown word and none."""
    model = KneserNeyBigram(WordCounts.from_texts(CORPUS), discount=0.75)
    ids = torch.arange(model.size)
    for v in [-1, *range(model.size)]:
        total = model.log_prob(torch.full_like(ids, v), ids).exp().sum()
        assert total.item() == pytest.approx(1.0, abs=1e-12)


def test_kneser_ney_equals_a_counter_reference_on_every_pair():
    """Invariant: the batched lookup gives the formula's value (computed from Python counters) for
    every (prev, next) pair, seen or not, including unknown words and no predecessor."""
    counts = WordCounts.from_texts(CORPUS)
    model = KneserNeyBigram(counts, discount=0.6)
    names = [*counts.words, "zzyx"]
    prev = torch.tensor([counts.index.get(a, counts.unknown) for a in names for _ in names] + [-1])
    nxt = torch.tensor([counts.index.get(b, counts.unknown) for _ in names for b in names] + [0])
    got = model.log_prob(prev, nxt)
    want = [reference_log_prob(CORPUS, a, b, d=0.6) for a in names for b in names]
    want.append(reference_log_prob(CORPUS, None, counts.words[0], d=0.6))
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=0)


def test_counts_file_round_trip_keeps_the_model(tmp_path):
    """Invariant: counts written by the command line and loaded back give the same vocabulary,
    fingerprint and probabilities as the counts made in memory."""
    text = tmp_path / "ref.txt"
    text.write_text(CORPUS[0] + "\n" + CORPUS[1])
    main([str(text), "--out", str(tmp_path / "c.safetensors")])
    loaded, direct = WordCounts(str(tmp_path / "c.safetensors")), WordCounts.from_files([str(text)])
    assert loaded.words == direct.words and loaded.fingerprint == direct.fingerprint
    ids = torch.arange(len(direct.words) + 1)
    for v in (-1, 0, 3):
        prev = torch.full_like(ids, v)
        want = KneserNeyBigram(direct).log_prob(prev, ids)
        assert torch.equal(KneserNeyBigram(loaded).log_prob(prev, ids), want)


def test_word_perplexity_is_the_exp_mean_nll_over_all_sample_words():
    """Invariant: word_ppl = exp(mean over every word of every sample of -log P(word | word before it
    in the same sample)); real batches are ignored."""
    metric = WordPerplexity(WordCounts.from_texts(CORPUS), decode=decode)
    samples = torch.tensor([[0, 1, 2, 3, 0, 4], [5, 6, 2, 7, 0, 1]])  # second row has two non-words
    metric.update(samples)
    metric.update(torch.zeros(3, 6, dtype=torch.long), real=True)
    nll = []
    for text in decode(samples.tolist()):
        words = split_words(text)
        nll += [-reference_log_prob(CORPUS, p, w) for p, w in zip([None, *words], words, strict=False)]
    assert metric.compute().item() == pytest.approx(math.exp(sum(nll) / len(nll)), rel=1e-6)
    assert metric.meta["vocabulary"] == len(WordCounts.from_texts(CORPUS).words)


def test_word_perplexity_ranks_real_text_above_shuffled_and_non_words():
    """Invariant: held-out text in the reference's word order scores a lower word_ppl than the same
    words shuffled, which scores lower than the same number of non-words."""
    counts = WordCounts.from_texts(CORPUS * 3)
    texts = {"real": "the cat sat on the mat the dog sat on the cat", "shuffled": "mat the on cat sat the"}
    texts["nonwords"] = "zzyx qwv zzyx qwv zzyx qwv"
    scores = {}
    for name, text in texts.items():
        metric = WordPerplexity(counts, decode=lambda ids, t=text: [t] * len(ids))
        metric.update(torch.zeros(1, 1, dtype=torch.long))
        scores[name] = metric.compute().item()
    assert scores["real"] < scores["shuffled"] < scores["nonwords"]


def test_nonword_rate_counts_words_outside_the_reference():
    """Invariant: nonword_rate = (words outside the vocabulary) / (all words), pooled over samples."""
    metric = NonWordRate(WordCounts.from_texts(CORPUS), decode=decode)
    metric.update(torch.tensor([[0, 1, 6, 7], [8, 9, 6, 2]]))  # 3 of 8 are non-words ("o'er" is known)
    assert metric.compute().item() == pytest.approx(3 / 8)


def test_word_metrics_name_what_is_missing(tmp_path):
    """Invariant: a missing counts file, a text without words or word pairs, a bad discount and an
    unset decoder are errors that name the setting."""
    with pytest.raises(FileNotFoundError, match="path=.*nope.safetensors"):
        WordCounts(str(tmp_path / "nope.safetensors"))
    with pytest.raises(ValueError, match="no words"):
        WordCounts.from_texts(["123 !!"])
    with pytest.raises(ValueError, match="no adjacent word pairs"):
        KneserNeyBigram(WordCounts.from_texts(["alone"]))
    with pytest.raises(ValueError, match="discount=1.5"):
        KneserNeyBigram(WordCounts.from_texts(CORPUS), discount=1.5)
    for metric in (WordPerplexity(WordCounts.from_texts(CORPUS)), NonWordRate(WordCounts.from_texts(CORPUS))):
        with pytest.raises(RuntimeError, match="decode is unset"):
            metric.update(torch.zeros(1, 2, dtype=torch.long))
