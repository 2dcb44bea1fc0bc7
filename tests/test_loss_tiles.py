"""Sequence tiling of the fused loss (chunks.sequence_tiles): tiles change only the order of sums
over D, and bf16 logits are computed exactly as their float32 copy would be."""

import pytest
import torch
from test_loss_terms import CASES, B, D, N, S, case, problem

from mixdistill.di4c.chunks import sequence_tiles
from mixdistill.di4c.fused_losses import di4c_loss_terms

PER_POSITION = B * N * S  # elements of one sequence position of the (B, N, D, S) logits


def run(logits, args, tile_elements):
    z = logits.clone().requires_grad_(True)
    terms = di4c_loss_terms(z, *args, tile_elements=tile_elements)
    weights = [torch.linspace(0.5, 1.5, B, dtype=torch.float64) * (k + 1) for k in range(3)]
    sum((o * w.to(o.dtype)).sum() for o, w in zip(terms, weights, strict=True)).backward()
    return terms, z.grad


@pytest.mark.parametrize("width", [1, 2])
@pytest.mark.parametrize("cv,distil,use_data,use_targets,subset", CASES)
def test_tiles_give_the_untiled_values_and_gradient(width, cv, distil, use_data, use_targets, subset):
    """Invariant: with tiles of 1 or 2 positions (D = 5: uneven), every term and the gradient equal
    the single-tile computation to float64 rounding (relative 1e-13: the pinned dimension makes the
    terms ~1e6), in every combination of terms."""
    logits, args = case(4, cv, distil, use_data, use_targets, subset)
    assert len(sequence_tiles(logits, width * PER_POSITION)) == -(-D // width)
    want, want_grad = run(logits, args, None)
    got, got_grad = run(logits, args, width * PER_POSITION)
    for g, v in zip(got, want, strict=True):
        torch.testing.assert_close(g, v, rtol=1e-13, atol=1e-12)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("tile_elements", [None, 2 * PER_POSITION])
def test_bf16_logits_equal_their_float32_copy(tile_elements):
    """Invariant: bf16 logits give the terms of ``logits.float()`` and its gradient rounded to bf16
    (what autograd's cast would return), with or without tiles; the gradient comes back in bf16."""
    logits, teacher, x0, w, targets, target_lm, _ = problem(5, False, torch.float32)
    half = logits.to(torch.bfloat16)
    args = (teacher, x0, w, targets, target_lm, None, True, True)
    want, want_grad = run(half.float(), args, None)
    got, got_grad = run(half, args, tile_elements)
    assert got_grad.dtype == torch.bfloat16 and all(t.dtype == torch.float32 for t in got)
    for g, v in zip(got, want, strict=True):
        torch.testing.assert_close(g, v, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(got_grad, want_grad.to(torch.bfloat16), rtol=0, atol=0)


def test_sequence_tiles_cover_the_sequence_within_the_limit():
    """Invariant: the tiles are contiguous, disjoint, cover [0, D) and hold at most the limit
    (one position when a single position is already larger); a limit below 1 is refused."""
    logits = torch.zeros(2, 3, 10, 7)  # 42 elements per position
    for limit, width in [(None, 10), (42, 1), (100, 2), (420, 10), (10**9, 10), (5, 1)]:
        tiles = sequence_tiles(logits, limit)
        assert [t.start for t in tiles] == list(range(0, 10, width))
        assert tiles[-1].stop == 10 and all(
            a.stop == b.start for a, b in zip(tiles[:-1], tiles[1:], strict=True)
        )
        assert max(t.stop - t.start for t in tiles) == width
    with pytest.raises(ValueError, match="max_elements=0"):
        sequence_tiles(logits, 0)
