"""The float64 inverse-CDF categorical sampler (all rows, or only the rows `where` selects)."""

from __future__ import annotations

import pytest
import torch

from mixdistill.sampling import categorical
from mixdistill.sampling.categorical import NEG_INF, sample_from_logits, sample_from_probs

N = 40000


def frequencies(samples: torch.Tensor, k: int) -> torch.Tensor:
    """Per-distribution frequencies ``(..., k)`` of draws ``(..., n)``."""
    return torch.nn.functional.one_hot(samples, k).double().mean(-2)


def assert_matches(samples: torch.Tensor, probs: torch.Tensor, sigmas: float = 5.0) -> None:
    """Every cell's frequency is within ``sigmas`` binomial std of its probability; zero cells never hit.

    Also a chi-square-style aggregate: sum_k (f_k - p_k)^2 n / p_k over positive cells stays below
    its (K - 1) degrees of freedom plus 6 standard deviations sqrt(2 (K - 1)).
    """
    n, k = samples.shape[-1], probs.shape[-1]
    p = probs.double() / probs.double().sum(-1, keepdim=True)
    f = frequencies(samples, k)
    tol = sigmas * (p * (1 - p) / n).sqrt()
    assert bool(((f - p).abs() <= tol + 1e-12).all()), float(((f - p).abs() / (tol + 1e-12)).max())
    assert bool((f[p == 0] == 0).all()), "a zero-probability value was sampled"
    pos = p > 0
    chi2 = torch.where(pos, (f - p) ** 2 * n / p.clamp_min(1e-300), torch.zeros_like(p)).sum(-1)
    dof = pos.sum(-1).double() - 1
    assert bool((chi2 <= dof + 6 * (2 * dof).sqrt() + 1e-9).all()), chi2


def test_sample_from_probs_frequencies():
    """Draws from normalised probabilities (zeros at both ends and inside) have those frequencies."""
    probs = torch.tensor(
        [[0.0, 0.1, 0.2, 0.0, 0.7], [0.25, 0.25, 0.25, 0.25, 0.0], [0.05, 0.0, 0.9, 0.0, 0.05]]
    )
    x = sample_from_probs(probs, N, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, N) and x.dtype == torch.long
    assert_matches(x, probs)


def test_sample_from_probs_unnormalised_weights():
    """Weights need not sum to 1: w and c w give the same distribution (identical draws for c = 2^k)."""
    w = torch.tensor([[3.0, 0.0, 1.0, 6.0], [1e-30, 2e-30, 0.0, 1e-30]])
    x = sample_from_probs(w, N, generator=torch.Generator().manual_seed(1))
    assert_matches(x, w)
    y = sample_from_probs(8.0 * w, N, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x, y, rtol=0, atol=0)
    z = sample_from_probs(7.3 * w, N, generator=torch.Generator().manual_seed(2))
    assert_matches(z, w)


def test_sample_from_probs_point_masses():
    """A point mass at the first, a middle or the last value is always drawn."""
    probs = torch.eye(4)
    x = sample_from_probs(probs, 1000, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(x, torch.arange(4)[:, None].expand(-1, 1000))


@pytest.mark.parametrize("fn", [sample_from_probs, sample_from_logits])
def test_output_shapes(fn):
    """Shape (...) without num_samples and (..., n) with it, including n = 1 and 1-D input."""
    inp = torch.rand(2, 3, 4) if fn is sample_from_probs else torch.randn(2, 3, 4)
    assert fn(inp).shape == (2, 3)
    assert fn(inp, 5).shape == (2, 3, 5)
    assert fn(inp, 1).shape == (2, 3, 1)
    assert fn(inp[0, 0]).shape == ()
    assert fn(inp[0, 0], 7).shape == (7,)
    out = fn(inp, 50)
    assert out.dtype == torch.long and int(out.min()) >= 0 and int(out.max()) <= 3


def test_sample_from_logits_frequencies_and_neg_inf():
    """Logits draw with softmax frequencies; NEG_INF entries are never drawn.

    Logits near 1000 would overflow exp() in float64 without the max subtraction.
    """
    logits = torch.tensor(
        [[NEG_INF, 0.0, 1.0, NEG_INF], [1000.0, 999.0, NEG_INF, 1001.0], [NEG_INF, NEG_INF, NEG_INF, -3.0]]
    )
    x = sample_from_logits(logits, N, generator=torch.Generator().manual_seed(4))
    assert x.shape == (3, N)
    assert_matches(x, torch.softmax(logits.double(), -1))
    assert not bool((x[0] == 0).any() | (x[0] == 3).any() | (x[1] == 2).any())
    assert bool((x[2] == 3).all())


def test_sample_from_logits_shift_invariant_and_float16():
    """Adding a constant to all logits does not change the draws; low-precision logits work too."""
    logits = torch.tensor([[0.25, -1.0, 2.0, 0.0]])  # + 64 is exact in float32
    x = sample_from_logits(logits, 2000, generator=torch.Generator().manual_seed(5))
    y = sample_from_logits(logits + 64.0, 2000, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(x, y, rtol=0, atol=0)
    z = sample_from_logits(logits.half(), N, generator=torch.Generator().manual_seed(6))
    assert_matches(z, torch.softmax(logits.half().double(), -1))


@pytest.mark.parametrize("fn", [sample_from_probs, sample_from_logits])
def test_generator_reproducible(fn):
    """The same generator seed reproduces the draws exactly; another seed gives other draws."""
    inp = torch.rand(4, 6) if fn is sample_from_probs else torch.randn(4, 6)
    a = fn(inp, 100, generator=torch.Generator().manual_seed(7))
    b = fn(inp, 100, generator=torch.Generator().manual_seed(7))
    c = fn(inp, 100, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    # The global RNG seeds reproduce draws without a generator as well.
    torch.manual_seed(9)
    d = fn(inp, 100)
    torch.manual_seed(9)
    e = fn(inp, 100)
    torch.testing.assert_close(d, e, rtol=0, atol=0)


@pytest.mark.parametrize("fn", [sample_from_probs, sample_from_logits])
def test_chunking_changes_neither_the_draws_nor_the_input(fn, monkeypatch):
    """The float64 copies are made a few rows at a time to bound memory: the draws from one seed
    are those of a single whole-tensor pass (the uniforms come from the stream in the same order),
    and the caller's float64 tensor is not modified in place."""
    values = torch.rand(5, 7, 11, dtype=torch.float64)
    if fn is sample_from_logits:
        values = values.log()
    kept = values.clone()
    whole = fn(values, 3, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(categorical, "CHUNK_ELEMENTS", 2 * 11)  # two rows per chunk
    chunked = fn(values, 3, generator=torch.Generator().manual_seed(0))
    assert whole.shape == (5, 7, 3)
    assert torch.equal(whole, chunked)
    assert torch.equal(values, kept)


@pytest.mark.parametrize("fn", [sample_from_probs, sample_from_logits])
def test_where_draws_the_selected_rows_of_the_full_draw(fn):
    """``where`` draws only the selected rows, yet from the uniforms of a draw over every row: for one
    seed the selected rows equal the full draw's and the others are ``otherwise``, unchanged."""
    values = torch.rand(3, 5, 9) if fn is sample_from_probs else torch.randn(3, 5, 9)
    where = torch.rand(3, 5) < 0.5
    otherwise = torch.randint(0, 9, (3, 5))
    full = fn(values, generator=torch.Generator().manual_seed(11))
    picked = fn(values, generator=torch.Generator().manual_seed(11), where=where, otherwise=otherwise)
    assert torch.equal(picked[where], full[where])
    assert torch.equal(picked[~where], otherwise[~where])


def test_where_rejects_mismatched_arguments():
    """``where`` without ``otherwise``, with several draws per row, or of another shape is an error
    that names the arguments, not a silent full draw."""
    logits, where, other = torch.randn(2, 4, 6), torch.ones(2, 4, dtype=torch.bool), torch.zeros(2, 4).long()
    with pytest.raises(ValueError, match="where and otherwise go together"):
        sample_from_logits(logits, where=where)
    with pytest.raises(ValueError, match="num_samples=3"):
        sample_from_logits(logits, 3, where=where, otherwise=other)
    with pytest.raises(ValueError, match=r"must have the shape of the rows, \(2, 4\)"):
        sample_from_logits(logits, where=where[:, :2], otherwise=other[:, :2])
