"""tau-LDR's truncated-logistic head: the memory-lean backward equals autograd of the formula."""

from __future__ import annotations

import torch

from mixdistill.nets.truncated_logistic import truncated_logistic_logits


def reference(out: torch.Tensor, num_states: int) -> torch.Tensor:
    """``log(cdf_r - cdf_l + 1e-6 cdf_r)`` per bin, through plain autograd, in the input's dtype."""
    C = out.shape[1] // 2
    mu, inv_scale = out[:, :C].unsqueeze(-1), torch.exp(2 - out[:, C:]).unsqueeze(-1)
    edges = -1 + 2 / num_states * torch.arange(num_states + 1, dtype=out.dtype)
    cdf = torch.sigmoid((edges - mu) * inv_scale)
    return torch.log(cdf[..., 1:] - cdf[..., :-1] + 1e-6 * cdf[..., 1:])


def test_values_and_gradients_match_autograd_of_the_formula():
    """Invariant: the head's logits and its gradients w.r.t. the network output (means and
    log-scales) for a random upstream gradient equal those autograd derives from the formula, in
    float64, over means inside and outside [-1, 1] and sharp and flat scales (log-scales in [-1, 3],
    inside which the formula's CDF differences do not underflow even in float64)."""
    torch.manual_seed(0)
    out = torch.cat([torch.randn(3, 2, 4, 4) * 1.5, torch.rand(3, 2, 4, 4) * 4 - 1], 1).double()
    out.requires_grad_(True)
    got = truncated_logistic_logits(out, 16)
    want = reference(out, 16)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    upstream = torch.randn_like(want)
    (g_got,) = torch.autograd.grad(got, out, upstream)
    (g_want,) = torch.autograd.grad(want, out, upstream)
    # The formula loses digits where both CDFs are near 1 (cancellation); the log-space head does not.
    torch.testing.assert_close(g_got, g_want, rtol=1e-6, atol=1e-7)


def test_gradcheck():
    """Invariant: the hand-written backward passes torch's finite-difference gradient check."""
    torch.manual_seed(1)
    out = (
        torch.cat([torch.randn(2, 1, 2, 2), torch.rand(2, 1, 2, 2) * 2 + 1], 1).double().requires_grad_(True)
    )
    assert torch.autograd.gradcheck(lambda o: truncated_logistic_logits(o, 8), (out,))


def test_half_precision_output_gives_float32_logits_at_float32_accuracy():
    """Invariant: a bf16 network output (autocast) gives float32 logits, equal to those of the same
    values given in float32 (the bin edges are never formed in bf16), and its gradient reaches the
    bf16 output in bf16."""
    torch.manual_seed(2)
    out = torch.cat([torch.randn(2, 3, 4, 4), torch.rand(2, 3, 4, 4) * 3], 1).bfloat16().requires_grad_(True)
    got = truncated_logistic_logits(out, 256)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, truncated_logistic_logits(out.detach().float(), 256), rtol=0, atol=0)
    got.sum().backward()
    assert out.grad.dtype == torch.bfloat16 and bool(out.grad.isfinite().all())
