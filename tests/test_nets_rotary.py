"""Rotary position embeddings and the transformer denoiser built on them."""

import torch

from mixdistill.nets.rotary import RotaryBlock, rotary_tables, rotate
from mixdistill.nets.transformer import TransformerDenoiserNet


def test_rotary_scores_depend_only_on_relative_position():
    """Invariant: <R_i q, R_j k> = <R_(i+s) q, R_(j+s) k> for every shift s, and rotations keep norms."""
    torch.manual_seed(0)
    cos, sin = rotary_tables(32, 8)
    q, k = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)

    def at(x, pos):  # x rotated to position ``pos``
        return rotate(x.view(1, 1, 1, 8), cos[pos : pos + 1].double(), sin[pos : pos + 1].double()).view(8)

    base = at(q, 3) @ at(k, 7)
    for shift in (1, 5, 20):
        torch.testing.assert_close(at(q, 3 + shift) @ at(k, 7 + shift), base, rtol=1e-6, atol=1e-6)
    assert abs(float(at(q, 3) @ at(k, 9) - base)) > 1e-3  # another offset gives another score
    torch.testing.assert_close(at(q, 11).norm(), q.norm(), rtol=1e-6, atol=1e-6)


def test_rotary_block_rejects_odd_head_dimensions():
    """Invariant: RoPE pairs features, so dim / heads must be even; the error names both."""
    try:
        RotaryBlock(dim=12, heads=4)
    except ValueError as err:
        assert "dim=12" in str(err) and "heads=4" in str(err)
    else:
        raise AssertionError("RotaryBlock(dim=12, heads=4) was accepted")


def test_denoiser_sees_its_neighbours_and_their_order():
    """Invariant: a masked position's logits change when a neighbour changes, and when two
    neighbours swap places (the net is not a bag of words); other rows of the batch are untouched."""
    torch.manual_seed(0)
    net = TransformerDenoiserNet(num_dims=6, num_states=11, vocab_size=10, dim=16, depth=2, heads=2).eval()
    x = torch.tensor([[1, 2, 10, 3, 4, 5], [6, 7, 10, 8, 9, 0]])
    t = torch.full((2,), 0.5)
    base = net(x, t)
    swapped = x.clone()
    swapped[0, [1, 3]] = swapped[0, [3, 1]]
    out = net(swapped, t)
    assert (out[0, 2] - base[0, 2]).abs().max() > 1e-4
    torch.testing.assert_close(out[1], base[1])
    changed = x.clone()
    changed[0, 1] = 9
    assert (net(changed, t)[0, 2] - base[0, 2]).abs().max() > 1e-4
