"""Every bad input fails clearly, before training: the CLI on a tiny config with one bad override stops
before any training (or test) step, with a short message that names the setting (or the file) and the
value. The table of all cases, these and those tested elsewhere, is docs/reliability.md.

Cases marked xfail(strict=True) document messages that are not clear yet (docs/reliability.md, "Gaps").
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from cli_args import CONFIG_DIR, tiny_synthetic

from mixdistill.assets import ASSETS
from mixdistill.cli import main as console_main
from mixdistill.cli import run
from mixdistill.module import DistillModule
from mixdistill.teacher_module import TeacherModule

#: One screen: the message (for a parse error, the part from ``error:`` on) is at most this long.
MAX_LINES, MAX_CHARS = 15, 1500
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
EVAL = "--model.init_args.evaluation.init_args."


def grid_files(tmp: Path) -> None:
    """Tiny token-grid files (7x7 codes of 256, 10 classes): good, ids too large, labels too large, no key."""
    rng = np.random.default_rng(0)
    tokens, labels = rng.integers(0, 256, (200, 7, 7)), rng.integers(0, 10, 200)
    np.savez(tmp / "tokens.npz", tokens=tokens, labels=labels)
    np.savez(tmp / "big_ids.npz", tokens=np.full_like(tokens, 300), labels=labels)
    np.savez(tmp / "big_labels.npz", tokens=tokens, labels=np.full_like(labels, 12))
    np.savez(tmp / "no_key.npz", x=tokens)


def config(kind: str, root: Path, tmp: Path) -> list[str]:
    """The cheapest config of each kind, shrunk to 2 CPU steps under ``root``."""
    steps = [f"--trainer.default_root_dir={root}", "--trainer.max_steps=2", "--trainer.limit_val_batches=0"]
    if kind == "synthetic":  # ExactTeacher on a 3^4 table, SyntheticData
        return tiny_synthetic(root, 2)
    if kind == "grid":  # TeacherModule(MaskGITTeacher) on TokenGridData: labels, ClassDropout
        grid_files(tmp)
        cfg = str(CONFIG_DIR / "teacher_image_tokens.yaml")
        return ["--config", cfg, *steps, *QUIET, f"--data.init_args.path={tmp / 'tokens.npz'}"]
    if kind == "quickstart":  # NetworkTeacher read from asset:digits_teacher.safetensors
        return ["--config", str(CONFIG_DIR / "quickstart.yaml"), *steps, *QUIET]
    if kind == "text":  # TextData with the shipped tokenizer
        cfg = str(CONFIG_DIR / "text.yaml")
        return ["--config", cfg, *steps, *QUIET, f"--data.init_args.cache_dir={root / 'cache'}"]
    raise AssertionError(kind)


def case(name, kind, overrides, names, command="fit", xfail=None):
    """A bad input: ``overrides`` on config ``kind``; the message must contain every string in ``names``
    (the setting and the value, or the file); ``{tmp}`` stands for the test's folder."""
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(command, kind, overrides, names, id=name, marks=marks)


CASES = [
    # --- values out of range, refused by the constructor of the setting's class ---------------------
    case(
        "latents-0",
        "synthetic",
        ["--model.init_args.objective.init_args.latents=0"],
        ["model.init_args.objective", "latents=0"],
    ),
    case(
        "teacher_steps-0",
        "synthetic",
        [EVAL + "teacher_steps=[0, 2]"],
        ["model.init_args.evaluation", "teacher_steps=[0, 2]"],
    ),
    case(
        "student_steps-0",
        "synthetic",
        [EVAL + "student_steps=[0]"],
        ["model.init_args.evaluation", "student_steps=[0]"],
    ),
    case(
        "eval-num_samples-0",
        "synthetic",
        [EVAL + "num_samples=0"],
        ["model.init_args.evaluation", "num_samples=0"],
    ),
    case("batch_size-0", "synthetic", ["--data.init_args.batch_size=0"], ["data", "batch_size=0"]),
    case("data-num_samples-0", "synthetic", ["--data.init_args.num_samples=0"], ["data", "num_samples=0"]),
    case(
        "val_fraction-1.5", "synthetic", ["--data.init_args.val_fraction=1.5"], ["data", "val_fraction=1.5"]
    ),
    case(
        "val+test_fraction-over-1",
        "synthetic",
        ["--data.init_args.val_fraction=0.6", "--data.init_args.test_fraction=0.5"],
        ["data", "test_fraction=0.5", "val_fraction=0.6"],
    ),
    case("eval_batch_size-0", "grid", ["--data.init_args.eval_batch_size=0"], ["eval_batch_size=0"]),
    case("max_steps-negative", "synthetic", ["--trainer.max_steps=-5"], ["max_steps", "-5"]),
    case(
        "masking-vocab_size-0",
        "quickstart",
        ["--model.init_args.teacher.init_args.process.init_args.vocab_size=0"],
        ["model.init_args.teacher.init_args.process", "vocab_size=0"],
    ),
    case(
        "ClassDropout-p-2", "grid", ["--model.init_args.loss.init_args.p=2"], ["model.init_args.loss", "p=2"]
    ),
    case(
        "ConfidenceUnmasking-r_temp-negative",
        "grid",
        [
            "--model.init_args.model.init_args.step_rule=mixdistill.sampling.confidence.ConfidenceUnmasking",
            "--model.init_args.model.init_args.step_rule.init_args.r_temp=-1",
        ],
        ["step_rule", "r_temp=-1"],
    ),
    case(
        "guidance-weight-negative",
        "grid",
        [
            "--model.init_args.model.init_args.guidance=mixdistill.sampling.guidance.ClassifierFreeGuidance",
            "--model.init_args.model.init_args.guidance.init_args.weight=-1",
        ],
        ["guidance", "weight=-1"],
    ),
    case(
        "lr-negative",
        "synthetic",
        ["--model.init_args.optimizer.init_args.lr=-1"],
        ["model.init_args.optimizer", "lr=-1", "Invalid learning rate"],
    ),
    # --- files: missing, of the wrong kind, truncated, inconsistent with the config -----------------
    case("table-missing", "synthetic", ["--data.init_args.table={tmp}/nope.npy"], ["table=", "nope.npy"]),
    case(
        "table-text-file",
        "synthetic",
        ["--data.init_args.table={tmp}/table.txt"],
        # jsonargparse reads a path to another existing file as its contents: the name is lost.
        ["model.init_args.teacher", "table must be a path to a .npy/.pt file", "contents of a file"],
    ),
    case(
        "teacher-asset-missing",
        "quickstart",
        ["--model.init_args.teacher.init_args.checkpoint=asset:nope.safetensors"],
        ["model.init_args.teacher", "checkpoint=", "nope.safetensors"],
    ),
    case(
        "teacher-safetensors-truncated",
        "quickstart",
        ["--model.init_args.teacher.init_args.checkpoint={tmp}/cut.safetensors"],
        ["model.init_args.teacher", "cut.safetensors", "truncated"],
    ),
    case(
        "teacher-net-vocab-mismatch",
        "quickstart",
        ["--model.init_args.teacher.init_args.net.init_args.vocab_size=16"],
        ["model.init_args.teacher", "digits_teacher.safetensors", "vocab_size", "file vs net"],
    ),
    case("grid-path-missing", "grid", ["--data.init_args.path={tmp}/nope.npz"], ["path=", "nope.npz"]),
    case("grid-key-missing", "grid", ["--data.init_args.path={tmp}/no_key.npz"], ["no_key.npz", "'tokens'"]),
    case(
        "grid-ids-over-vocab",
        "grid",
        ["--data.init_args.path={tmp}/big_ids.npz"],
        ["big_ids.npz", "[300, 300]", "vocab_size=256"],
    ),
    case(
        "grid-labels-over-classes",
        "grid",
        ["--data.init_args.path={tmp}/big_labels.npz"],
        ["big_labels.npz", "[12, 12]", "num_classes=10"],
    ),
    case(
        "image_decoder-tokenizer-missing",
        "grid",
        [
            "--data.init_args.image_decoder=mixdistill.metrics.decoded.TokenImageDecoder",
            "--data.init_args.image_decoder.init_args.tokenizer={tmp}/nope.safetensors",
        ],
        ["data.init_args.image_decoder", "nope.safetensors"],
    ),
    case(
        "text-file-empty",
        "text",
        ["--data.init_args.files=[{tmp}/empty.txt]"],
        ["files", "empty.txt", "empty (0 bytes)"],
    ),
    case("ckpt_path-missing", "synthetic", ["--ckpt_path={tmp}/nope.ckpt"], ["nope.ckpt"]),
    case(
        "ckpt_path-missing-test", "synthetic", ["--ckpt_path={tmp}/nope.ckpt"], ["nope.ckpt"], command="test"
    ),
    case("ckpt_path-directory", "synthetic", ["--ckpt_path={tmp}"], ["{tmp}"]),
    case("config-file-missing", "synthetic", ["--config={tmp}/nope.yaml"], ['"config"', "nope.yaml"]),
    # --- parse errors: names, types, hardware ---------------------------------------------------------
    case(
        "teacher-class_path-unknown",
        "synthetic",
        ["--model.init_args.teacher.class_path=mixdistill.teachers.exact.NopeTeacher"],
        ['"teacher"', "NopeTeacher"],
    ),
    case("data-class-unknown", "synthetic", ["--data=mixdistill.data.NopeData"], ['"data"', "NopeData"]),
    case(
        "batch_size-not-an-int", "synthetic", ["--data.init_args.batch_size=many"], ['"batch_size"', "many"]
    ),
    case(
        "setting-not-of-this-class",
        "synthetic",
        ["--data.init_args.eval_batch_size=4"],
        ["eval_batch_size", "not accepted"],
    ),
    case("devices-0", "synthetic", ["--trainer.devices=0"], ["devices", "0"]),
    case(
        "accelerator-gpu-without-gpu",
        "synthetic",
        ["--trainer.accelerator=gpu"],
        ["trainer:", "trainer.accelerator='gpu'", "trainer.devices="],
    ),
]


@pytest.fixture
def steps_run(monkeypatch):
    """The training and test steps that ran (none may, for a bad input)."""
    ran: list[str] = []
    for cls in (DistillModule, TeacherModule):
        for hook in ("training_step", "test_step"):
            original = getattr(cls, hook, None)
            if original is None:
                continue

            def recorder(self, *args, _original=original, _hook=hook, **kwargs):
                ran.append(_hook)
                return _original(self, *args, **kwargs)

            monkeypatch.setattr(cls, hook, recorder)
    return ran


def failure_message(args: list[str], capsys) -> str:
    """What the CLI says on refusing ``args``: the exception, or a parse error's ``error:`` part."""
    with pytest.raises((Exception, SystemExit)) as err:
        run(args)
    if isinstance(err.value, SystemExit):
        assert err.value.code not in (0, None)
        stderr = capsys.readouterr().err
        assert "error:" in stderr, stderr[-2000:]
        return stderr[stderr.rindex("error:") :]
    return f"{type(err.value).__name__}: {err.value}"


def assert_one_screen(message: str) -> None:
    assert len(message.splitlines()) <= MAX_LINES and len(message) <= MAX_CHARS, message


@pytest.mark.skipif(
    not (ASSETS / "digits_teacher.safetensors").is_file(), reason="assets not built (make assets)"
)
@pytest.mark.parametrize(("command", "kind", "overrides", "names"), CASES)
def test_bad_input_fails_before_training_with_a_short_message_naming_it(
    tmp_path, capsys, steps_run, command, kind, overrides, names
):
    """Invariant: the bad input stops the CLI before any step, with a one-screen message naming the
    setting (or the file) and the value."""
    (tmp_path / "table.txt").write_text("0.5 0.5\n")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "cut.safetensors").write_bytes((ASSETS / "digits_teacher.safetensors").read_bytes()[:1000])
    root = tmp_path / "run"
    args = [command, *config(kind, root, tmp_path), *(o.format(tmp=tmp_path) for o in overrides)]
    message = failure_message(args, capsys)
    assert not steps_run, f"a {steps_run[0]} ran before the error: {message}"
    assert not list(root.rglob("*.ckpt"))
    for name in names:
        assert name.format(tmp=tmp_path) in message, f"{name!r} not in {message!r}"
    assert_one_screen(message)


def test_fp16_mixed_precision_on_the_cpu_trains_in_bf16(tmp_path):
    """Documented behaviour, not an error: Lightning turns --trainer.precision 16-mixed on the CPU into
    bf16-mixed (it logs "Using bfloat16 Automatic Mixed Precision") and the run trains."""
    cli = run(["fit", *tiny_synthetic(tmp_path, 2), "--trainer.precision=16-mixed"])
    assert cli.trainer.precision == "bf16-mixed" and cli.trainer.global_step == 2


def test_a_parse_error_fits_on_one_screen(tmp_path, capsys):
    """Invariant: a misspelt setting prints a one-line usage and its error naming the setting, not
    the usage of every Trainer option first."""
    with pytest.raises(SystemExit):
        run(["fit", *tiny_synthetic(tmp_path), "--model.init_args.latnet_dim=2"])
    err = capsys.readouterr().err
    assert_one_screen(err)
    assert err.startswith("usage: ") and "latnet_dim" in err and "error:" in err


def test_console_script_prints_a_data_error_without_a_traceback(tmp_path, monkeypatch):
    """Goal: `mixdistill fit` ends a bad-data error (raised in the Trainer's setup, 12 frames deep)
    with one `mixdistill: error:` line, as it does for a refused checkpoint."""
    grid_files(tmp_path)
    args = config("grid", tmp_path / "run", tmp_path) + [f"--data.init_args.path={tmp_path / 'big_ids.npz'}"]
    monkeypatch.setattr(sys, "argv", ["mixdistill", "fit", *args])
    with pytest.raises(SystemExit) as err:
        console_main()
    assert str(err.value.code).startswith("mixdistill: error: ") and "vocab_size=256" in str(err.value.code)
