"""Tests of the batched Di4C losses (mixdistill/losses.py).

Three kinds of checks:

* every batched function equals a direct loop / enumeration reference, in value and in gradient;
* the Monte Carlo estimators converge, as the latent batch n grows, to the population quantities
  derived in METHOD.md section 3 (computed exactly by enumerating S^D and quadrature over lambda):
  E[data loss (alpha = 1)] -> KL(q || p) - TC(q) and E[consistency] -> KL(r || p) - TC(r);
* the control variates change the variance, not the expectation; NEG_INF log-probabilities
  keep everything finite.
"""

from __future__ import annotations

import math

import pytest
import torch

from mixdistill.di4c.losses import (
    component_log_prob,
    consistency_loss,
    correlation_term,
    data_loss,
    distillation_loss,
    marginal_kl,
    marginal_log_prob,
    mixture_log_marginal,
    mixture_log_prob,
)
from mixdistill.sampling.categorical import NEG_INF
from mixdistill.tables import enumerate_states

B, N, D, S, M = 3, 4, 3, 4, 5  # examples, latents, dimensions, values, targets (M != N on purpose)


# ---------------------------------------------------------------------------------------------
# Loop references: written from the definitions in METHOD.md with explicit probabilities, one
# scalar at a time, sharing no code with the batched implementation.
# ---------------------------------------------------------------------------------------------
def ref_log_marginal(logp):
    """log pbar^d(v) = log( (1/n) sum_j p_j^d(v) )."""
    b_, n, d_, s_ = logp.shape
    out = torch.empty(b_, d_, s_, dtype=logp.dtype)
    for b in range(b_):
        for d in range(d_):
            for v in range(s_):
                out[b, d, v] = torch.log(sum(logp[b, j, d, v].exp() for j in range(n)) / n)
    return out


def ref_component_log_prob(logp, y):
    """log prod_d p_j^d(y_i^d), via the product of probabilities."""
    b_, n, d_, _ = logp.shape
    out = torch.empty(b_, n, y.shape[1], dtype=logp.dtype)
    for b in range(b_):
        for j in range(n):
            for i in range(y.shape[1]):
                prob = 1.0
                for d in range(d_):
                    prob = prob * logp[b, j, d, y[b, i, d]].exp()
                out[b, j, i] = torch.log(prob)
    return out


def ref_mixture_log_prob(logp, y):
    """log p_hat(y_i) = log( (1/n) sum_j prod_d p_j^d(y_i^d) )."""
    b_, n, d_, _ = logp.shape
    out = torch.empty(b_, y.shape[1], dtype=logp.dtype)
    for b in range(b_):
        for i in range(y.shape[1]):
            total = 0.0
            for j in range(n):
                prob = 1.0
                for d in range(d_):
                    prob = prob * logp[b, j, d, y[b, i, d]].exp()
                total = total + prob
            out[b, i] = torch.log(total / n)
    return out


def ref_marginal_log_prob(log_marginal, y):
    b_, m, d_ = y.shape
    out = torch.empty(b_, m, dtype=log_marginal.dtype)
    for b in range(b_):
        for i in range(m):
            out[b, i] = sum(log_marginal[b, d, y[b, i, d]] for d in range(d_))
    return out


def ref_correlation(logp, y):
    """corr(y) = -(log p_hat(y) - sum_d log pbar^d(y^d))."""
    return -(ref_mixture_log_prob(logp, y) - ref_marginal_log_prob(ref_log_marginal(logp), y))


def ref_marginal_kl(log_p, log_q):
    """sum_d sum_v p log(p / q), skipping p = 0."""
    b_, d_, s_ = log_p.shape
    out = torch.empty(b_, dtype=log_p.dtype)
    for b in range(b_):
        total = 0.0
        for d in range(d_):
            for v in range(s_):
                p = log_p[b, d, v].exp()
                if p > 0:
                    total = total + p * (log_p[b, d, v] - log_q[b, d, v])
        out[b] = total
    return out


def ref_distillation(teacher_logp, logp):
    """(1/n) sum_j sum_d KL(p_T^d || p_j^d)."""
    n = logp.shape[1]
    kls = [ref_marginal_kl(teacher_logp, logp[:, j]) for j in range(n)]
    return sum(kls) / n


def ref_consistency(logp, y, target_lm, control_variate):
    corr = ref_correlation(logp, y).mean(1)
    lm = ref_log_marginal(logp)
    if control_variate:
        return corr + ref_marginal_kl(target_lm, lm)
    gap = ref_marginal_log_prob(target_lm, y) - ref_marginal_log_prob(lm, y)
    return corr + gap.mean(1)


def ref_data(logp, x0, teacher_logp, w, control_variate):
    y = x0.unsqueeze(1)
    corr = ref_correlation(logp, y)[:, 0]
    lm = ref_log_marginal(logp)
    if control_variate:
        kl = ref_marginal_kl(teacher_logp, lm)
    else:
        kl = (ref_marginal_log_prob(teacher_logp, y) - ref_marginal_log_prob(lm, y))[:, 0]
    return w * corr + kl


@pytest.fixture
def small():
    """Random logits in float64: student (B, n, D, S), teacher (B, D, S), targets (B, m, D), data."""
    g = torch.Generator().manual_seed(1234)
    return {
        "logits": 2.0 * torch.randn(B, N, D, S, generator=g, dtype=torch.float64),
        "teacher": 2.0 * torch.randn(B, D, S, generator=g, dtype=torch.float64),
        "target": 2.0 * torch.randn(B, D, S, generator=g, dtype=torch.float64),
        "y": torch.randint(0, S, (B, M, D), generator=g),
        "x0": torch.randint(0, S, (B, D), generator=g),
        "w": torch.rand(B, generator=g, dtype=torch.float64),
    }


# ---------------------------------------------------------------------------------------------
# Values against the loop references
# ---------------------------------------------------------------------------------------------
def test_mixture_log_marginal_matches_loop(small):
    """log pbar^d(v) = logsumexp_j log p_j^d(v) - log n, and it is a normalised distribution."""
    logp = small["logits"].log_softmax(-1)
    out = mixture_log_marginal(logp)
    assert out.shape == (B, D, S)
    torch.testing.assert_close(out, ref_log_marginal(logp), rtol=0, atol=1e-10)
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(B, D, dtype=torch.float64))


def test_component_and_mixture_log_prob_match_loops(small):
    """sum_d log p_j^d(y_i^d) (B, n, m) and log p_hat(y_i) (B, m) equal explicit product loops."""
    logp, y = small["logits"].log_softmax(-1), small["y"]
    comp = component_log_prob(logp, y)
    assert comp.shape == (B, N, M)
    torch.testing.assert_close(comp, ref_component_log_prob(logp, y), rtol=0, atol=1e-10)
    mix = mixture_log_prob(logp, y)
    assert mix.shape == (B, M)
    torch.testing.assert_close(mix, ref_mixture_log_prob(logp, y), rtol=0, atol=1e-10)


def test_mixture_log_prob_is_normalised_over_all_vectors():
    """p_hat sums to 1 over all S^D vectors (it is itself a mixture distribution)."""
    g = torch.Generator().manual_seed(5)
    logp = torch.randn(2, N, D, S, generator=g, dtype=torch.float64).log_softmax(-1)
    ys = enumerate_states(S, D).unsqueeze(0).expand(2, -1, -1)  # (2, S^D, D)
    total = mixture_log_prob(logp, ys).exp().sum(1)
    torch.testing.assert_close(total, torch.ones(2, dtype=torch.float64))


def test_marginal_log_prob_and_correlation_match_loops(small):
    """sum_d log pbar^d(y^d) and corr(y) equal the loop references; passing a precomputed
    log_marginal gives the same corr."""
    logp, y = small["logits"].log_softmax(-1), small["y"]
    lm = mixture_log_marginal(logp)
    torch.testing.assert_close(marginal_log_prob(lm, y), ref_marginal_log_prob(lm, y), rtol=0, atol=1e-10)
    corr = correlation_term(logp, y)
    assert corr.shape == (B, M)
    torch.testing.assert_close(corr, ref_correlation(logp, y), rtol=0, atol=1e-10)
    torch.testing.assert_close(correlation_term(logp, y, lm), corr, rtol=0, atol=0)


def test_correlation_term_vanishes_for_a_single_component(small):
    """With n = 1 the mixture is a product, p_hat = prod_d pbar^d, so corr is exactly 0."""
    logp = small["logits"][:, :1].log_softmax(-1)
    torch.testing.assert_close(correlation_term(logp, small["y"]), torch.zeros(B, M, dtype=torch.float64))


def test_marginal_kl_matches_sum_p_log_p_over_q(small):
    """sum_d KL(p^d || q^d) = sum_{d,v} p log(p/q); it is 0 for equal inputs and positive otherwise."""
    log_p, log_q = small["teacher"].log_softmax(-1), small["target"].log_softmax(-1)
    out = marginal_kl(log_p, log_q)
    assert out.shape == (B,)
    torch.testing.assert_close(out, ref_marginal_kl(log_p, log_q), rtol=0, atol=1e-10)
    assert (out > 0).all()
    torch.testing.assert_close(marginal_kl(log_p, log_p), torch.zeros(B, dtype=torch.float64))


def test_distillation_loss_is_mean_of_component_kls(small):
    """L_distil = (1/n) sum_j sum_d KL(p_T^d || p_j^d), which is >= sum_d KL(p_T^d || pbar^d)
    (convexity of KL: the upper bound METHOD.md mentions)."""
    teacher, logp = small["teacher"].log_softmax(-1), small["logits"].log_softmax(-1)
    out = distillation_loss(teacher, logp)
    assert out.shape == (B,)
    torch.testing.assert_close(out, ref_distillation(teacher, logp), rtol=0, atol=1e-10)
    assert (out >= marginal_kl(teacher, mixture_log_marginal(logp)) - 1e-12).all()


@pytest.mark.parametrize("cv", [True, False])
def test_consistency_loss_matches_loop(small, cv):
    """consistency = mean_i corr(y_i) + (exact KL | its estimate on the same targets)."""
    logp, y = small["logits"].log_softmax(-1), small["y"]
    target_lm = small["target"].log_softmax(-1)
    out = consistency_loss(logp, y, target_lm, control_variate=cv)
    assert out.shape == (B,)
    torch.testing.assert_close(out, ref_consistency(logp, y, target_lm, cv), rtol=0, atol=1e-10)
    lm = mixture_log_marginal(logp)
    torch.testing.assert_close(consistency_loss(logp, y, target_lm, cv, log_marginal=lm), out)


@pytest.mark.parametrize("cv", [True, False])
def test_data_loss_matches_loop(small, cv):
    """data = alpha(t) corr(x0) + (sum_d KL(p_T^d || pbar^d) | its one-sample estimate at x0)."""
    logp, x0, w = small["logits"].log_softmax(-1), small["x0"], small["w"]
    teacher = small["teacher"].log_softmax(-1)
    out = data_loss(logp, x0, teacher, w, control_variate=cv)
    assert out.shape == (B,)
    torch.testing.assert_close(out, ref_data(logp, x0, teacher, w, cv), rtol=0, atol=1e-10)
    # alpha = 0 leaves only the marginal part.
    zero = data_loss(logp, x0, teacher, torch.zeros(B, dtype=torch.float64), control_variate=cv)
    torch.testing.assert_close(zero, ref_data(logp, x0, teacher, torch.zeros(B), cv), rtol=0, atol=1e-10)


def test_float32_values_within_1e5(small):
    """In float32 (the dtype the objective uses) the batched losses agree with the float64
    loop references to 1e-5."""
    logp64 = small["logits"].log_softmax(-1)
    teacher64 = small["teacher"].log_softmax(-1)
    target64 = small["target"].log_softmax(-1)
    logp, teacher, target = logp64.float(), teacher64.float(), target64.float()
    y, x0, w = small["y"], small["x0"], small["w"]
    pairs = [
        (mixture_log_prob(logp, y), ref_mixture_log_prob(logp64, y)),
        (correlation_term(logp, y), ref_correlation(logp64, y)),
        (distillation_loss(teacher, logp), ref_distillation(teacher64, logp64)),
        (consistency_loss(logp, y, target), ref_consistency(logp64, y, target64, True)),
        (data_loss(logp, x0, teacher, w.float()), ref_data(logp64, x0, teacher64, w, True)),
    ]
    for got, want in pairs:
        torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Gradients against the loop references
# ---------------------------------------------------------------------------------------------
def _grads(fn, *leaves):
    """Gradient of a random linear functional of fn(*leaves) (covers every output entry)."""
    leaves = [x.detach().clone().requires_grad_(True) for x in leaves]
    out = fn(*leaves)
    weights = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).view_as(out)
    return torch.autograd.grad((out * weights).sum(), leaves)


@pytest.mark.parametrize(
    "name",
    ["log_marginal", "mixture_log_prob", "correlation", "distil", "consis_cv", "consis_nocv", "data_cv"]
    + ["data_nocv", "marginal_kl"],
)
def test_gradients_match_loop_reference(small, name):
    """d loss / d (student logits, teacher/target logits) of every batched function equals that
    of the loop reference (autograd through log_softmax of both)."""
    y, x0, w = small["y"], small["x0"], small["w"]
    batched = {
        "log_marginal": lambda a, b: mixture_log_marginal(a.log_softmax(-1)) + 0 * b.sum(),
        "mixture_log_prob": lambda a, b: mixture_log_prob(a.log_softmax(-1), y) + 0 * b.sum(),
        "correlation": lambda a, b: correlation_term(a.log_softmax(-1), y) + 0 * b.sum(),
        "distil": lambda a, b: distillation_loss(b.log_softmax(-1), a.log_softmax(-1)),
        "consis_cv": lambda a, b: consistency_loss(a.log_softmax(-1), y, b.log_softmax(-1), True),
        "consis_nocv": lambda a, b: consistency_loss(a.log_softmax(-1), y, b.log_softmax(-1), False),
        "data_cv": lambda a, b: data_loss(a.log_softmax(-1), x0, b.log_softmax(-1), w, True),
        "data_nocv": lambda a, b: data_loss(a.log_softmax(-1), x0, b.log_softmax(-1), w, False),
        "marginal_kl": lambda a, b: marginal_kl(b.log_softmax(-1), a[:, 0].log_softmax(-1)),
    }
    loop = {
        "log_marginal": lambda a, b: ref_log_marginal(a.log_softmax(-1)) + 0 * b.sum(),
        "mixture_log_prob": lambda a, b: ref_mixture_log_prob(a.log_softmax(-1), y) + 0 * b.sum(),
        "correlation": lambda a, b: ref_correlation(a.log_softmax(-1), y) + 0 * b.sum(),
        "distil": lambda a, b: ref_distillation(b.log_softmax(-1), a.log_softmax(-1)),
        "consis_cv": lambda a, b: ref_consistency(a.log_softmax(-1), y, b.log_softmax(-1), True),
        "consis_nocv": lambda a, b: ref_consistency(a.log_softmax(-1), y, b.log_softmax(-1), False),
        "data_cv": lambda a, b: ref_data(a.log_softmax(-1), x0, b.log_softmax(-1), w, True),
        "data_nocv": lambda a, b: ref_data(a.log_softmax(-1), x0, b.log_softmax(-1), w, False),
        "marginal_kl": lambda a, b: ref_marginal_kl(b.log_softmax(-1), a[:, 0].log_softmax(-1)),
    }
    student, other = small["logits"], small["teacher"]
    got = _grads(batched[name], student, other)
    want = _grads(loop[name], student, other)
    assert got[0].abs().sum() > 0  # the student gradient is not trivially zero
    for g_, w_ in zip(got, want, strict=True):
        torch.testing.assert_close(g_, w_, rtol=0, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# Estimator convergence against enumeration
# ---------------------------------------------------------------------------------------------
ED, ES = 3, 3  # dimensions and values of the enumerated problem
QUAD = 4000  # midpoint nodes for the exact mixture
REPS = 4000  # Monte Carlo replicates, vectorised in the batch axis
#: Fewer replicates for large n in the consistency check: its cost grows as n * m = n^2 per
#: replicate while its variance shrinks (it averages m = n targets).
CONSIS_REPS = {2: 4000, 8: 2000, 32: 1000, 128: 250}


class AnalyticStudent:
    """A lambda-indexed family of product distributions, logits(lambda) = A + lambda B + C sin(2 pi lambda),
    whose exact continuous mixture p(y) = int_0^1 prod_d p^d(y^d | lambda) d lambda is computed by
    midpoint quadrature over all S^D vectors."""

    def __init__(self, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.A = torch.randn(ED, ES, generator=g, dtype=torch.float64)
        self.B = 3.0 * torch.randn(ED, ES, generator=g, dtype=torch.float64)
        self.C = 1.5 * torch.randn(ED, ES, generator=g, dtype=torch.float64)
        self.states = enumerate_states(ES, ED)  # (S^D, D)
        nodes = (torch.arange(QUAD, dtype=torch.float64) + 0.5) / QUAD
        comp = self.logp(nodes)[:, torch.arange(ED), self.states].sum(-1)  # (QUAD, S^D)
        self.log_p = torch.logsumexp(comp, 0) - math.log(QUAD)  # (S^D,)

    def logp(self, lam):
        """Per-dimension log-probabilities ``(..., D, S)`` for lambdas ``(...)``."""
        lam = lam[..., None, None]
        return (self.A + lam * self.B + self.C * torch.sin(2 * math.pi * lam)).log_softmax(-1)


def table_marginals(log_table, states):
    """Per-dimension log-marginals ``(D, S)`` of a log-probability table over ``states``."""
    probs = log_table.exp()
    marg = torch.stack(
        [torch.zeros(ES, dtype=probs.dtype).index_add_(0, states[:, d], probs) for d in range(ED)]
    )
    return marg.log()


def kl_minus_tc(log_q, log_p, states):
    """KL(q || p) - TC(q), with TC(q) = sum_d H(q^d) - H(q) (total correlation)."""
    q = log_q.exp()
    mq = table_marginals(log_q, states)
    kl = (q * (log_q - log_p)).sum()
    tc = -(mq.exp() * mq).sum() + (q * log_q).sum()
    return float(kl), float(tc)


def correlated_table(seed: int) -> torch.Tensor:
    """A log-probability table over S^D with strong dependence between dimensions."""
    g = torch.Generator().manual_seed(seed)
    states = enumerate_states(ES, ED)
    agree = (states[:, 0] == states[:, 1]).double() + (states[:, 1] == states[:, 2]).double()
    return (1.5 * agree + 0.7 * torch.randn(ES**ED, generator=g, dtype=torch.float64)).log_softmax(0)


@pytest.fixture(scope="module")
def analytic():
    return AnalyticStudent(seed=0)


def _mc_data(student, log_q, n, gen, reps=REPS):
    """Per-replicate data losses (alpha = 1) with and without control variate, y ~ q, p_T = q's marginals."""
    lam = torch.rand(reps, n, generator=gen, dtype=torch.float64)
    logp = student.logp(lam)  # (R, n, D, S)
    y = student.states[torch.multinomial(log_q.exp(), reps, replacement=True, generator=gen)]
    teacher = table_marginals(log_q, student.states).expand(reps, -1, -1)
    ones = torch.ones(reps, dtype=torch.float64)
    return data_loss(logp, y, teacher, ones, True), data_loss(logp, y, teacher, ones, False)


def _mc_consistency(student, log_r, n, gen, reps=REPS):
    """Per-replicate consistency losses with n targets drawn from the exact distribution r and
    target_log_marginal = r's exact marginals."""
    lam = torch.rand(reps, n, generator=gen, dtype=torch.float64)
    logp = student.logp(lam)
    idx = torch.multinomial(log_r.exp(), reps * n, replacement=True, generator=gen)
    y = student.states[idx].view(reps, n, ED)
    target = table_marginals(log_r, student.states).expand(reps, -1, -1)
    return consistency_loss(logp, y, target, True), consistency_loss(logp, y, target, False)


def _check_convergence(values_by_n, expected, label):
    """|bias| decreases with n, is clearly non-zero at n = 2 (the test has power) and at n = 128
    lies within 4 standard errors (+0.01) of the population value."""
    rows = []
    for n, v in values_by_n.items():
        mean, se = float(v.mean()), float(v.std() / math.sqrt(v.numel()))
        rows.append((n, mean - expected, se))
    print(f"\n{label}: expected {expected:.4f}")
    for n, bias, se in rows:
        print(f"  n={n:4d} bias={bias:+.4f} se={se:.4f}")
    biases = [abs(b) for _, b, _ in rows]
    assert biases[0] > 10 * rows[0][2], "the n=2 bias should be clearly visible"
    assert biases[0] > biases[1] > biases[-1], f"|bias| should shrink with n: {biases}"
    n_last, bias_last, se_last = rows[-1]
    assert abs(bias_last) < 4 * se_last + 0.01, f"n={n_last}: bias {bias_last:.4f} vs se {se_last:.4f}"
    return rows


def _mc_data_exact_in_y(student, log_q, n, gen, reps):
    """Per-replicate E_y[data loss (alpha = 1)] with y ~ q summed exactly over all S^D vectors
    (Monte Carlo over the lambdas only), with and without control variate."""
    num = student.states.shape[0]
    lam = torch.rand(reps, n, generator=gen, dtype=torch.float64)
    logp = student.logp(lam).repeat_interleave(num, 0)  # (R S^D, n, D, S): every y for every row
    y = student.states.repeat(reps, 1)  # (R S^D, D)
    teacher = table_marginals(log_q, student.states).expand(reps * num, -1, -1)
    ones = torch.ones(reps * num, dtype=torch.float64)
    q = log_q.exp()
    on = data_loss(logp, y, teacher, ones, True).view(reps, num) @ q
    off = data_loss(logp, y, teacher, ones, False).view(reps, num) @ q
    return on, off


def test_data_loss_converges_to_kl_minus_total_correlation(analytic):
    """E[data loss, alpha = 1] -> KL(q || p) - TC(q) as n -> infinity (y ~ q, p_T^d = q^d).

    The expectation over y is an exact sum over S^D (so only lambda noise remains); given the
    lambdas, the estimate without control variate has exactly the same expectation over y."""
    log_q = correlated_table(seed=1)
    kl, tc = kl_minus_tc(log_q, analytic.log_p, analytic.states)
    assert tc > 0.1  # q is genuinely correlated, so TC matters for the check
    gen = torch.Generator().manual_seed(11)
    values = {}
    for n, reps in {2: 1000, 8: 1000, 32: 500, 128: 250}.items():
        on, off = _mc_data_exact_in_y(analytic, log_q, n, gen, reps)
        torch.testing.assert_close(off, on, rtol=0, atol=1e-10)
        values[n] = on
    rows = _check_convergence(values, kl - tc, "data loss (exact in y)")
    # The limit is KL - TC, not KL alone: the n=128 estimate is far from KL(q||p).
    assert abs(rows[-1][1] + tc) > 10 * rows[-1][2]


def test_consistency_loss_converges_to_kl_minus_total_correlation(analytic):
    """E[consistency] -> KL(r || p) - TC(r) with targets y_i ~ r and pbar_target = r's marginals."""
    log_r = correlated_table(seed=2)
    kl, tc = kl_minus_tc(log_r, analytic.log_p, analytic.states)
    assert tc > 0.1
    gen = torch.Generator().manual_seed(12)
    values = {n: _mc_consistency(analytic, log_r, n, gen, reps=r)[0] for n, r in CONSIS_REPS.items()}
    rows = _check_convergence(values, kl - tc, "consistency loss")
    assert abs(rows[-1][1] + tc) > 10 * rows[-1][2]


def _compare_control_variates(on, off, label):
    """Same expectation (paired difference within 4 standard errors), lower variance with the
    control variate; returns Var(off) / Var(on)."""
    diff = off - on
    se = float(diff.std() / math.sqrt(diff.numel()))
    ratio = float(off.var() / on.var())
    print(
        f"\n{label}: mean on {float(on.mean()):.4f} off {float(off.mean()):.4f} "
        f"(diff {float(diff.mean()):+.4f}, se {se:.4f}); Var(off)/Var(on) = {ratio:.2f}"
    )
    assert abs(float(diff.mean())) < 4 * se
    assert ratio > 1.0
    return ratio


def test_data_loss_control_variate_same_mean_lower_variance(analytic):
    """With y ~ q and p_T = q's marginals, the one-sample marginal term has the exact KL as its
    expectation, so both variants agree in mean; the exact KL has less variance."""
    log_q = correlated_table(seed=1)
    gen = torch.Generator().manual_seed(21)
    on, off = _mc_data(analytic, log_q, 16, gen)
    ratio = _compare_control_variates(on, off, "data loss, n=16")
    assert ratio > 2.0


def test_consistency_control_variate_same_mean_lower_variance_exact_target(analytic):
    """Targets y_i ~ r (exact, correlated) and pbar_target = r's marginals: both variants agree in
    mean, the exact KL has less variance."""
    gen = torch.Generator().manual_seed(22)
    on, off = _mc_consistency(analytic, correlated_table(seed=2), 16, gen, reps=2000)
    ratio = _compare_control_variates(on, off, "consistency loss, exact target r, n=16")
    assert ratio > 2.0


def test_consistency_control_variate_same_mean_lower_variance_mixture_target(analytic):
    """Targets y_i from component i of a fixed finite target mixture (n product distributions, as
    the objective builds them), pbar_target = the components' average: both variants agree in
    mean, the exact KL has less variance."""
    n, reps = 16, 4000
    gen = torch.Generator().manual_seed(23)
    # The target components: the analytic family at other lambdas with a fixed tilt, so that the
    # target mixture differs from the student's.
    lam_t = torch.rand(1, n, generator=gen, dtype=torch.float64)
    tilt = torch.randn(1, 1, ED, ES, generator=gen, dtype=torch.float64)
    target_logp = (analytic.logp(lam_t) + tilt).log_softmax(-1).expand(reps, -1, -1, -1)  # (R, n, D, S)
    y = torch.multinomial(target_logp.exp().reshape(-1, ES), 1, generator=gen).view(reps, n, ED)
    target_lm = mixture_log_marginal(target_logp)
    logp = analytic.logp(torch.rand(reps, n, generator=gen, dtype=torch.float64))
    on = consistency_loss(logp, y, target_lm, True)
    off = consistency_loss(logp, y, target_lm, False)
    ratio = _compare_control_variates(on, off, "consistency loss, mixture target, n=16")
    assert ratio > 1.2


def test_control_variate_check_detects_a_biased_marginal_term(analytic):
    """Sanity check of the comparison itself: if the targets do not follow pbar_target (here the
    target marginals are tilted), the two variants differ by far more than 4 standard errors."""
    log_q = correlated_table(seed=1)
    gen = torch.Generator().manual_seed(24)
    lam = torch.rand(REPS, 16, generator=gen, dtype=torch.float64)
    logp = analytic.logp(lam)
    y = analytic.states[torch.multinomial(log_q.exp(), REPS, replacement=True, generator=gen)]
    wrong = (table_marginals(log_q, analytic.states) + torch.tensor([1.0, 0.0, -1.0])).log_softmax(-1)
    wrong = wrong.expand(REPS, -1, -1)
    ones = torch.ones(REPS, dtype=torch.float64)
    diff = data_loss(logp, y, wrong, ones, False) - data_loss(logp, y, wrong, ones, True)
    assert abs(float(diff.mean())) > 10 * float(diff.std() / math.sqrt(REPS))


# ---------------------------------------------------------------------------------------------
# NEG_INF log-probabilities
# ---------------------------------------------------------------------------------------------
def test_neg_inf_log_probs_give_finite_losses_and_gradients():
    """Teacher and target log-probs with NEG_INF entries (impossible values, as a pinned unmasked
    token gives) and a student pinned the same way: every loss and its gradient are finite, and
    the values equal those computed on the support only. With -inf instead, the KL would be NaN."""
    g = torch.Generator().manual_seed(7)
    pinned = torch.zeros(B, D, S, dtype=torch.bool)
    pinned[:, 0, 1:] = True  # dimension 0 is a point mass on value 0 for everyone
    pinned[0, 2, 2] = True  # one more impossible value
    teacher = torch.randn(B, D, S, generator=g, dtype=torch.float64).masked_fill(pinned, NEG_INF)
    target = torch.randn(B, D, S, generator=g, dtype=torch.float64).masked_fill(pinned, NEG_INF)
    student = torch.randn(B, N, D, S, generator=g, dtype=torch.float64)
    student = student.masked_fill(pinned.unsqueeze(1), NEG_INF).requires_grad_(True)
    t_logp, r_logp, logp = teacher.log_softmax(-1), target.log_softmax(-1), student.log_softmax(-1)
    # Targets and data only take possible values.
    y = torch.multinomial(r_logp.exp().unsqueeze(1).expand(-1, M, -1, -1).reshape(-1, S), 1, generator=g)
    y = y.view(B, M, D)
    x0 = torch.multinomial(t_logp.exp().reshape(-1, S), 1, generator=g).view(B, D)
    w = torch.ones(B, dtype=torch.float64)
    losses = {
        "kl": marginal_kl(t_logp, mixture_log_marginal(logp)),
        "distil": distillation_loss(t_logp, logp),
        "consis": consistency_loss(logp, y, r_logp, True),
        "consis_nocv": consistency_loss(logp, y, r_logp, False),
        "data": data_loss(logp, x0, t_logp, w, True),
        "data_nocv": data_loss(logp, x0, t_logp, w, False),
    }
    for name, value in losses.items():
        assert torch.isfinite(value).all(), name
        (grad,) = torch.autograd.grad(value.sum(), student, retain_graph=True)
        assert torch.isfinite(grad).all(), name
    # The impossible values contribute nothing: compare with KL over the support only.
    p = t_logp.exp()
    assert float(p[pinned].max()) == 0.0
    lm = mixture_log_marginal(logp)
    on_support = torch.where(pinned, torch.zeros_like(p), p * (t_logp - lm)).sum((1, 2))
    torch.testing.assert_close(losses["kl"], on_support, rtol=0, atol=1e-10)
    # The reason for NEG_INF: a true -inf turns the same KL into NaN.
    t_inf = t_logp.detach().masked_fill(pinned, float("-inf"))
    assert torch.isnan(marginal_kl(t_inf, lm.detach())).any()
