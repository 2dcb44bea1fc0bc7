"""Exact evaluation, the oracle ExactTeacher, NetworkTeacher loading and the sampling loop."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from mixdistill.evaluation.exact import (
    MAX_EXACT_STATES,
    enumerate_states,
    joint_from_factors,
    kl_divergence,
    sampler_distribution,
    total_variation,
)
from mixdistill.nets.mlp import MLPDenoiserNet
from mixdistill.processes import (
    CosineSchedule,
    GaussianRateProcess,
    LogLinearSchedule,
    MaskingProcess,
    UniformProcess,
)
from mixdistill.sampling.grids import uniform_grid
from mixdistill.sampling.loop import sample_chain
from mixdistill.teachers.exact import ExactTeacher
from mixdistill.teachers.network import NetworkTeacher

DIAGONAL = torch.tensor([[0.5, 0.0], [0.0, 0.5]], dtype=torch.float64)

# A 3 x 3 table with zeros and unequal mass: strongly correlated, not a product.
TABLE_33 = torch.tensor(
    [[0.30, 0.05, 0.0], [0.0, 0.20, 0.05], [0.10, 0.0, 0.30]],
    dtype=torch.float64,
)


# ---- enumeration helpers -----------------------------------------------------------------------


@pytest.mark.parametrize("K,D", [(3, 2), (2, 3), (4, 1), (5, 3)])
def test_enumerate_states_row_major(K, D):
    """K^D rows in row-major order (first dimension slowest), the order of itertools.product."""
    st = enumerate_states(K, D)
    assert st.shape == (K**D, D) and st.dtype == torch.long
    want = torch.tensor(list(itertools.product(range(K), repeat=D)))
    torch.testing.assert_close(st, want, rtol=0, atol=0)
    # Row index = sum_d x^d K^(D - 1 - d), so reshaping a flat table matches table[x^1, ..., x^D].
    weights = K ** torch.arange(D - 1, -1, -1)
    torch.testing.assert_close((st * weights).sum(1), torch.arange(K**D), rtol=0, atol=0)


def test_joint_from_factors_is_the_explicit_product():
    """joint[n, i] = prod_d p[n, d, x_i^d] with x_i the i-th enumerated state."""
    g = torch.Generator().manual_seed(0)
    p = torch.rand(4, 3, 3, generator=g, dtype=torch.float64)
    p = p / p.sum(-1, keepdim=True)
    joint = joint_from_factors(p)
    states = enumerate_states(3, 3)
    assert joint.shape == (4, 27)
    for n in range(4):
        for i, x in enumerate(states.tolist()):
            want = p[n, 0, x[0]] * p[n, 1, x[1]] * p[n, 2, x[2]]
            assert abs(float(joint[n, i] - want)) < 1e-15
    torch.testing.assert_close(joint.sum(1), torch.ones(4, dtype=torch.float64))


def test_total_variation_and_kl_hand_values():
    """TV and KL against values worked out by hand, including zeros on either side."""
    p = torch.tensor([0.5, 0.5])
    q = torch.tensor([0.25, 0.75])
    assert float(total_variation(p, q)) == pytest.approx(0.25, abs=1e-15)
    assert float(total_variation(p, p)) == 0.0
    assert float(kl_divergence(p, q)) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3), abs=1e-12)
    assert float(kl_divergence(q, p)) == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5), abs=1e-12)
    # p = 0 where q > 0 contributes nothing; q = 0 where p > 0 makes KL infinite.
    assert float(kl_divergence(torch.tensor([1.0, 0.0]), p)) == pytest.approx(math.log(2), abs=1e-12)
    assert math.isinf(float(kl_divergence(p, torch.tensor([1.0, 0.0]))))
    assert float(kl_divergence(p, p)) == 0.0
    assert float(total_variation(torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0]))) == 1.0


# ---- Theorem 1 and the exact sampler -----------------------------------------------------------


def test_theorem1_masking_tv_is_exactly_one_over_2n():
    """Theorem 1 (D = S = 2, table [[.5, 0], [0, .5]]): the N-step masking product sampler has TV 1/(2N).

    The product sampler can never be exact on this table, so TV > 0 for every N.
    """
    teacher = ExactTeacher(MaskingProcess(2), DIAGONAL)
    for n in [1, 2, 4, 8, 16, 32, 64]:
        dist = sampler_distribution(teacher, n)
        assert abs(float(dist.sum()) - 1.0) < 1e-12
        tv = float(total_variation(dist, DIAGONAL.reshape(-1)))
        assert abs(tv - 1.0 / (2 * n)) < 1e-9, (n, tv)
        assert tv > 0


def test_theorem1_uniform_tv_is_order_one_over_n():
    """With the uniform process the same table gives TV = Theta(1/N): N TV in [0.4, 1], TV decreasing."""
    teacher = ExactTeacher(UniformProcess(2), DIAGONAL)
    tvs = []
    for n in [4, 8, 16, 32, 64]:
        dist = sampler_distribution(teacher, n)
        assert abs(float(dist.sum()) - 1.0) < 1e-9
        tv = float(total_variation(dist, DIAGONAL.reshape(-1)))
        assert 0.4 <= n * tv <= 1.0, (n, tv)
        tvs.append(tv)
    assert all(a > b for a, b in zip(tvs, tvs[1:], strict=False))


PROCS_FOR_SAMPLER = {
    "masking-linear": lambda: MaskingProcess(3),
    "masking-cosine": lambda: MaskingProcess(3, CosineSchedule()),
    "uniform": lambda: UniformProcess(3),
    "gaussian": lambda: GaussianRateProcess(3, rate_sigma=1.5, q_sigma=4.0),
}


@pytest.mark.parametrize("name", list(PROCS_FOR_SAMPLER))
def test_sampler_distribution_is_a_distribution_and_converges(name):
    """The exact sampler output is a distribution over S^D, and its TV to the table shrinks with N.

    tau-LDR's F(t) = 3 (100^t - 1) mixes the chain by t ~ 0.1, so on a uniform grid nearly all steps
    are wasted; the Gaussian process gets the custom grid t_k = (1 - k / N)^3 instead.
    """
    teacher = ExactTeacher(PROCS_FOR_SAMPLER[name](), TABLE_33)
    tvs = []
    for n in [1, 4, 16]:
        grid = torch.linspace(1, 0, n + 1, dtype=torch.float64) ** 3 if name == "gaussian" else None
        dist = sampler_distribution(teacher, n, grid=grid)
        assert dist.shape == (9,)
        assert float(dist.min()) >= 0.0
        assert abs(float(dist.sum()) - 1.0) < 1e-9
        tvs.append(float(total_variation(dist, TABLE_33.reshape(-1))))
    assert tvs[0] > tvs[1] > tvs[2] > 0


@pytest.mark.parametrize("name", list(PROCS_FOR_SAMPLER))
def test_sampler_is_exact_on_a_product_table(name):
    """For independent dimensions every reverse step factorises: the product sampler is exact at any N."""
    table = torch.outer(
        torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64), torch.tensor([0.6, 0.1, 0.3], dtype=torch.float64)
    )
    teacher = ExactTeacher(PROCS_FOR_SAMPLER[name](), table)
    for n in [1, 3]:
        assert float(total_variation(sampler_distribution(teacher, n), table.reshape(-1))) < 1e-6


def test_sampler_distribution_rejects_large_spaces_and_early_stop():
    """Too many states raise ValueError; a grid that stops before t = 0 leaves masks: RuntimeError."""
    big = torch.full((2,) * 14, 1.0 / 2**14, dtype=torch.float64)  # 3^14 masked states
    assert 3**14 > MAX_EXACT_STATES
    with pytest.raises(ValueError, match="K\\^D"):
        sampler_distribution(ExactTeacher(MaskingProcess(2), big), 2)
    teacher = ExactTeacher(MaskingProcess(2), DIAGONAL)
    with pytest.raises(RuntimeError, match="non-data"):
        sampler_distribution(teacher, 2, grid=uniform_grid(2, t_min=0.5))


# ---- ExactTeacher ------------------------------------------------------------------------------


def brute_force_x0_marginals(proc, table: torch.Tensor, x_t: torch.Tensor, t: float):
    """``p(x_0^d = v | x_t)`` by summing pi(x0) prod_d q_{t|0}(x_t^d | x0^d) over all x0; with p(x_t)."""
    S, D = proc.vocab_size, table.dim()
    q = proc.marginal_matrix(torch.tensor([t], dtype=torch.float64))[0].double()  # (S, K)
    x0s = enumerate_states(S, D)
    flat = table.reshape(-1)
    out = torch.zeros(len(x_t), D, S, dtype=torch.float64)
    evidence = torch.zeros(len(x_t), dtype=torch.float64)
    for b, xt in enumerate(x_t.tolist()):
        for i, x0 in enumerate(x0s.tolist()):
            w = float(flat[i]) * math.prod(float(q[x0[d], xt[d]]) for d in range(D))
            evidence[b] += w
            for d in range(D):
                out[b, d, x0[d]] += w
    return out / evidence.clamp_min(1e-300)[:, None, None], evidence


@pytest.mark.parametrize("name", list(PROCS_FOR_SAMPLER))
@pytest.mark.parametrize("t", [0.05, 0.5, 0.9])
def test_exact_teacher_matches_bayes(name, t):
    """softmax(ExactTeacher.denoise) is the Bayes posterior marginal p(x_0^d | x_t) for every possible x_t."""
    proc = PROCS_FOR_SAMPLER[name]()
    teacher = ExactTeacher(proc, TABLE_33)
    x_t = enumerate_states(proc.num_states, 2)
    got = torch.softmax(teacher.denoise(x_t, torch.full((len(x_t),), t)).double(), -1)
    want, evidence = brute_force_x0_marginals(proc, TABLE_33, x_t, t)
    possible = evidence > 0
    assert int(possible.sum()) >= 4
    torch.testing.assert_close(got[possible], want[possible], atol=2e-6, rtol=0)


def test_exact_teacher_near_data_uniform():
    """Uniform process, t -> 0: p(x_0^d | x_t) puts mass ~1 on x_t^d (positive table)."""
    table = TABLE_33 + 0.05
    table = table / table.sum()
    teacher = ExactTeacher(UniformProcess(3), table)
    x_t = enumerate_states(3, 2)
    probs = torch.softmax(teacher.denoise(x_t, torch.full((9,), 1e-4)).double(), -1)
    on_xt = probs.gather(-1, x_t.unsqueeze(-1)).squeeze(-1)
    assert float(on_xt.min()) > 0.99


@pytest.mark.parametrize("kind", ["masking", "uniform"])
def test_exact_teacher_at_t1_gives_table_marginals(kind):
    """At t = 1 x_t carries no information: p(x_0^d | x_t) is the table's marginal of dimension d."""
    table = torch.rand(3, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    table = table / table.sum()
    proc = MaskingProcess(3) if kind == "masking" else UniformProcess(3)
    teacher = ExactTeacher(proc, table)
    x_t = torch.full((1, 3), 3) if kind == "masking" else enumerate_states(3, 3)
    probs = torch.softmax(teacher.denoise(x_t, torch.ones(len(x_t))).double(), -1)
    marginals = torch.stack([table.sum((1, 2)), table.sum((0, 2)), table.sum((0, 1))])
    torch.testing.assert_close(probs, marginals.expand(len(x_t), -1, -1), atol=1e-6, rtol=0)


def test_exact_teacher_pins_unmasked_tokens():
    """Masking: an unmasked x_t^d gives a point mass on that token, whatever the time."""
    teacher = ExactTeacher(MaskingProcess(3, LogLinearSchedule()), TABLE_33)
    x_t = torch.tensor([[0, 3], [3, 2], [2, 0]])
    probs = torch.softmax(teacher.denoise(x_t, torch.full((3,), 0.6)).double(), -1)
    for b, d in [(0, 0), (1, 1), (2, 0), (2, 1)]:
        assert float(probs[b, d, int(x_t[b, d])]) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    ("table", "kwargs", "exc", "match"),
    [
        (torch.full((2, 2), 0.3), {}, ValueError, "sums to"),
        (torch.tensor([[0.75, -0.25], [0.25, 0.25]]), {}, ValueError, "negative"),
        (torch.tensor([[0.5, float("nan")], [0.25, 0.25]]), {}, ValueError, "1 NaN or infinite entries"),
        (torch.full((3, 3), 1 / 9), {}, ValueError, "vocab_size=2"),
        (torch.full((2, 3), 1 / 6), {}, ValueError, "vocab_size=2"),
        (torch.tensor(1.0), {}, ValueError, "vocab_size"),
        (torch.full((2,) * 5, 1 / 32), {"max_states": 16}, ValueError, "max_states=16"),
    ],
    ids=["sum", "negative", "nan", "shape", "ragged", "scalar", "max_states"],
)
def test_exact_teacher_rejects_bad_tables(table, kwargs, exc, match):
    """Invalid tables raise with a message naming the table property or argument at fault."""
    with pytest.raises(exc, match=match):
        ExactTeacher(MaskingProcess(2), table, **kwargs)


def test_exact_teacher_file_errors(tmp_path):
    """A missing file raises FileNotFoundError and an unknown suffix ValueError, both naming table=."""
    with pytest.raises(FileNotFoundError, match="table="):
        ExactTeacher(MaskingProcess(2), str(tmp_path / "missing.npy"))
    bad = tmp_path / "table.csv"
    bad.write_text("0.5,0\n0,0.5\n")
    with pytest.raises(ValueError, match="table=.*\\.npy or \\.pt"):
        ExactTeacher(MaskingProcess(2), str(bad))


@pytest.mark.parametrize("suffix", [".npy", ".pt"])
def test_exact_teacher_loads_files(tmp_path, suffix):
    """Tables saved as .npy (float32 numpy) or .pt (tensor) load as the same float64 table."""
    path = tmp_path / f"table{suffix}"
    if suffix == ".npy":
        np.save(path, TABLE_33.numpy().astype(np.float32))
    else:
        torch.save(TABLE_33, path)
    teacher = ExactTeacher(UniformProcess(3), str(path))
    assert teacher.table.dtype == torch.float64 and teacher.shape == (2,)
    torch.testing.assert_close(teacher.table, TABLE_33, atol=1e-7, rtol=0)
    ref = ExactTeacher(UniformProcess(3), TABLE_33)
    x_t = enumerate_states(3, 2)
    t = torch.full((9,), 0.4)
    torch.testing.assert_close(teacher.denoise(x_t, t), ref.denoise(x_t, t), atol=1e-5, rtol=0)


# ---- NetworkTeacher checkpoints ----------------------------------------------------------------


def _net(seed: int) -> MLPDenoiserNet:
    torch.manual_seed(seed)
    return MLPDenoiserNet(num_dims=3, num_states=4, vocab_size=3, hidden=16, depth=1, time_features=8)


@pytest.mark.parametrize("fmt", ["safetensors", "pt", "lightning-ckpt"])
def test_network_teacher_loads_prefixed_checkpoint(tmp_path, fmt):
    """Weights saved under a prefix load into a freshly initialised net; other prefixes are ignored."""
    src = _net(0)
    state = {f"model.net.{k}": v.clone() for k, v in src.state_dict().items()}
    state.update({f"model.ema.{k}": torch.zeros_like(v) for k, v in src.state_dict().items()})
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "w.safetensors"
        save_file(state, str(path))
    elif fmt == "pt":
        path = tmp_path / "w.pt"
        torch.save(state, path)
    else:
        path = tmp_path / "w.ckpt"
        torch.save({"state_dict": state, "epoch": 3}, path)
    dst = _net(1)
    assert not torch.equal(dst.out[1].weight, src.out[1].weight)
    teacher = NetworkTeacher(MaskingProcess(3), (3,), dst, checkpoint=str(path), prefix="model.net.")
    for k, v in src.state_dict().items():
        torch.testing.assert_close(teacher.net.state_dict()[k], v, rtol=0, atol=0)
    x_t = torch.tensor([[0, 3, 1], [3, 3, 3]])
    t = torch.tensor([0.3, 1.0])
    torch.testing.assert_close(teacher.network_logits(x_t, t), src(x_t, t), rtol=0, atol=0)


def test_network_teacher_checkpoint_errors(tmp_path):
    """Mismatched keys raise ValueError naming the checkpoint and the missing/unexpected keys.

    A missing file raises FileNotFoundError naming checkpoint=.
    """
    src = _net(0)
    path = tmp_path / "w.pt"
    torch.save({f"net.{k}": v for k, v in src.state_dict().items()}, path)
    with pytest.raises(ValueError, match="checkpoint=.*missing \\['"):
        NetworkTeacher(MaskingProcess(3), (3,), _net(1), checkpoint=str(path), prefix="wrong.")
    extra = {f"net.{k}": v for k, v in src.state_dict().items()}
    extra["net.extra.weight"] = torch.zeros(2)
    path2 = tmp_path / "w2.pt"
    torch.save(extra, path2)
    with pytest.raises(ValueError, match="unexpected \\['extra.weight'\\]"):
        NetworkTeacher(MaskingProcess(3), (3,), _net(1), checkpoint=str(path2), prefix="net.")
    with pytest.raises(FileNotFoundError, match="checkpoint="):
        NetworkTeacher(MaskingProcess(3), (3,), _net(1), checkpoint=str(tmp_path / "none.pt"))


# ---- sampling loop -----------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 4])
@pytest.mark.parametrize(
    "schedule", [None, CosineSchedule(), LogLinearSchedule()], ids=["lin", "cos", "loglin"]
)
def test_network_teacher_sample_shape_and_no_masks(steps, schedule):
    """Teacher.sample returns (B, *shape) long data values 0..S-1: no mask id survives to t = 0."""
    torch.manual_seed(0)
    net = MLPDenoiserNet(num_dims=6, num_states=4, vocab_size=3, hidden=16, depth=1, time_features=8)
    teacher = NetworkTeacher(MaskingProcess(3, schedule), (2, 3), net).freeze()
    x = teacher.sample(64, steps)
    assert x.shape == (64, 2, 3) and x.dtype == torch.long
    assert int(x.min()) >= 0 and int(x.max()) <= 2


@pytest.mark.parametrize("kind", ["masking", "uniform"])
def test_sample_chain_matches_exact_sampler_distribution(kind):
    """Monte-Carlo frequencies of sample_chain equal sampler_distribution (same steps) within 5 sigma."""
    torch.manual_seed(0)
    proc = MaskingProcess(3) if kind == "masking" else UniformProcess(3)
    teacher = ExactTeacher(proc, TABLE_33)
    n = 20000
    x = sample_chain(teacher, n, 3)
    assert x.shape == (n, 2) and int(x.max()) < 3
    freq = torch.bincount(x[:, 0] * 3 + x[:, 1], minlength=9).double() / n
    p = sampler_distribution(teacher, 3)
    tol = 5 * (p * (1 - p) / n).sqrt() + 1e-12
    assert bool(((freq - p).abs() <= tol).all()), (freq, p)
    assert bool((freq[p == 0] == 0).all())


def test_sample_chain_grid_checks():
    """A custom grid is used; a grid of the wrong length and steps < 1 raise ValueError."""
    teacher = ExactTeacher(MaskingProcess(2), DIAGONAL)
    grid = torch.tensor([1.0, 0.3, 0.0])
    x = teacher.sample(16, 2, grid=grid)
    assert x.shape == (16, 2) and int(x.max()) <= 1
    with pytest.raises(ValueError, match="steps \\+ 1 = 3"):
        teacher.sample(4, 2, grid=torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="steps=0"):
        teacher.sample(4, 0)
