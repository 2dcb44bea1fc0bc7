"""SDTT's product distillation objective (mixdistill/di4c/sdtt.py), the baseline beside Di4C."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from mixdistill.cli import run as cli
from mixdistill.di4c import Objective, SDTTObjective
from mixdistill.di4c.objective import Di4CObjective
from mixdistill.injection import AdditiveInjection, LatentInjection
from mixdistill.module import DistillModule
from mixdistill.nets.mlp import MLPDenoiserNet
from mixdistill.processes import MaskingProcess, UniformProcess
from mixdistill.sampling.seeding import seeded
from mixdistill.student import MixtureStudent
from mixdistill.teachers.base import Teacher
from mixdistill.teachers.exact import ExactTeacher
from mixdistill.teachers.network import NetworkTeacher

S = 3


class NoInjection(LatentInjection):
    """Lambda enters nowhere: the student is exactly its teacher (for teachers without a network)."""

    exact_at_init = True

    def attach(self, model: nn.Module, latent_dim: int) -> None:
        pass

    def set_latent(self, lam: Tensor | None) -> None:
        pass


def table(dims: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return (2.0 * torch.randn(S**dims, generator=g, dtype=torch.float64)).softmax(0).view((S,) * dims)


def data(probs: Tensor, batch: int, seed: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    idx = torch.multinomial(probs.reshape(-1), batch, replacement=True, generator=g)
    return torch.stack(torch.unravel_index(idx, probs.shape), dim=1)


def oracle_pair(dims: int) -> tuple[ExactTeacher, MixtureStudent, Tensor]:
    probs = table(dims)
    teacher = ExactTeacher(MaskingProcess(S), probs)
    return teacher, MixtureStudent.from_teacher(teacher, NoInjection()), data(probs, 256)


def test_loss_is_zero_where_two_teacher_steps_equal_one():
    """Invariant: at D = 1 the oracle's product steps are exact (a masked token's posterior is the
    data distribution at every t), so a student equal to it has loss 0; the masked fraction is
    reported."""
    teacher, student, x0 = oracle_pair(1)
    with seeded(0):
        out = SDTTObjective(step=0.5)(teacher, student, x0)
    assert abs(float(out["loss"])) < 1e-6
    assert 0.2 < float(out["masked"]) < 0.8  # t ~ U(0, 1): about half the tokens are masked


@pytest.mark.parametrize("reverse", [False, True])
def test_loss_is_positive_where_correlations_make_two_steps_differ(reverse):
    """Invariant: at D = 3 on a correlated table, tokens unmasked in the teacher's first step change
    its second prediction, so the same student has a clearly positive loss (either KL direction)."""
    teacher, student, x0 = oracle_pair(3)
    with seeded(0):
        loss = float(SDTTObjective(step=0.5, reverse=reverse)(teacher, student, x0)["loss"])
    assert loss > 1e-2 and math.isfinite(loss)


class TimeLogits(Teacher):
    """Two values with logits ``[10 t - 5, 0]`` at every position: the prediction reveals its time."""

    def __init__(self, dims: int) -> None:
        super().__init__(MaskingProcess(2), (dims,))

    def network_logits(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        zero = torch.zeros(x_t.shape[0], self.num_dims, device=x_t.device)
        return torch.stack([10 * t[:, None] - 5 + zero, zero], -1)


def test_target_takes_the_prediction_of_the_step_that_unmasked_each_token():
    """Invariant (SDTT's target): from t = 0.8, two teacher steps to 0.6 and 0.4. A token unmasked in
    the first step (probability 0.2 / 0.8 under the linear schedule) takes the prediction at 0.8;
    all others take the one at 0.6. Every row is one of the two, in those proportions."""
    B, D = 200, 100
    obj = SDTTObjective(step=0.4, teacher_steps=2)
    x_t = torch.full((B, D), 2)  # all masked
    with seeded(0):
        p0 = obj.target(TimeLogits(D), x_t, torch.full((B,), 0.8), None).exp()[..., 0]  # (B, D)
    first, second = torch.sigmoid(torch.tensor(3.0)), torch.sigmoid(torch.tensor(1.0))
    is_first = (p0 - first).abs() < 1e-6
    assert bool((is_first | ((p0 - second).abs() < 1e-6)).all())
    assert abs(float(is_first.float().mean()) - 0.25) < 0.01  # 20000 tokens: sd 0.003


def test_a_few_optimizer_steps_reduce_the_loss():
    """Invariant: the loss is a training signal: 40 gradient steps on an MLP student of a D = 3 oracle
    lower it (same batch and random stream before and after) by more than a third."""
    probs = table(3)
    teacher = ExactTeacher(MaskingProcess(S), probs)
    torch.manual_seed(0)
    net = MLPDenoiserNet(3, S + 1, S, hidden=64, depth=1, time_features=16)
    base = NetworkTeacher(MaskingProcess(S), (3,), net)
    student = MixtureStudent.from_teacher(base, AdditiveInjection("net.time_embed", freq_dim=16))
    obj, x0 = SDTTObjective(step=0.25), data(probs, 128)

    def loss(seed: int) -> Tensor:
        with seeded(seed):
            return obj(teacher, student, x0)["loss"]

    with torch.no_grad():
        before = float(loss(0))
    for i in range(40):  # plain SGD, written out (a torch.optim optimizer imports torch._dynamo, ~4 s)
        student.zero_grad()
        loss(100 + i).backward()
        with torch.no_grad():
            for p in student.parameters():
                p -= 0.5 * p.grad
    with torch.no_grad():
        after = float(loss(0))
    assert after < 0.66 * before


def test_plugs_into_distill_module_and_the_config():
    """Invariant: DistillModule takes any Objective; its default stays Di4C; a config may choose
    SDTTObjective by class_path; a non-absorbing process is refused by name."""
    teacher, _, x0 = oracle_pair(2)
    inj = NoInjection()
    assert isinstance(DistillModule(teacher, injection=inj).objective, Di4CObjective)
    module = DistillModule(teacher, objective=SDTTObjective(), injection=inj)
    assert isinstance(module.objective, Objective)
    out = module.objective(module.teacher, module.student, x0)
    assert set(out) == {"loss", "masked"} and torch.isfinite(out["loss"])
    uniform = ExactTeacher(UniformProcess(S), table(2))
    with pytest.raises(ValueError, match="absorbing"):
        SDTTObjective()(uniform, MixtureStudent.from_teacher(uniform, NoInjection()), x0)


def test_the_shipped_overlay_turns_the_text_run_into_sdtt(capsys):
    """Invariant: configs/baselines/sdtt_text.yaml merged over configs/text.yaml is a valid config
    that keeps the teacher and swaps the objective for SDTT's."""
    configs = Path(__file__).resolve().parent.parent / "configs"
    args = ["--config", str(configs / "text.yaml"), "--config", str(configs / "baselines" / "sdtt_text.yaml")]
    with pytest.raises(SystemExit) as exit_info:
        cli(["fit", *args, "--print_config"])
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert "class_path: mixdistill.di4c.sdtt.SDTTObjective" in out and "step: 0.0625" in out
    assert "Di4CObjective" not in out and "shakespeare_teacher.safetensors" in out


def test_a_config_trains_with_sdtt(tmp_path):
    """Invariant: a config chooses SDTTObjective by class_path and `mixdistill fit` trains with it:
    a finite loss and the masked fraction are logged."""
    config = str(Path(__file__).resolve().parent.parent / "configs" / "synthetic.yaml")
    run = cli(
        [
            "fit",
            "--config",
            config,
            "--model.init_args.objective=mixdistill.di4c.sdtt.SDTTObjective",
            "--model.init_args.objective.step=0.25",
            "--data.init_args.num_samples=500",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.max_steps=3",
            "--trainer.limit_val_batches=0",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
        ]
    )
    assert isinstance(run.model.objective, SDTTObjective) and run.model.objective.step == 0.25
    metrics = run.trainer.callback_metrics
    assert run.trainer.global_step == 3 and math.isfinite(float(metrics["train/loss"]))
    assert 0.0 <= float(metrics["train/masked"]) <= 1.0
