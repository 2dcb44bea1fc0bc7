"""Hybrid sampling (mixdistill/sampling/hybrid.py): the student for the first k steps of a chain,
the teacher for the rest, as a function, a sampler object, exact distributions and evaluation rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import Tensor

from mixdistill.cli import run as cli
from mixdistill.evaluation.exact import sampler_distribution, total_variation
from mixdistill.evaluation.quality import QualityEvaluation
from mixdistill.injection import AdditiveInjection
from mixdistill.metrics.exact_tv import ExactDivergence
from mixdistill.nets.mlp import MLPDenoiserNet
from mixdistill.processes import MaskingProcess
from mixdistill.sampling.hybrid import HybridSampler, sample_hybrid
from mixdistill.sampling.seeding import seeded
from mixdistill.sampling.step_rule import AncestralStep
from mixdistill.student import MixtureStudent
from mixdistill.tables import enumerate_states
from mixdistill.teachers.exact import ExactTeacher
from mixdistill.teachers.network import NetworkTeacher

S, D, STEPS, NODES = 3, 2, 3, 32
TABLE = torch.tensor([[0.30, 0.05, 0.0], [0.0, 0.20, 0.05], [0.10, 0.0, 0.30]], dtype=torch.float64)


def make_student(rule=None) -> MixtureStudent:
    """An MLP student whose output depends on lambda (its embedding's last layer is not zero)."""
    torch.manual_seed(0)
    net = MLPDenoiserNet(D, S + 1, S, hidden=32, depth=1, time_features=16)
    base = NetworkTeacher(MaskingProcess(S), (D,), net, step_rule=rule)
    student = MixtureStudent.from_teacher(base, AdditiveInjection("net.time_embed", freq_dim=8))
    torch.nn.init.normal_(student.injection.embedding.mlp[-1].weight, std=2.0)
    return student.eval()


@pytest.fixture(scope="module")
def pair() -> tuple[MixtureStudent, ExactTeacher]:
    return make_student(), ExactTeacher(MaskingProcess(S), TABLE)


def draws(fn, seed: int = 0) -> Tensor:
    with seeded(seed):
        return fn()


def test_all_student_or_all_teacher_steps_are_exactly_their_samplers(pair):
    """Invariant: k = steps is student.sample and k = 0 is teacher.sample, draw for draw (same seed),
    and the two differ from each other (the student is not the teacher)."""
    student, teacher = pair
    n = 500
    only_student = draws(lambda: sample_hybrid(student, teacher, n, STEPS, STEPS))
    only_teacher = draws(lambda: sample_hybrid(student, teacher, n, STEPS, 0))
    assert torch.equal(only_student, draws(lambda: student.sample(n, STEPS)))
    assert torch.equal(only_teacher, draws(lambda: teacher.sample(n, STEPS)))
    assert not torch.equal(only_student, only_teacher)


def test_exact_distribution_of_the_ends_and_of_a_real_hybrid(pair):
    """Invariant: the exact distribution of HybridSampler(k = steps) is the student's, of k = 0 the
    teacher's; for k = 1 it lies away from both and matches 40000 draws of sample_hybrid (TV < 0.02,
    the sampling noise of 9 cells is about 0.005)."""
    student, teacher = pair
    exact = {
        k: sampler_distribution(HybridSampler(student, teacher, k), STEPS, nodes=NODES) for k in (0, 1, 3)
    }
    torch.testing.assert_close(exact[3], sampler_distribution(student, STEPS, nodes=NODES))
    torch.testing.assert_close(exact[0], sampler_distribution(teacher, STEPS))
    assert total_variation(exact[1], exact[0]) > 0.05 and total_variation(exact[1], exact[3]) > 0.05
    x = draws(lambda: HybridSampler(student, teacher, 1).sample(40_000, STEPS))  # (N, D)
    index = x[:, 0] * S + x[:, 1]
    hist = torch.bincount(index, minlength=S**D).double() / x.shape[0]
    assert enumerate_states(S, D)[1].tolist() == [0, 1]  # row-major, the order index uses
    assert float(total_variation(hist, exact[1])) < 0.02


class Recording(AncestralStep):
    """The ancestral step, recording each step's (index, total) context."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def step(self, process, x_t, logits, t, s, num_samples=None, context=None):
        self.seen.append((context.index, context.total))
        return super().step(process, x_t, logits, t, s, num_samples, context)


def test_steps_carry_chain_wide_contexts():
    """Invariant: the student runs steps 0..k-1 and the teacher k..steps-1, each told its index in
    the whole chain and the chain's length (MaskGIT's schedules and guidance ramps read them)."""
    student = make_student(Recording())  # the student's rule is a copy of its base's
    teacher = NetworkTeacher(MaskingProcess(S), (D,), student.base.net, step_rule=Recording())
    out = sample_hybrid(student, teacher, 4, 5, 2)
    assert out.shape == (4, D) and bool((out < S).all())
    assert student.step_rule.seen == [(0, 5), (1, 5)]
    assert teacher.step_rule.seen == [(2, 5), (3, 5), (4, 5)]
    with pytest.raises(ValueError, match="student_steps=6"):
        sample_hybrid(student, teacher, 4, 5, 6)


def test_quality_evaluation_hybrid_rows(pair):
    """Invariant: hybrid_steps [[steps, k]] adds rows (model "hybrid_k<k>", steps, student_steps) after
    the student's, with the exact TV of that hybrid chain; bad pairs are refused; YAML accepts it."""
    student, teacher = pair
    ev = QualityEvaluation(
        [STEPS], [STEPS], exact_metrics=[ExactDivergence(nodes=NODES)], hybrid_steps=[[3, 1]]
    )
    rows = ev.run(teacher, student)
    assert [(r["model"], r["steps"]) for r in rows] == [("teacher", 3), ("student", 3), ("hybrid_k1", 3)]
    hybrid = rows[-1]
    assert hybrid["student_steps"] == 1
    want = total_variation(
        sampler_distribution(HybridSampler(student, teacher, 1), STEPS, nodes=NODES), TABLE.reshape(-1)
    )
    assert hybrid["TV"] == pytest.approx(float(want), abs=1e-12)
    with pytest.raises(ValueError, match="hybrid_steps"):
        QualityEvaluation([2], [2], exact_metrics=[ExactDivergence()], hybrid_steps=[[2, 3]])
    config = str(Path(__file__).resolve().parent.parent / "configs" / "synthetic.yaml")
    with pytest.raises(SystemExit) as exit_info:
        cli(
            [
                "fit",
                "--config",
                config,
                "--model.init_args.evaluation.init_args.hybrid_steps=[[4, 2]]",
                "--print_config",
            ]
        )
    assert exit_info.value.code in (0, None)


def test_mixdistill_test_writes_hybrid_rows(tmp_path):
    """Invariant: `mixdistill test` with hybrid_steps writes one row per [steps, k] to quality.json,
    named hybrid_k<k> (distinct logged keys for distinct k), with an exact TV in [0, 1]."""
    config = str(Path(__file__).resolve().parent.parent / "configs" / "synthetic.yaml")
    ev, exact = "--model.init_args.evaluation.init_args", "mixdistill.metrics.exact_tv.ExactDivergence"
    args = [
        "--config",
        config,
        "--data.init_args.num_samples=500",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"{ev}.teacher_steps=[2]",
        f"{ev}.student_steps=[2]",
        f"{ev}.hybrid_steps=[[2, 1], [4, 1], [4, 2]]",
        f"{ev}.exact_metrics=[{{class_path: {exact}, init_args: {{nodes: 16}}}}]",
    ]
    cli(["fit", *args, "--trainer.max_steps=1", "--trainer.limit_val_batches=0"])
    cli(["test", *args, f"--ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}"])
    rows = json.loads(next(tmp_path.rglob("quality.json")).read_text())["rows"]
    got = [(r["model"], r["steps"], r.get("student_steps")) for r in rows]
    assert got[2:] == [("hybrid_k1", 2, 1), ("hybrid_k1", 4, 1), ("hybrid_k2", 4, 2)]
    assert all(0.0 <= r["TV"] <= 1.0 for r in rows)
