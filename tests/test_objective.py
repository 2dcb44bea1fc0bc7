"""Tests of the Di4C objective (mixdistill/objective.py), its time samplers (times.py) and the
correlation-weight schedules (weights.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from mixdistill.di4c.objective import Di4CObjective
from mixdistill.di4c.targets import StudentAtU
from mixdistill.di4c.times import MaskGITTimes, SDTTTimes, TauLDRTimes, TimeDraw, TimeSampler
from mixdistill.di4c.weights import ConstantWeight, LinearWeight, SigmoidWeight
from mixdistill.injection import AdditiveInjection
from mixdistill.nets.mlp import MLPDenoiserNet
from mixdistill.processes.masking import MaskingProcess
from mixdistill.student import MixtureStudent
from mixdistill.teachers.exact import ExactTeacher
from mixdistill.teachers.network import NetworkTeacher

D, S, BATCH, LATENTS = 3, 3, 32, 4
SAMPLERS = {"tauldr": TauLDRTimes, "maskgit": MaskGITTimes, "sdtt": SDTTTimes}


def make_table(seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return (2.0 * torch.randn(S**D, generator=g, dtype=torch.float64)).softmax(0).view((S,) * D)


def make_student(seed: int = 0) -> MixtureStudent:
    torch.manual_seed(seed)
    net = MLPDenoiserNet(D, S + 1, S, hidden=32, depth=1, time_features=16)
    base = NetworkTeacher(MaskingProcess(S), (D,), net)
    return MixtureStudent.from_teacher(base, AdditiveInjection("net.time_embed", freq_dim=16))


def sample_data(table: Tensor, batch: int = BATCH, seed: int = 1) -> Tensor:
    """Draw x0 (batch, D) from the table."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.multinomial(table.reshape(-1), batch, replacement=True, generator=g)
    return torch.stack(torch.unravel_index(idx, (S,) * D), dim=1)


@pytest.fixture
def problem():
    table = make_table()
    return ExactTeacher(MaskingProcess(S), table), make_student(), sample_data(table)


# ---------------------------------------------------------------------------------------------
# The objective on a tiny problem
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sampler", list(SAMPLERS))
@pytest.mark.parametrize("cv", [True, False])
def test_objective_runs_and_gradients_are_finite(problem, sampler, cv):
    """With every time sampler (and control variates on or off) the loss is finite, equals
    distil + consis + data, and backward gives finite gradients to the student's parameters,
    non-zero for its backbone."""
    teacher, student, x0 = problem
    torch.manual_seed(3)
    obj = Di4CObjective(SAMPLERS[sampler](), latents=LATENTS, control_variates=cv)
    out = obj(teacher, student, x0)
    assert set(out) == {"loss", "distil", "consis", "data"}
    for value in out.values():
        assert value.shape == () and torch.isfinite(value)
    torch.testing.assert_close(out["loss"], out["distil"] + out["consis"] + out["data"])
    assert out["distil"] >= 0  # a weighted mean of KLs
    out["loss"].backward()
    grads = {n: p.grad for n, p in student.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert sum(float(g.abs().sum()) for n, g in grads.items() if n.startswith("base.")) > 0
    # The embedding's last layer starts at zero, yet it receives a gradient (lambda can be learnt).
    assert grads["injection.embedding.mlp.2.weight"].abs().sum() > 0


def test_gradients_do_not_reach_a_frozen_network_teacher():
    """A frozen NetworkTeacher (the usual setup: student copied from it) gets no gradient."""
    torch.manual_seed(0)
    net = MLPDenoiserNet(D, S + 1, S, hidden=32, depth=1, time_features=16)
    teacher = NetworkTeacher(MaskingProcess(S), (D,), net).freeze()
    student = MixtureStudent.from_teacher(teacher, AdditiveInjection("net.time_embed", freq_dim=16))
    x0 = sample_data(make_table())
    for sampler in SAMPLERS.values():
        Di4CObjective(sampler(), latents=LATENTS)(teacher, student, x0)["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())


def test_without_data_loss_the_data_part_is_zero(problem):
    """data_loss=False removes the data term; with ConstantWeight(0) only its marginal KL remains,
    which is non-negative."""
    teacher, student, x0 = problem
    torch.manual_seed(4)
    with torch.no_grad():
        out = Di4CObjective(SDTTTimes(), latents=LATENTS, data_loss=False)(teacher, student, x0)
        assert float(out["data"]) == 0.0
        out = Di4CObjective(SDTTTimes(), ConstantWeight(0.0), latents=LATENTS)(teacher, student, x0)
        assert float(out["data"]) > 0.0


class _FixedTimes(TimeSampler):
    """Returns a given TimeDraw (first ``batch_size`` entries)."""

    def __init__(self, draw: TimeDraw) -> None:
        self._draw = draw

    def draw(self, batch_size: int, device=None) -> TimeDraw:
        return self._draw


def test_loss_weights_select_the_parts(problem, monkeypatch):
    """Each part is its weight times the loss: zero weights give exactly zero parts, and the
    consistency targets are computed only for examples whose consistency weight is positive."""
    teacher, student, x0 = problem
    t = torch.full((BATCH,), 0.6)
    zeros, ones = torch.zeros(BATCH), torch.ones(BATCH)
    calls = []
    original = StudentAtU.__call__

    def spy(self, teacher_, student_, x_t, *args):
        calls.append(x_t.shape[0])
        return original(self, teacher_, student_, x_t, *args)

    monkeypatch.setattr(StudentAtU, "__call__", spy)
    with torch.no_grad():
        obj = Di4CObjective(_FixedTimes(TimeDraw(t, t - 0.05, ones, zeros, zeros)), latents=LATENTS)
        out = obj(teacher, student, x0)
        assert float(out["consis"]) == 0.0 and float(out["data"]) == 0.0 and float(out["distil"]) > 0
        assert calls == []
        half = (torch.arange(BATCH) % 2).float()
        obj = Di4CObjective(_FixedTimes(TimeDraw(t, t - 0.05, zeros, half, zeros)), latents=LATENTS)
        out = obj(teacher, student, x0)
        assert float(out["distil"]) == 0.0 and float(out["data"]) == 0.0 and float(out["consis"]) != 0
        assert calls == [BATCH // 2]


# ---------------------------------------------------------------------------------------------
# The teacher runs once per input; targets carry no graph
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("sampler", "expected"), [("tauldr", 2), ("maskgit", 1), ("sdtt", 1)])
def test_teacher_network_called_once_per_input(problem, sampler, expected):
    """A product teacher's network runs once on x_t (its logits serve the data loss, the
    distillation target and the n consistency steps), plus once on x_delta for tau-LDR — each
    call on a batch of B, never B * n."""
    teacher, student, x0 = problem
    sizes = []
    original = teacher.network_logits

    def counting(x_t, t, cond=None):
        sizes.append(x_t.shape[0])
        return original(x_t, t, cond)

    teacher.network_logits = counting
    torch.manual_seed(5)
    draw = SAMPLERS[sampler]().draw(BATCH)
    assert bool((draw.w_consis > 0).any())  # the consistency path is exercised
    torch.manual_seed(5)
    Di4CObjective(SAMPLERS[sampler](), latents=LATENTS)(teacher, student, x0)
    assert sizes == [BATCH] * expected


def test_consistency_targets_are_computed_without_graph(problem):
    """The student's forward for the consistency targets runs under no_grad; the returned targets
    and target marginals carry no graph, while the student's own logits (on x_t) do."""
    teacher, student, x0 = problem
    seen = []
    original = student.denoise

    def spy(x_t, t, cond=None, lam=None):
        out = original(x_t, t, cond, lam)
        seen.append((torch.is_grad_enabled(), out.requires_grad))
        return out

    student.denoise = spy
    torch.manual_seed(6)
    obj = Di4CObjective(SDTTTimes(p_distil=0.0), latents=LATENTS)
    obj(teacher, student, x0)
    assert seen == [(True, True), (False, False)]  # student on x_t, then the targets

    draw = SDTTTimes(p_distil=0.0).draw(BATCH)
    x_t = teacher.process.corrupt(x0, draw.t)
    teacher_logp = teacher.log_marginal(x_t, draw.t)
    targets, target_lm = obj.target(teacher, student, x_t, draw, None, teacher_logp, LATENTS, None)
    assert targets.shape == (BATCH, LATENTS, D) and targets.dtype == torch.long
    assert target_lm.shape == (BATCH, D, S)
    assert not targets.requires_grad and not target_lm.requires_grad and target_lm.grad_fn is None
    assert ((targets >= 0) & (targets < S)).all()
    torch.testing.assert_close(target_lm.exp().sum(-1), torch.ones(BATCH, D))


def test_drawing_only_masked_positions_changes_no_target(problem, monkeypatch):
    """The consistency targets draw only the positions masked in ``x_u`` (the others are pinned to
    ``x_u``): for one seed they equal the targets of a draw over every position, and every unmasked
    position of ``x_u`` keeps its token."""
    teacher, student, x0 = problem
    obj = Di4CObjective(SDTTTimes(p_distil=0.0), latents=LATENTS)
    draw = SDTTTimes(p_distil=0.0).draw(BATCH)
    x_t = teacher.process.corrupt(x0, draw.t)
    teacher_logp = teacher.log_marginal(x_t, draw.t)
    steps = []
    original = teacher.consistency_step

    def keep_x_u(*args, **kwargs):
        steps.append(original(*args, **kwargs))
        return steps[-1]

    monkeypatch.setattr(teacher, "consistency_step", keep_x_u)
    torch.manual_seed(7)
    picked, lm = obj.target(teacher, student, x_t, draw, None, teacher_logp, LATENTS, None)
    monkeypatch.setattr(teacher.process, "random_positions", lambda x: None)
    torch.manual_seed(7)
    every, lm_every = obj.target(teacher, student, x_t, draw, None, teacher_logp, LATENTS, None)
    assert torch.equal(picked, every) and torch.equal(lm, lm_every)
    x_u = steps[0]
    kept = x_u != teacher.process.mask_id
    assert bool(kept.any()) and bool((~kept).any())
    assert torch.equal(picked[kept], x_u[kept])


# ---------------------------------------------------------------------------------------------
# Time samplers
# ---------------------------------------------------------------------------------------------
N_DRAWS = 20000


def test_tauldr_times_invariants():
    """Delta = t - u in [delta_min, delta_max] and log-uniform; u >= t_min; t <= 1; all three
    weights 1; distil_t in [distil_min, distil_max] with about half exactly at distil_min."""
    torch.manual_seed(0)
    sampler = TauLDRTimes()
    d = sampler.draw(N_DRAWS)
    delta = (d.t - d.u).double()
    assert (d.u <= d.t).all() and (d.u >= 0).all() and (d.t <= 1).all()
    assert (d.u >= 0.01 - 1e-6).all()
    assert (delta >= 1e-3 - 1e-6).all() and (delta <= 1e-2 + 1e-6).all()
    # log-uniform: mean of log Delta is the midpoint of the log range (sd of the mean ~ 0.005).
    assert abs(float(delta.log().mean()) - 0.5 * (math.log(1e-3) + math.log(1e-2))) < 0.03
    for w in (d.w_distil, d.w_consis, d.w_data):
        assert torch.equal(w, torch.ones(N_DRAWS))
    assert d.distil_t is not None
    assert (d.distil_t >= 0.01 - 1e-7).all() and (d.distil_t <= 0.02 + 1e-7).all()
    atom = float((d.distil_t == torch.tensor(0.01)).double().mean())
    assert abs(atom - 0.5) < 0.02
    spread = d.distil_t[d.distil_t != torch.tensor(0.01)]
    assert abs(float(spread.mean()) - 0.015) < 0.0005  # the rest is uniform on [0.01, 0.02]


def test_maskgit_times_invariants():
    """u = max(t - step, 0); below distil_below the distillation loss (weight 20) replaces the
    consistency loss; the data loss applies everywhere; no separate distillation time."""
    torch.manual_seed(0)
    d = MaskGITTimes().draw(N_DRAWS)
    assert (d.u <= d.t).all() and (d.u >= 0).all() and (d.t - d.u <= 0.05 + 1e-6).all()
    torch.testing.assert_close(d.u, (d.t - 0.05).clamp_min(0))
    near = d.t <= 0.05
    assert 0 < int(near.sum()) < N_DRAWS
    assert torch.equal(d.w_distil, 20.0 * near.float())
    assert torch.equal(d.w_consis, (~near).float())
    assert torch.equal(d.w_data, torch.ones(N_DRAWS))
    assert d.distil_t is None


def test_sdtt_times_invariants():
    """A fraction p_distil of examples get t < distil_max and only distillation; the rest
    t >= distil_max and consistency with u = t - step >= 0; data loss everywhere."""
    torch.manual_seed(0)
    d = SDTTTimes().draw(N_DRAWS)
    near = d.w_distil > 0
    assert abs(float(near.double().mean()) - 0.3) < 0.015  # binomial sd ~ 0.0032
    assert torch.equal(d.w_distil + d.w_consis, torch.ones(N_DRAWS))
    assert (d.t[near] < 0.02).all() and (d.t[near] >= 0).all()
    assert (d.t[~near] >= 0.02).all() and (d.t[~near] <= 1).all()
    assert (d.u <= d.t).all() and (d.u >= 0).all()
    torch.testing.assert_close(d.u[~near], d.t[~near] - 1.0 / 1024)
    assert torch.equal(d.w_data, torch.ones(N_DRAWS))
    assert d.distil_t is None


# ---------------------------------------------------------------------------------------------
# Weight schedules and argument checks
# ---------------------------------------------------------------------------------------------
def test_weight_schedules():
    """alpha(t): scale * sigmoid(sharpness (t - center)), scale * t, and a constant."""
    t = torch.tensor([0.0, 0.25, 0.5, 0.9, 1.0])
    want = [0.1 / (1 + math.exp(-20 * (x - 0.5))) for x in t.tolist()]
    torch.testing.assert_close(SigmoidWeight(scale=0.1)(t), torch.tensor(want))
    assert float(SigmoidWeight()(torch.tensor(0.5))) == 0.5
    torch.testing.assert_close(
        SigmoidWeight(2.0, sharpness=4.0, center=0.25)(t), 2 * torch.sigmoid(4 * (t - 0.25))
    )
    torch.testing.assert_close(LinearWeight(3.0)(t), 3.0 * t)
    torch.testing.assert_close(ConstantWeight(0.3)(t), torch.full((5,), 0.3))
    torch.testing.assert_close(ConstantWeight(0.0)(t), torch.zeros(5))


@pytest.mark.parametrize(
    ("factory", "name"),
    [
        (lambda: TauLDRTimes(delta_min=0.0), "delta_min"),
        (lambda: TauLDRTimes(delta_min=0.02, delta_max=0.01), "delta_max"),
        (lambda: TauLDRTimes(distil_min=0.03, distil_max=0.02), "distil_min"),
        (lambda: TauLDRTimes(distil_atom=1.5), "distil_atom"),
        (lambda: MaskGITTimes(step=0.0), "step"),
        (lambda: MaskGITTimes(step=1.0), "step"),
        (lambda: SDTTTimes(p_distil=1.5), "p_distil"),
        (lambda: SDTTTimes(step=0.5, distil_max=0.02), "step"),
        (lambda: SigmoidWeight(scale=-1.0), "scale"),
        (lambda: Di4CObjective(latents=0), "latents"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(factory, name):
    """Invalid settings raise ValueError whose message names the argument."""
    with pytest.raises(ValueError, match=name):
        factory()


def test_label_dropout_relabels_teacher_and_student_alike(problem):
    """Invariant: with label_dropout p the teacher's targets and the student's logits see the same
    labels, of which a fraction p (binomial, 4 sigma) is the "no class" label and the rest are the
    data's own; p = 0 passes the labels through, and p > 0 without labels is refused by name."""
    teacher, student, x0 = problem
    x0 = x0.repeat(100, 1)  # (3200, D)
    cond = torch.randint(4, (x0.shape[0],))
    seen: dict[str, list[Tensor]] = {"teacher": [], "student": []}
    t_orig, s_orig = teacher.log_marginal, student.denoise_latent

    def teacher_spy(x_t, t, c=None):
        seen["teacher"].append(c)
        return t_orig(x_t, t)  # the oracle itself takes no labels

    def student_spy(x_t, t, c, lam):
        seen["student"].append(c)
        return s_orig(x_t, t, None, lam)

    teacher.log_marginal, student.denoise_latent = teacher_spy, student_spy
    teacher.num_classes = 4  # label 4 is then "no class"
    torch.manual_seed(7)
    Di4CObjective(SDTTTimes(p_distil=0.0), latents=2, label_dropout=0.3)(teacher, student, x0, cond)
    got = seen["teacher"][0]
    assert torch.equal(seen["student"][0], got)
    dropped = got == 4
    assert torch.equal(got[~dropped], cond[~dropped])
    n = x0.shape[0]
    assert abs(float(dropped.float().mean()) - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)
    seen["teacher"].clear()
    Di4CObjective(SDTTTimes(p_distil=0.0), latents=2)(teacher, student, x0, cond)
    assert torch.equal(seen["teacher"][0], cond)
    with pytest.raises(ValueError, match="label_dropout=0.3"):
        Di4CObjective(label_dropout=0.3)(teacher, student, x0, None)
    with pytest.raises(ValueError, match="label_dropout=1.0"):
        Di4CObjective(label_dropout=1.0)
