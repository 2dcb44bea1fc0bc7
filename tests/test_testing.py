"""check_teacher (mixdistill/testing) on the shipped teachers and on deliberately broken ones, and
the ``python -m mixdistill.testing`` command on the shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

from mixdistill.assets import ASSETS
from mixdistill.injection import ExtraTokenInjection
from mixdistill.nets.mlp import MLPDenoiserNet
from mixdistill.nets.transformer import TransformerDenoiserNet
from mixdistill.processes import MaskingProcess, UniformProcess
from mixdistill.sampling.guidance import ClassifierFreeGuidance
from mixdistill.sampling.step_rule import StepRule
from mixdistill.teachers.exact import ExactTeacher
from mixdistill.teachers.network import NetworkTeacher
from mixdistill.testing import TeacherCheckError, check_teacher
from mixdistill.testing.__main__ import main

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
D, S = 4, 3


def mlp_teacher(**kwargs) -> NetworkTeacher:
    torch.manual_seed(0)
    net = MLPDenoiserNet(D, S + 1, S, hidden=16, depth=1, time_features=8, dropout=0.2)
    return NetworkTeacher(MaskingProcess(S), (D,), net, **kwargs)


def transformer_teacher(num_classes: int = 0) -> NetworkTeacher:
    torch.manual_seed(0)
    net = TransformerDenoiserNet(6, 6, 5, dim=16, depth=1, heads=2, num_classes=num_classes)
    guidance = ClassifierFreeGuidance(2.0) if num_classes else None
    return NetworkTeacher(MaskingProcess(5), (2, 3), net, num_classes=num_classes, guidance=guidance)


def table(shape=(S, S)) -> Tensor:
    t = torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return t / t.sum()


# ---- the shipped teachers pass -------------------------------------------------------------------


def test_mlp_teacher_passes_and_student_is_an_exact_copy():
    """Invariant: a NetworkTeacher (MLP, dropout on) passes every check, on itself and on its
    AdditiveInjection student, whose logits equal the teacher's exactly at init; the parameter counts
    are those of the modules; the teacher's training flag is restored."""
    teacher = mlp_teacher().train()
    report = check_teacher(teacher)
    assert teacher.training, "check_teacher restores the caller's mode"
    assert report.parameters == sum(p.numel() for p in teacher.parameters()) > 0
    # The student adds the lambda embedding at net.time_embed (width 16): 128 -> 16 -> 16.
    assert report.student_parameters - report.parameters == (128 * 16 + 16) + (16 * 16 + 16)
    assert report.init_exact is True and report.init_max_abs_diff == 0.0
    expected = ["logits", "carry_over", "step", "sample"]
    assert list(report.checks) == [*expected, "student_init", *(f"student.{c}" for c in expected)]
    assert set(report.checks.values()) == {"ok"}
    assert "student init max |logit diff| = 0" in report.format()


def test_conditional_transformer_with_extra_token_reports_a_finite_nonzero_difference():
    """Invariant: a conditional, guided teacher passes; an ExtraTokenInjection student is not an exact
    copy, so check_teacher reports its difference (finite, > 0) instead of failing; the additive
    student of the same teacher is exact."""
    teacher = transformer_teacher(num_classes=3)
    report = check_teacher(teacher, ExtraTokenInjection(hidden=16, freq_dim=8))
    assert report.init_exact is False
    assert 0.0 < report.init_max_abs_diff < float("inf")
    assert report.checks["student.sample"] == "ok"
    assert check_teacher(teacher).init_max_abs_diff == 0.0


@pytest.mark.parametrize("process", [MaskingProcess(S), UniformProcess(S)], ids=["masking", "uniform"])
def test_exact_teacher_passes_and_skips_what_does_not_apply(process):
    """Invariant: the oracle passes; it has no parameters and no latent layer (student skipped), and
    the carry-over check runs only for the absorbing process."""
    report = check_teacher(ExactTeacher(process, table()))
    assert report.parameters == 0 and report.init_max_abs_diff is None
    assert report.checks["student_init"].startswith("skipped")
    absorbing = isinstance(process, MaskingProcess)
    assert (report.checks["carry_over"] == "ok") is absorbing
    assert report.checks["step"] == report.checks["sample"] == "ok"


# ---- broken teachers fail, naming the check --------------------------------------------------------


class WithMaskLogit(NetworkTeacher):
    """Returns S + 1 logits (a mask logit, as MDLM's raw network does)."""

    def network_logits(self, x_t, t, cond=None):
        out = super().network_logits(x_t, t, cond)
        return torch.cat([out, out[..., :1]], -1)


class NaNLogits(NetworkTeacher):
    def network_logits(self, x_t, t, cond=None):
        out = super().network_logits(x_t, t, cond).clone()
        out[:, 0, 0] = float("nan")
        return out


class Unconstrained(NetworkTeacher):
    """Skips process.constrain_logits: unmasked tokens get the network's spread-out distribution."""

    def denoise(self, x_t, t, cond=None):
        return self.network_logits(x_t, t, cond)


class Resample(StepRule):
    """Redraws every token uniformly, unmasked ones included."""

    def step(self, process, x_t, logits, t, s, num_samples=None, context=None):
        shape = x_t.shape if num_samples is None else (x_t.shape[0], num_samples, x_t.shape[1])
        return torch.randint(process.vocab_size, shape)


class NeverUnmask(StepRule):
    def step(self, process, x_t, logits, t, s, num_samples=None, context=None):
        return x_t if num_samples is None else x_t.unsqueeze(1).repeat(1, num_samples, 1)


class FlatSamples(NetworkTeacher):
    def sample(self, num_samples, steps, cond=None, grid=None):
        return super().sample(num_samples, steps, cond, grid).flatten(1)


class ClaimsExact(ExtraTokenInjection):
    exact_at_init = True


@pytest.mark.parametrize(
    "make, check, message",
    [
        (
            lambda: WithMaskLogit(MaskingProcess(S), (D,), mlp_teacher().net),
            "logits",
            r"network_logits returned \(2, 4, 4\), expected \(B, D, S\) = \(2, 4, 3\)",
        ),
        (lambda: NaNLogits(MaskingProcess(S), (D,), mlp_teacher().net), "logits", "2 non-finite"),
        (lambda: Unconstrained(MaskingProcess(S), (D,), mlp_teacher().net), "carry_over", "mass"),
        (lambda: mlp_teacher(step_rule=Resample()), "carry_over", "step changed"),
        (lambda: mlp_teacher(step_rule=NeverUnmask()), "step", "s = 0 must leave only data"),
        (lambda: FlatSamples(MaskingProcess(5), (2, 3), transformer_teacher().net), "sample", r"\(2, 2, 3\)"),
    ],
    ids=["wrong_shape", "nan", "no_carry_over", "changes_unmasked", "mask_left", "sample_shape"],
)
def test_broken_teachers_fail_naming_the_check(make, check, message):
    """Invariant: each broken teacher raises TeacherCheckError (an AssertionError) whose message
    starts with the failed check's name and says what was wrong."""
    with pytest.raises(AssertionError, match=rf"^check_teacher \[{check}\]: .*{message}") as err:
        check_teacher(make())
    assert isinstance(err.value, TeacherCheckError) and err.value.check == check


def test_an_injection_claiming_exactness_must_be_exact():
    """Invariant: an injection with exact_at_init whose student differs at init fails student_init."""
    with pytest.raises(TeacherCheckError, match=r"\[student_init\].*differ .* by up to"):
        check_teacher(transformer_teacher(), ClaimsExact(hidden=16, freq_dim=8))


# ---- the command -----------------------------------------------------------------------------------

needs_assets = pytest.mark.skipif(
    not (ASSETS / "shakespeare_teacher.safetensors").is_file(), reason="assets not built (make assets)"
)


@needs_assets
def test_command_checks_the_quickstart_teacher(capsys):
    """Invariant: the command builds the quickstart teacher from its shipped weights, passes every
    check with an exact additive student, and prints the parameter count of the 8x8 MLP."""
    report = main(["--config", str(CONFIGS / "quickstart.yaml")])
    out = capsys.readouterr().out
    assert not report.meta and set(report.checks.values()) == {"ok"}
    assert report.parameters == 988_224 and "988,224" in out
    assert "student_init         ok" in out and "max |logit diff| = 0" in out


@needs_assets
def test_command_on_text_config_real_and_meta_agree(tmp_path, capsys):
    """Invariant: the Shakespeare transformer passes the checks for real, and --meta prints the same
    parameter counts without reading weights (a missing checkpoint file does not matter there)."""
    real = main(["--config", str(CONFIGS / "text.yaml")])
    assert set(real.checks.values()) == {"ok"} and real.init_max_abs_diff == 0.0
    missing = tmp_path / "missing.yaml"
    missing.write_text("model:\n  init_args:\n    teacher:\n      init_args:\n        checkpoint: /nope.pt\n")
    meta = main(["--config", str(CONFIGS / "text.yaml"), "--config", str(missing), "--meta"])
    assert meta.meta and (meta.parameters, meta.student_parameters) == (
        real.parameters,
        real.student_parameters,
    )
    assert meta.checks == {"overrides": "model.init_args.teacher.init_args.checkpoint=null"}
    assert "no forward pass was run" in capsys.readouterr().out


@needs_assets
def test_command_goes_meta_above_max_params(capsys):
    """Invariant: a model larger than --max_params is only counted on the meta device."""
    report = main(["--config", str(CONFIGS / "quickstart.yaml"), "--max_params", "1e5"])
    assert report.meta and report.parameters == 988_224


def test_command_failure_exits_with_status_1(tmp_path, capsys):
    """Invariant: a failed check prints FAILED with the check's name and exits with status 1."""
    cfg = tmp_path / "broken.yaml"  # shape [5] but a network for D = 4
    cfg.write_text(
        "model:\n  init_args:\n    teacher:\n"
        "      class_path: mixdistill.teachers.network.NetworkTeacher\n"
        "      init_args:\n        process: {class_path: mixdistill.processes.MaskingProcess, "
        "init_args: {vocab_size: 3}}\n        shape: [5]\n"
        "        net: {class_path: mixdistill.nets.mlp.MLPDenoiserNet, "
        "init_args: {num_dims: 4, num_states: 4, vocab_size: 3, hidden: 8, depth: 1}}\n"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(cfg)])
    assert exit_info.value.code == 1
    assert "FAILED check_teacher [logits]: raised RuntimeError: mat1 and mat2 shapes" in (
        capsys.readouterr().out
    )


def test_command_on_a_config_with_student_base(capsys):
    """Invariant: synthetic.yaml's oracle passes; it cannot be built on the meta device, so the command
    checks it for real, and its separate student_base is not compared with it."""
    report = main(["--config", str(CONFIGS / "synthetic.yaml")])
    assert report.teacher == "ExactTeacher" and report.checks["step"] == "ok"
    assert "student_base" in report.checks["student_init"]


@needs_assets
def test_command_missing_checkpoint_prints_counts_then_fails(tmp_path, capsys):
    """Invariant: a checkpoint file that is not there stops the checks (status 1, naming the file),
    but the parameter counts from the meta build are still printed."""
    cfg = tmp_path / "missing.yaml"
    cfg.write_text(
        "model:\n  init_args:\n    teacher:\n      init_args:\n        checkpoint: /nope.safetensors\n"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(CONFIGS / "quickstart.yaml"), "--config", str(cfg)])
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "988,224" in out and "FAILED to build" in out and "/nope.safetensors" in out
