"""di4c_loss_terms (the fused loss Di4CObjective uses) against the composition of the per-term
log-probability functions of mixdistill/losses.py: same values, same gradients."""

import itertools

import pytest
import torch

from mixdistill.di4c.fused_losses import di4c_loss_terms
from mixdistill.di4c.losses import (
    consistency_loss,
    data_loss,
    distillation_loss,
    mixture_log_marginal,
)
from mixdistill.sampling.categorical import NEG_INF

B, N, D, S, M = 3, 4, 5, 6, 4


def composed(logits, teacher_logp, x0, w, targets, target_lm, rows, distil, cv):
    logp = logits.log_softmax(-1)
    lm = mixture_log_marginal(logp)
    zeros = logits.new_zeros(B)
    dist = distillation_loss(teacher_logp, logp) if distil else zeros
    consis = zeros
    if targets is not None:
        r = torch.arange(B) if rows is None else rows
        consis = zeros.index_copy(0, r, consistency_loss(logp[r], targets, target_lm, cv, lm[r]))
    data = data_loss(logp, x0, teacher_logp, w, cv, lm) if x0 is not None else zeros
    return dist, consis, data


def problem(seed, subset, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(B, N, D, S, generator=g, dtype=dtype)
    logits[:, :, 0, 1:] = NEG_INF  # a pinned dimension, as the subs parameterisation gives
    teacher = torch.randn(B, D, S, generator=g, dtype=dtype).log_softmax(-1)
    x0 = torch.randint(0, S, (B, D), generator=g)
    x0[:, 0] = 0
    w = torch.rand(B, generator=g, dtype=dtype)
    rows = torch.tensor([2, 0]) if subset else None
    b = 2 if subset else B
    targets = torch.randint(0, S, (b, M, D), generator=g)
    targets[:, :, 0] = 0
    target_lm = torch.randn(b, D, S, generator=g, dtype=dtype).log_softmax(-1)
    return logits, teacher, x0, w, targets, target_lm, rows


def case(seed, cv, distil, use_data, use_targets, subset):
    """``problem(seed, subset)``'s logits and the other arguments of di4c_loss_terms for one CASES entry."""
    logits, teacher, x0, w, targets, target_lm, rows = problem(seed, subset)
    pick = (x0 if use_data else None, targets if use_targets else None, target_lm if use_targets else None)
    return logits, (teacher, pick[0], w, pick[1], pick[2], rows, distil, cv)


CASES = [
    (cv, distil, data, tgt, sub)
    for cv, distil, data, tgt, sub in itertools.product([True, False], repeat=5)
    if (distil or data or tgt) and (tgt or not sub)
]


@pytest.mark.parametrize("cv,distil,use_data,use_targets,subset", CASES)
def test_values_and_gradients_match_composition(cv, distil, use_data, use_targets, subset):
    logits, args = case(0, cv, distil, use_data, use_targets, subset)
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    fused, ref = di4c_loss_terms(a, *args), composed(b, *args)
    weights = [torch.linspace(0.5, 1.5, B, dtype=torch.float64) * (k + 1) for k in range(3)]
    sum((o * g).sum() for o, g in zip(fused, weights, strict=True)).backward()
    sum((o * g).sum() for o, g in zip(ref, weights, strict=True) if o.requires_grad).backward()
    for got, want in zip(fused, ref, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    assert torch.isfinite(a.grad).all()
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-10)


def test_gradcheck():
    logits, teacher, x0, w, targets, target_lm, rows = problem(1, True)
    logits = logits[:, :, 1:].clone().requires_grad_(True)  # finite-difference friendly (no NEG_INF)

    def f(z):
        return di4c_loss_terms(z, teacher[:, 1:], x0[:, 1:], w, targets[..., 1:], target_lm[:, 1:], rows)

    assert torch.autograd.gradcheck(f, (logits,))


def test_float32_within_1e5_of_float64():
    logits, teacher, x0, w, targets, target_lm, _ = problem(2, False)
    want = di4c_loss_terms(logits, teacher, x0, w, targets, target_lm)
    got = di4c_loss_terms(logits.float(), teacher.float(), x0, w.float(), targets, target_lm.float())
    for g, v in zip(got, want, strict=True):
        torch.testing.assert_close(g.double(), v, rtol=1e-5, atol=1e-5)


def test_constant_targets_must_not_require_grad():
    logits, teacher, x0, w, targets, target_lm, _ = problem(3, False)
    with pytest.raises(ValueError, match="teacher_logp"):
        di4c_loss_terms(logits, teacher.requires_grad_(True), x0, w)
    with pytest.raises(ValueError, match="target_log_marginal"):
        di4c_loss_terms(logits, None, None, None, targets, target_lm.requires_grad_(True), distil=False)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("cv", [True, False])
def test_terms_stay_finite_at_probabilities_zero_and_one(dtype, cv):
    """Invariant (issue 9): with every distribution saturated (one state at probability 1, the rest
    at exactly 0 through NEG_INF) in the student, the teacher and the target marginal, and data and
    targets that hit zero-probability states, the three terms and the gradient stay finite, for
    logits held in bf16 (passed as they are, as Di4CObjective does under bf16 autocast) or fp32."""
    g = torch.Generator().manual_seed(0)
    hot = torch.randint(0, S, (B, N, D), generator=g)
    logits = torch.full((B, N, D, S), NEG_INF).scatter_(-1, hot[..., None], 0.0)
    logits = logits.to(dtype).requires_grad_(True)  # (B, N, D, S), probabilities 0 / 1
    teacher = torch.full((B, D, S), NEG_INF).scatter_(-1, hot[:, 0, :, None], 0.0).log_softmax(-1)
    target_lm = (
        torch.full((B, D, S), NEG_INF).scatter_(-1, ((hot[:, 0] + 1) % S)[..., None], 0.0).log_softmax(-1)
    )
    x0 = (hot[:, 0] + 2) % S  # a state of probability 0 under the student and the teacher
    targets = (hot[:, :M] + 1) % S  # (B, M, D), probability 0 under the student
    w = torch.ones(B)
    terms = di4c_loss_terms(logits, teacher, x0, w, targets, target_lm, None, True, cv)
    total = sum(t.sum() for t in terms)
    total.backward()
    for name, t in zip(("distillation", "consistency", "data"), terms, strict=True):
        assert torch.isfinite(t).all(), (name, t)
    assert torch.isfinite(logits.grad).all()
    # The distillation KL of a saturated mismatch is -NEG_INF = 1e6 per mismatched token: counted, not
    # clamped away (the other two terms are sample estimates, of either sign without the control variate).
    assert (terms[0] >= 1e6).all()
