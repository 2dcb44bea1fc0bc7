"""Forward processes: matrices, posteriors, samplers and schedules, checked against enumeration."""

from __future__ import annotations

import math
from functools import reduce

import pytest
import torch

from mixdistill.evaluation.exact import joint_from_factors, step_factors
from mixdistill.processes import (
    ArccosSchedule,
    CosineSchedule,
    ForwardProcess,
    GaussianRateProcess,
    LinearSchedule,
    LogLinearSchedule,
    MaskingProcess,
    UniformProcess,
)
from mixdistill.processes.gaussian import gaussian_target_rate
from mixdistill.tables import enumerate_states
from mixdistill.teachers.exact import ExactTeacher

SCHEDULES = {
    "linear": LinearSchedule,
    "cosine": CosineSchedule,
    "arccos": ArccosSchedule,
    "loglinear": LogLinearSchedule,
}

PROCESS_FACTORIES = {
    **{f"masking-{name}": (lambda cls=cls: MaskingProcess(4, cls())) for name, cls in SCHEDULES.items()},
    "uniform-linear": lambda: UniformProcess(5),
    "uniform-cosine": lambda: UniformProcess(4, CosineSchedule()),
    "gaussian-6": lambda: GaussianRateProcess(6, rate_sigma=1.5, q_sigma=4.0),
    "gaussian-7": lambda: GaussianRateProcess(7, rate_sigma=1.5, q_sigma=4.0),
}


@pytest.fixture(params=list(PROCESS_FACTORIES), ids=list(PROCESS_FACTORIES))
def proc(request) -> ForwardProcess:
    return PROCESS_FACTORIES[request.param]()


# Elementwise s <= u <= t, including the end points 0 and 1.
S_TIMES = torch.tensor([0.0, 0.05, 0.3, 0.6, 0.0], dtype=torch.float64)
U_TIMES = torch.tensor([0.2, 0.3, 0.5, 0.9, 0.5], dtype=torch.float64)
T_TIMES = torch.tensor([0.5, 0.6, 0.7, 1.0, 1.0], dtype=torch.float64)


def binomial_tolerance(p: torch.Tensor, n: int, sigmas: float = 5.0) -> torch.Tensor:
    """``sigmas`` binomial standard deviations of a frequency estimated from ``n`` draws."""
    return sigmas * (p * (1.0 - p) / n).sqrt()


def assert_frequencies(samples: torch.Tensor, probs: torch.Tensor, sigmas: float = 5.0) -> None:
    """Samples ``(n, *batch)`` in ``0..K-1`` have per-cell frequencies within tolerance of ``probs``.

    ``probs`` is ``(*batch, K)``; a zero-probability cell must never be hit.
    """
    n, k = samples.shape[0], probs.shape[-1]
    freq = torch.nn.functional.one_hot(samples, k).double().mean(0)
    p = probs.double()
    err = (freq - p).abs()
    tol = binomial_tolerance(p, n, sigmas) + 1e-12
    assert bool((err <= tol).all()), f"max |freq - p| / tol = {float((err / tol).max()):.2f}"
    assert bool((freq[p == 0] == 0).all()), "a zero-probability state was sampled"


# ---- matrices ----------------------------------------------------------------------------------


def test_matrix_rows_are_distributions(proc):
    """Every row of q_{t|0} and q_{t|s} is a probability distribution (non-negative, sums to 1)."""
    m = proc.marginal_matrix(T_TIMES).double()
    q = proc.transition_matrix(S_TIMES, T_TIMES).double()
    assert m.shape == (5, proc.vocab_size, proc.num_states)
    assert q.shape == (5, proc.num_states, proc.num_states)
    for mat in (m, q):
        assert float(mat.min()) >= -1e-7
        torch.testing.assert_close(mat.sum(-1), torch.ones(mat.shape[:-1], dtype=torch.float64))


def test_matrices_at_equal_times_are_identity(proc):
    """q_{0|0} is the identity on data values and q_{t|t} is the identity on states."""
    t = torch.tensor([0.0, 0.4], dtype=torch.float64)
    m0 = proc.marginal_matrix(t[:1]).double()[0]
    eye = torch.eye(proc.vocab_size, proc.num_states, dtype=torch.float64)
    torch.testing.assert_close(m0, eye, atol=1e-6, rtol=0)
    q = proc.transition_matrix(t, t).double()
    torch.testing.assert_close(q, torch.eye(proc.num_states, dtype=torch.float64).expand(2, -1, -1))


def test_chapman_kolmogorov(proc):
    """q_{s|0} q_{t|s} = q_{t|0} and q_{u|s} q_{t|u} = q_{t|s} for s <= u <= t (Markov property)."""
    m_s = proc.marginal_matrix(S_TIMES).double()
    m_t = proc.marginal_matrix(T_TIMES).double()
    q_ts = proc.transition_matrix(S_TIMES, T_TIMES).double()
    q_us = proc.transition_matrix(S_TIMES, U_TIMES).double()
    q_tu = proc.transition_matrix(U_TIMES, T_TIMES).double()
    torch.testing.assert_close(m_s @ q_ts, m_t, atol=1e-5, rtol=0)
    torch.testing.assert_close(q_us @ q_tu, q_ts, atol=1e-5, rtol=0)


def test_prior_probs_is_the_marginal_at_t1(proc):
    """The prior sampling starts from is (up to LogLinear's eps) q_{1|0}(. | v) for every v."""
    prior = proc.prior_probs().double()
    torch.testing.assert_close(prior.sum(), torch.tensor(1.0, dtype=torch.float64))
    m1 = proc.marginal_matrix(torch.ones(1, dtype=torch.float64)).double()[0]
    eps = getattr(getattr(proc, "schedule", None), "eps", 0.0)
    assert float((m1 - prior).abs().max()) <= eps + 1e-6


# ---- posterior ---------------------------------------------------------------------------------


def brute_force_posterior(proc, x_t: torch.Tensor, x0_probs: torch.Tensor, t, s) -> torch.Tensor:
    """``sum_v p(v) q(x_s | x_t, v)`` by explicit loops over v and x_s, consistent v only, renormalised."""
    q_t0 = proc.marginal_matrix(t).double()
    q_s0 = proc.marginal_matrix(s).double()
    q_ts = proc.transition_matrix(s, t).double()
    B, D = x_t.shape
    S, K = proc.vocab_size, proc.num_states
    out = torch.zeros(B, D, K, dtype=torch.float64)
    for b in range(B):
        for d in range(D):
            j = int(x_t[b, d])
            for v in range(S):
                z = float(q_t0[b, v, j])
                if z <= 0:
                    continue  # v cannot have produced x_t: no weight
                for k in range(K):
                    out[b, d, k] += x0_probs[b, d, v] * q_ts[b, k, j] * q_s0[b, v, k] / z
    return out / out.sum(-1, keepdim=True)


def _random_x0_probs(proc, B: int, D: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(B, D, proc.vocab_size, generator=g, dtype=torch.float64) + 0.05
    return p / p.sum(-1, keepdim=True)


def test_posterior_probs_matches_bayes_enumeration(proc):
    """posterior_probs(x_t, p) == renormalised sum_v p(v) q_{t|s}(x_t|x_s) q_{s|0}(x_s|v) / q_{t|0}(x_t|v).

    Every x_t in 0..K-1 is one dimension, at several (s, t) pairs; the dimension's own method is used
    (closed form where the process has one).
    """
    B, K = S_TIMES.shape[0], proc.num_states
    x_t = torch.arange(K).expand(B, K).clone()
    p = _random_x0_probs(proc, B, K)
    got = proc.posterior_probs(x_t, p, T_TIMES, S_TIMES).double()
    want = brute_force_posterior(proc, x_t, p, T_TIMES, S_TIMES)
    torch.testing.assert_close(got.sum(-1), torch.ones(B, K, dtype=torch.float64))
    # x_t that no data value can produce (unmasked tokens at alpha(t) = 0) have no posterior.
    possible = want.isfinite().all(-1)
    torch.testing.assert_close(possible, proc.marginal_matrix(T_TIMES).sum(1) > 0)
    assert bool(possible[:3].all())
    torch.testing.assert_close(got[possible], want[possible], atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize(
    "factory",
    [lambda c=c: MaskingProcess(4, c()) for c in SCHEDULES.values()]
    + [lambda: UniformProcess(5), lambda: UniformProcess(3, ArccosSchedule())],
    ids=[f"masking-{n}" for n in SCHEDULES] + ["uniform-linear", "uniform-arccos"],
)
@pytest.mark.parametrize("onehot", [False, True], ids=["soft-x0", "onehot-x0"])
def test_closed_form_posterior_equals_generic(factory, onehot):
    """The O(S) closed-form posterior_probs overrides equal ForwardProcess.posterior_probs.

    One-hot x0 are drawn consistent with x_t (for masking: an unmasked x_t forces x0 = x_t).
    """
    proc = factory()
    B, K = S_TIMES.shape[0], proc.num_states
    x_t = torch.arange(K).expand(B, K).clone()
    if onehot:
        x0 = torch.randint(proc.vocab_size, (B, K), generator=torch.Generator().manual_seed(1))
        x0 = torch.where(x_t < proc.vocab_size, x_t, x0)
        p = torch.nn.functional.one_hot(x0, proc.vocab_size).double()
    else:
        p = _random_x0_probs(proc, B, K, seed=2)
    got = proc.posterior_probs(x_t, p, T_TIMES, S_TIMES)
    want = ForwardProcess.posterior_probs(proc, x_t, p, T_TIMES, S_TIMES)
    # Where no data value can produce x_t (unmasked tokens once alpha(t) = 0) the posterior is
    # undefined: the generic form gives a zero row, the masking override carries x_t over.
    possible = proc.marginal_matrix(T_TIMES).sum(1) > 0  # (B, K)
    torch.testing.assert_close(got[possible], want[possible], atol=1e-12, rtol=1e-9)
    assert bool(possible[:3].all())
    carried = torch.nn.functional.one_hot(x_t, K).double()
    torch.testing.assert_close(got[~possible], carried[~possible])


def test_masking_posterior_carries_unmasked_tokens_over():
    """Masking: an unmasked x_t stays; a masked one unmasks to v w.p. p(v)(a_s - a_t)/(1 - a_t)."""
    proc = MaskingProcess(3, CosineSchedule())
    t = torch.tensor([0.8], dtype=torch.float64)
    s = torch.tensor([0.3], dtype=torch.float64)
    x_t = torch.tensor([[0, 2, 3]])
    p = torch.tensor([[[0.2, 0.3, 0.5]] * 3], dtype=torch.float64)
    out = proc.posterior_probs(x_t, p, t, s)[0]
    a_s, a_t = math.cos(0.5 * math.pi * 0.3), math.cos(0.5 * math.pi * 0.8)
    u = (a_s - a_t) / (1 - a_t)
    want = torch.tensor([[1, 0, 0, 0], [0, 0, 1, 0], [0.2 * u, 0.3 * u, 0.5 * u, 1 - u]], dtype=torch.float64)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(proc.unmask_prob(t, s), torch.tensor([u], dtype=torch.float64))


# ---- samplers ----------------------------------------------------------------------------------

N_DRAWS = 20000


@pytest.mark.parametrize("generic", [False, True], ids=["own", "generic"])
def test_corrupt_frequencies_match_marginal(proc, generic):
    """Empirical frequencies of x_t ~ corrupt(x0, t) match q_{t|0}(. | x0) within 5 binomial sigmas."""
    torch.manual_seed(0)
    S = proc.vocab_size
    # Batch row v holds N_DRAWS dimensions with x0 = v; row S repeats row 0 at another time.
    x0 = torch.cat([torch.arange(S), torch.zeros(1, dtype=torch.long)])[:, None].expand(-1, N_DRAWS)
    t = torch.tensor([0.4] * S + [0.8])
    x_t = ForwardProcess.corrupt(proc, x0, t) if generic else proc.corrupt(x0, t)
    assert x_t.shape == x0.shape and x_t.dtype == torch.long
    m = proc.marginal_matrix(t)
    assert_frequencies(x_t.T, torch.cat([m[0], m[-1, :1]]))


def test_prior_frequencies_match_prior_probs(proc):
    """Draws of prior() have the frequencies of prior_probs()."""
    torch.manual_seed(1)
    x = proc.prior((N_DRAWS, 3))
    assert x.shape == (N_DRAWS, 3) and x.dtype == torch.long
    assert_frequencies(x, proc.prior_probs().expand(3, -1))


@pytest.mark.parametrize("generic", [False, True], ids=["own", "generic"])
def test_posterior_sample_frequencies_match_posterior_probs(proc, generic):
    """x_s ~ posterior_sample(x_t, x0) has the frequencies of posterior_probs(x_t, onehot(x0))."""
    torch.manual_seed(2)
    K, S = proc.num_states, proc.vocab_size
    # Each x_t value twice, with two x0 (different where x_t allows it).
    x_t_row = torch.arange(K).repeat(2)
    x0_row = torch.cat([torch.arange(K) % S, (torch.arange(K) + 1) % S])
    if isinstance(proc, MaskingProcess):
        x0_row = torch.where(x_t_row < S, x_t_row, x0_row)
    # Batch row b holds N_DRAWS dimensions with the same (x_t, x0) pair.
    x_t = x_t_row[:, None].expand(-1, N_DRAWS)
    x0 = x0_row[:, None].expand(-1, N_DRAWS)
    B = len(x_t_row)
    t = torch.full((B,), 0.7)
    s = torch.full((B,), 0.35)
    sampler = ForwardProcess.posterior_sample if generic else type(proc).posterior_sample
    x_s = sampler(proc, x_t, x0, t, s)
    assert x_s.shape == x_t.shape and x_s.dtype == torch.long
    onehot = torch.nn.functional.one_hot(x0_row[:, None], S).double()
    probs = proc.posterior_probs(x_t_row[:, None], onehot, t, s)[:, 0]
    assert_frequencies(x_s.T, probs)


# ---- Gaussian-target CTMC ----------------------------------------------------------------------


def reference_rate(K: int, rate_sigma: float, q_sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The rate matrix written out entry by entry from gaussian_target_rate's description.

    Below the middle state (K // 2) a state i jumps up to j with i < j < K - i, above it down to j with
    K - 1 - i < j < i, at rate exp(-(|j - i| - 1)^2 / rate_sigma^2); the opposite jump gets the
    rate fixed by detailed balance w.r.t. pi_k ∝ exp(-((k + 1) - K / 2)^2 / (2 q_sigma^2)) (tau-LDR's
    discretised Gaussian, 1-based states).
    """
    pi = torch.tensor(
        [math.exp(-(((k + 1) - K / 2) ** 2) / (2 * q_sigma**2)) for k in range(K)], dtype=torch.float64
    )
    pi = pi / pi.sum()
    fwd = torch.zeros(K, K, dtype=torch.float64)
    for i in range(K):
        for j in range(K):
            if (i < K // 2 and i < j < K - i) or (i > K // 2 and K - 1 - i < j < i):
                fwd[i, j] = math.exp(-((abs(j - i) - 1) ** 2) / rate_sigma**2)
    rate = torch.zeros(K, K, dtype=torch.float64)
    for i in range(K):
        for j in range(K):
            if fwd[i, j] > 0:
                rate[i, j] = fwd[i, j]
            elif fwd[j, i] > 0:
                rate[i, j] = fwd[j, i] * pi[j] / pi[i]
        rate[i, i] = -rate[i].sum()
    return rate, pi


@pytest.mark.parametrize("K", [6, 7, 8])
def test_gaussian_rate_matrix(K):
    """R is a generator (rows sum to 0, off-diagonal >= 0), reversible w.r.t. pi, and pi R = 0."""
    rate, pi = gaussian_target_rate(K, 1.5, 4.0)
    assert rate.dtype == torch.float64 and pi.dtype == torch.float64
    torch.testing.assert_close(rate.sum(1), torch.zeros(K, dtype=torch.float64), atol=1e-12, rtol=0)
    off = rate[~torch.eye(K, dtype=torch.bool)]
    assert float(off.min()) >= 0.0 and float(off.max()) > 0.0
    flux = pi[:, None] * rate
    torch.testing.assert_close(flux, flux.T, atol=1e-14, rtol=1e-12)
    torch.testing.assert_close(pi @ rate, torch.zeros(K, dtype=torch.float64), atol=1e-12, rtol=0)
    ref_rate, ref_pi = reference_rate(K, 1.5, 4.0)
    torch.testing.assert_close(pi, ref_pi, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(rate, ref_rate, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("K", [6, 7, 8])
def test_gaussian_transition_equals_matrix_exp(K):
    """The eigendecomposition expm equals torch.linalg.matrix_exp((F(t) - F(s)) R) in float64."""
    proc = GaussianRateProcess(K, rate_sigma=1.5, q_sigma=4.0)
    s = torch.tensor([0.0, 0.0, 0.1, 0.5, 0.9], dtype=torch.float64)
    t = torch.tensor([0.0, 0.05, 0.4, 0.6, 1.0], dtype=torch.float64)
    F = lambda x: 3.0 * (100.0**x - 1.0)  # noqa: E731 -- tau-LDR's integrated rate
    torch.testing.assert_close(proc.integrated_rate(t), F(t))
    want = torch.linalg.matrix_exp((F(t) - F(s))[:, None, None] * proc.rate)
    torch.testing.assert_close(proc.transition_matrix(s, t).double(), want, atol=1e-6, rtol=0)
    want0 = torch.linalg.matrix_exp(F(t)[:, None, None] * proc.rate)
    torch.testing.assert_close(proc.marginal_matrix(t).double(), want0, atol=1e-6, rtol=0)


@pytest.mark.parametrize("K", [6, 7, 8])
def test_gaussian_prior_is_stationary(K):
    """prior_probs is the stationary pi of R and is invariant: pi q_{t|s} = pi."""
    proc = GaussianRateProcess(K, rate_sigma=1.5, q_sigma=4.0)
    prior = proc.prior_probs().double()
    # Stationary distribution solved independently: the null vector of R^T, normalised.
    evals, evecs = torch.linalg.eig(proc.rate.T)
    null = evecs[:, evals.abs().argmin()].real
    torch.testing.assert_close(prior, null / null.sum(), atol=1e-6, rtol=0)
    q = proc.transition_matrix(S_TIMES, T_TIMES).double()
    torch.testing.assert_close(prior @ q, prior.expand(5, -1), atol=1e-6, rtol=0)


# ---- schedules ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_schedule_end_points_and_monotone(name, dtype):
    """alpha(0) = 1, alpha(1) = 0 (LogLinear: eps), strictly decreasing and within [0, 1]."""
    sch = SCHEDULES[name]()
    t = torch.linspace(0, 1, 1001, dtype=dtype)
    a = sch.alpha(t)
    assert a.dtype == dtype
    assert float(a[0]) == 1.0
    end = 1e-3 if name == "loglinear" else 0.0
    assert abs(float(a[-1]) - end) < 1e-6
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert bool((a[1:] < a[:-1]).all())


def test_schedule_closed_forms():
    """Linear 1 - t, cosine cos(pi t / 2), arccos 1 - arccos(1 - t)/(pi/2), log-linear 1 - (1 - eps) t."""
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    torch.testing.assert_close(LinearSchedule().alpha(t), 1 - t)
    torch.testing.assert_close(CosineSchedule().alpha(t), torch.cos(math.pi * t / 2).clamp_min(0))
    arccos = torch.tensor([1 - math.acos(1 - x) / (math.pi / 2) for x in t.tolist()], dtype=torch.float64)
    torch.testing.assert_close(ArccosSchedule().alpha(t), arccos)
    torch.testing.assert_close(LogLinearSchedule(0.01).alpha(t), 1 - 0.99 * t)


@pytest.mark.parametrize("eps", [1e-3, 0.0, 0.2])
def test_loglinear_sigma_is_minus_log_alpha(eps):
    """MDLM's sigma(t) = -log alpha(t) = -log(1 - (1 - eps) t)."""
    sch = LogLinearSchedule(eps)
    t = torch.linspace(0, 0.999, 50, dtype=torch.float64)
    torch.testing.assert_close(sch.sigma(t), -torch.log(sch.alpha(t)))
    torch.testing.assert_close(sch.sigma(t), -torch.log(1 - (1 - eps) * t))
    assert float(sch.sigma(torch.zeros(()))) == 0.0


# ---- bad arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: MaskingProcess(0), "vocab_size"),
        (lambda: UniformProcess(1), "vocab_size"),
        (lambda: LogLinearSchedule(eps=1.0), "eps"),
        (lambda: LogLinearSchedule(eps=-0.1), "eps"),
        (lambda: GaussianRateProcess(1), "num_states"),
        (lambda: GaussianRateProcess(6, rate_sigma=-1.0), "rate_sigma"),
        (lambda: GaussianRateProcess(6, q_sigma=0.0), "q_sigma"),
        (lambda: GaussianRateProcess(6, time_base=-3.0), "time_base"),
        (lambda: GaussianRateProcess(6, time_exponential=1.0), "time_exponential"),
    ],
    ids=[
        "masking-vocab",
        "uniform-vocab",
        "eps-1",
        "eps-neg",
        "gauss-states",
        "rate_sigma",
        "q_sigma",
        "time_base",
        "time_exponential",
    ],
)
def test_bad_arguments_raise_naming_them(build, name):
    """Invalid constructor arguments raise ValueError whose message names the argument."""
    with pytest.raises(ValueError, match=name):
        build()


# ---- product step of the exact teacher: O(h^2) one-step error ----------------------------------


def _kron(mat: torch.Tensor, D: int) -> torch.Tensor:
    """The D-fold Kronecker power: the factorised joint matrix in row-major state order."""
    return reduce(torch.kron, [mat] * D)


def product_step_error(proc, teacher, table: torch.Tensor, t: float, s: float) -> float:
    """``E_{x_t} TV(p(x_s | x_t), product step)`` with the exact reverse transition by enumeration.

    Exact: ``p(x_s | x_t) = sum_{x0} pi(x0) q_{s|0}(x_s | x0) q_{t|s}(x_t | x_s) / p(x_t)``.
    """
    D = table.dim()
    ss = torch.tensor([s], dtype=torch.float64)
    tt = torch.tensor([t], dtype=torch.float64)
    q_s0 = _kron(proc.marginal_matrix(ss)[0].double(), D)  # (S^D, K^D)
    q_ts = _kron(proc.transition_matrix(ss, tt)[0].double(), D)  # (K^D, K^D)
    joint = (table.reshape(-1) @ q_s0)[:, None] * q_ts  # p(x_s, x_t)
    p_t = joint.sum(0)
    exact = (joint / p_t.clamp_min(1e-300)).T  # (x_t, x_s)
    states = enumerate_states(proc.num_states, D)
    product = joint_from_factors(step_factors(teacher, states, t, s))  # (x_t, x_s)
    torch.testing.assert_close(product.sum(1), torch.ones(len(states), dtype=torch.float64))
    return float((p_t * 0.5 * (exact - product).abs().sum(1)).sum())


def correlated_table(S: int, D: int) -> torch.Tensor:
    """A strictly positive table with most mass on the constant vectors (strong correlations)."""
    st = enumerate_states(S, D)
    w = (st == st[:, :1]).all(1).double() + 0.05 + 0.1 * torch.arange(S**D).double() / S**D
    return (w / w.sum()).reshape((S,) * D)


@pytest.mark.parametrize("S,D", [(2, 3), (3, 2)])
@pytest.mark.parametrize("kind", ["masking", "uniform"])
@pytest.mark.parametrize("t0", [None, 0.5], ids=["t=h->0", "t=0.5->0.5-h"])
def test_product_step_error_is_second_order(S, D, kind, t0):
    """One ExactTeacher product step has TV error O(h^2): halving h divides the error by ~4.

    Steps from t = h to 0 (near the data) and from 0.5 to 0.5 - h, for h = 0.02, 0.01, 0.005.
    """
    proc = MaskingProcess(S) if kind == "masking" else UniformProcess(S)
    table = correlated_table(S, D)
    teacher = ExactTeacher(proc, table)
    errors = []
    for h in (0.02, 0.01, 0.005):
        t, s = (h, 0.0) if t0 is None else (t0, t0 - h)
        errors.append(product_step_error(proc, teacher, table, t, s))
    assert errors[-1] > 1e-7, "a correlated table must give a non-zero product-step error"
    ratios = [errors[i] / errors[i + 1] for i in range(2)]
    assert all(3.0 < r < 5.0 for r in ratios), (errors, ratios)


@pytest.mark.parametrize("kind", ["masking", "uniform"])
def test_product_step_is_exact_for_product_table(kind):
    """For independent dimensions the reverse transition factorises: the product step is exact."""
    proc = MaskingProcess(3) if kind == "masking" else UniformProcess(3)
    marg = [torch.tensor(m, dtype=torch.float64) for m in ([0.2, 0.3, 0.5], [0.6, 0.1, 0.3])]
    table = torch.outer(*marg)
    teacher = ExactTeacher(proc, table)
    assert product_step_error(proc, teacher, table, 0.6, 0.2) < 1e-6


def test_random_positions_are_those_constrain_logits_leaves_free():
    """A sampler may copy ``x_t`` wherever ``random_positions`` is False: there ``constrain_logits``
    puts all mass on ``x_t``'s token, and elsewhere it leaves the logits as they were. A uniform
    process pins nothing and says so with None."""
    proc = MaskingProcess(5)
    x_t = torch.tensor([[0, 5, 3, 5], [5, 5, 1, 4]])
    logits = torch.randn(2, 4, 6)
    free = proc.random_positions(x_t)
    assert torch.equal(free, x_t == 5)
    probs = proc.constrain_logits(logits, x_t).softmax(-1)
    pinned = torch.nn.functional.one_hot(x_t, 6).double()
    torch.testing.assert_close(probs[~free].double(), pinned[~free], rtol=0, atol=1e-12)
    torch.testing.assert_close(probs[free], logits.softmax(-1)[free])
    assert UniformProcess(5).random_positions(x_t.clamp(max=4)) is None
