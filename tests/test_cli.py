"""The mixdistill CLI end to end: configs parse, tiny runs fit and test, resume, bf16, clear errors."""

import json
import math
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

import mixdistill.cli
from mixdistill.assets import ASSETS
from mixdistill.cli import run as main

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
# Every stand-alone config (configs/baselines/ holds overlays, tested merged in test_sdtt.py).
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml")) + sorted(CONFIG_DIR.glob("tiny/*.yaml"))
SYNTHETIC = str(CONFIG_DIR / "synthetic.yaml")
TEXT = str(CONFIG_DIR / "text.yaml")
QUICKSTART = str(CONFIG_DIR / "quickstart.yaml")


def tiny(root: Path, steps: int = 6) -> list[str]:
    """Overrides that shrink any config to a few CPU steps under ``root``."""
    return [
        f"--trainer.default_root_dir={root}",
        f"--trainer.max_steps={steps}",
        "--trainer.val_check_interval=3",
        "--trainer.limit_val_batches=2",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]


def tiny_synthetic(root: Path, steps: int = 6) -> list[str]:
    return ["--config", SYNTHETIC, *tiny(root, steps), "--data.init_args.num_samples=500"]


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(CONFIG_DIR)) for c in CONFIGS])
def test_every_shipped_config_parses(config, capsys):
    """Invariant: every YAML in configs/ is valid for its subcommand (parse + type-check, no run)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "class_path" in capsys.readouterr().out


def test_pixel_evaluator_overlay_merges_over_the_image_token_config(capsys):
    """Invariant: configs/eval/image_tokens_pixels.yaml merged over configs/image_tokens.yaml keeps the
    shipped metrics and adds FD-pixels of the decoded images, as its comment promises."""
    overlay = CONFIG_DIR / "eval" / "image_tokens_pixels.yaml"
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "test",
                "--config",
                str(CONFIG_DIR / "image_tokens.yaml"),
                "--config",
                str(overlay),
                "--print_config",
            ]
        )
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert [
        line.split(":")[1].strip() for line in out.splitlines() if line.strip().startswith("name: FD")
    ] == [
        "FD-fashion",
        "FD-pixels",
    ]
    assert "ClassAccuracy" in out


class StartRecorder(L.Callback):
    """Records the global step and student weights when training starts."""

    def on_train_start(self, trainer, pl_module):
        self.start_step = trainer.global_step
        self.start_state = {k: v.clone() for k, v in pl_module.student.state_dict().items()}


def quality(root: Path) -> dict:
    files = sorted(root.rglob("quality.json"))
    assert files, f"no quality.json under {root}"
    return json.loads(files[-1].read_text())


def test_synthetic_fit_then_test_writes_quality_table(tmp_path):
    """Invariant: fit leaves a student-only checkpoint and test writes quality.json with one row per
    (model, steps), exact TV in [0, 1], and the meta fields."""
    cli = main(["fit", *tiny_synthetic(tmp_path)])
    assert cli.trainer.global_step == 6
    ckpt = Path(
        cli.trainer.checkpoint_callback.last_model_path or cli.trainer.checkpoint_callback.best_model_path
    )
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert not any(k.startswith("teacher.") for k in state), "teacher weights must not be checkpointed"
    assert any(k.startswith("student.base.") for k in state)
    saved = Path(cli.trainer.log_dir) / "config.yaml"
    assert saved.is_file(), "the resolved config is saved beside the logs"
    with pytest.raises(SystemExit) as exit_info:  # and it is a valid config to re-run with
        main(["fit", "--config", str(saved), "--print_config"])
    assert exit_info.value.code in (0, None)
    main(["test", *tiny_synthetic(tmp_path), f"--ckpt_path={ckpt}"])
    q = quality(tmp_path)
    got = [(r["model"], r["steps"]) for r in q["rows"]]
    assert got == [("teacher", s) for s in (1, 2, 4, 8, 16)] + [("student", s) for s in (1, 2, 4)]
    assert all(0.0 <= r["TV"] <= 1.0 and r["KL"] >= 0.0 for r in q["rows"])
    assert q["meta"]["primary_metric"] == "TV" and q["meta"]["higher_is_better"] is False
    from PIL import Image

    plot = Image.open(next(tmp_path.rglob("quality.png")))  # the quality-against-steps plot
    assert plot.size == (640, 420) and len(set(plot.getdata())) > 3


def test_resume_from_last_checkpoint_continues_the_run(tmp_path):
    """Invariant: --ckpt_path last restarts from the saved last.ckpt: same global step, same student
    weights, and the run still ends at max_steps (not max_steps more, not a restart from 0)."""
    main(["fit", *tiny_synthetic(tmp_path, 4)])
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] > 0
    seen = StartRecorder()
    resumed = main(
        ["fit", *tiny_synthetic(tmp_path, 8), "--ckpt_path=last"], trainer_defaults={"callbacks": [seen]}
    )
    assert seen.start_step == last["global_step"]
    saved = {k.removeprefix("student."): v for k, v in last["state_dict"].items() if k.startswith("student.")}
    assert saved.keys() == seen.start_state.keys()
    assert all(torch.equal(seen.start_state[k], v) for k, v in saved.items())
    assert resumed.trainer.global_step == 8


def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    """Invariant: asking to resume from 'last' when there is none fails instead of silently restarting."""
    with pytest.raises(FileNotFoundError, match="last"):
        main(["fit", *tiny_synthetic(tmp_path, 2), "--ckpt_path=last"])


@pytest.mark.parametrize("command", ["test", "validate", "predict"])
def test_reporting_without_a_checkpoint_is_an_error(tmp_path, command):
    """Invariant: test/validate/predict without --ckpt_path, or with 'last' when there is none, fail
    before any sample is drawn (an untrained student's table would look real); nothing is written."""
    with pytest.raises(ValueError, match="--allow_untrained"):
        main([command, *tiny_synthetic(tmp_path, 2)])
    with pytest.raises(FileNotFoundError, match="no last.ckpt"):
        main([command, *tiny_synthetic(tmp_path, 2), "--ckpt_path=last"])
    assert not list(tmp_path.rglob("quality.json"))


def test_allow_untrained_evaluates_the_copied_student(tmp_path):
    """Invariant: --allow_untrained true is the explicit way to score the untrained student."""
    main(["test", *tiny_synthetic(tmp_path, 2), "--allow_untrained=true"])
    assert {r["model"] for r in quality(tmp_path)["rows"]} == {"teacher", "student"}


def test_bf16_mixed_precision_runs(tmp_path):
    """Invariant: --trainer.precision bf16-mixed trains with finite losses on the CPU."""
    cli = main(["fit", *tiny_synthetic(tmp_path, 3), "--trainer.precision=bf16-mixed"])
    loss = float(cli.trainer.callback_metrics["train/loss"])
    assert math.isfinite(loss)


def test_unknown_config_key_is_rejected_before_training(tmp_path, capsys):
    """Invariant: a misspelt setting stops the CLI with an error that names it."""
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *tiny_synthetic(tmp_path), "--model.init_args.latnet_dim=2"])
    assert exit_info.value.code not in (0, None)
    assert "latnet_dim" in capsys.readouterr().err


def test_console_script_prints_one_line_unless_the_traceback_is_asked_for(tmp_path, monkeypatch):
    """Invariant: `mixdistill` ends an error a configured class raised with one `mixdistill: error:`
    line (exit 1) and ends the process group; MIXDISTILL_TRACEBACK=1 lets the exception through; a
    parse error exits with 2, as argparse does."""
    ended: list[bool] = []
    monkeypatch.setattr(mixdistill.cli, "end_process_group", lambda: ended.append(True))
    bad = ["fit", *tiny_synthetic(tmp_path), "--model.init_args.objective.init_args.latents=0"]
    monkeypatch.setattr(sys, "argv", ["mixdistill", *bad])
    with pytest.raises(SystemExit) as err:
        mixdistill.cli.main()
    assert str(err.value.code).startswith("mixdistill: error: model.init_args.objective: ")
    assert "\n" not in str(err.value.code) and ended == [True]
    monkeypatch.setenv("MIXDISTILL_TRACEBACK", "1")
    with pytest.raises(ValueError, match="latents=0"):
        mixdistill.cli.main()
    misspelt = ["fit", *tiny_synthetic(tmp_path), "--model.init_args.latnet_dim=2"]
    monkeypatch.setattr(sys, "argv", ["mixdistill", *misspelt])
    with pytest.raises(SystemExit) as err:
        mixdistill.cli.main()
    assert err.value.code == 2 and len(ended) == 3


def test_teacher_and_data_vocabulary_mismatch_is_an_error(tmp_path):
    """Invariant: a teacher/data vocabulary mismatch fails before any step, naming vocab_size.

    (The data's table sizes the teacher and the student; a mismatch needs a teacher table of its own.)
    """
    from mixdistill.tables import PrototypeTable

    other = PrototypeTable(vocab_size=4, num_dims=4).save(str(tmp_path / "other.npy"))
    args = tiny_synthetic(tmp_path) + [f"--model.init_args.teacher.init_args.table={other}"]
    with pytest.raises(ValueError, match="vocab_size"):
        main(["fit", *args])


@pytest.mark.skipif(
    not (ASSETS / "digits_teacher.safetensors").is_file(), reason="asset not built (make assets)"
)
def test_quickstart_runs_a_few_steps_and_evaluates(tmp_path):
    """Invariant: the quickstart config trains from the shipped teacher and its test prints the
    teacher and student rows with the FD-pixels metric and timings."""
    small_eval = [
        "--model.init_args.evaluation.init_args.num_samples=64",
        "--model.init_args.evaluation.init_args.batch_size=64",
        f"--model.init_args.evaluation.init_args.reference_cache.init_args.directory={tmp_path / 'ref'}",
    ]
    args = ["--config", QUICKSTART, *tiny(tmp_path, 3), *small_eval]
    main(["fit", *args])
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file(), "the best-FD checkpoint is kept"
    main(["test", *args, f"--ckpt_path={tmp_path / 'checkpoints' / 'best.ckpt'}"])
    first = quality(tmp_path)
    rows = first["rows"]
    assert [r["model"] for r in rows] == ["teacher"] * 4 + ["student"] * 2
    assert all(r["FD-pixels"] >= 0 and r["FD-digits"] >= 0 and r["samples_per_sec"] > 0 for r in rows)
    assert first["meta"]["primary_metric"] == "FD-pixels" and first["meta"]["higher_is_better"] is False
    lat = first["meta"]["latency"]
    assert lat["teacher_step_ms"] > 0 and lat["student_step_ms"] > 0
    # Evaluation is deterministic: the same seed gives the same table (timings aside).
    for f in tmp_path.rglob("quality.json"):
        f.unlink()
    main(["test", *args, f"--ckpt_path={tmp_path / 'checkpoints' / 'best.ckpt'}"])
    timing = {"sec_per_sample", "samples_per_sec"}
    strip = [{k: v for k, v in r.items() if k not in timing} for r in rows]
    assert [{k: v for k, v in r.items() if k not in timing} for r in quality(tmp_path)["rows"]] == strip


def small_play(path: Path, speeches: int = 200) -> Path:
    """A made-up play of ``speeches`` short speeches (one paragraph each), deterministic."""
    rng = np.random.default_rng(0)
    words = "my lord the king doth love thee not and yet I swear by heaven that she is fair".split()
    body = ["\n".join(["HAMLET.", " ".join(rng.choice(words, size=9))]) for _ in range(speeches)]
    path.write_text("\n\n".join(body) + "\n")
    return path


@pytest.mark.skipif(
    not (ASSETS / "shakespeare_teacher.safetensors").is_file(), reason="asset not built (make assets)"
)
def test_text_example_runs_a_few_steps_and_reports_perplexity_and_entropy(tmp_path):
    """Invariant: configs/text.yaml distils the shipped Shakespeare teacher on a text file and its test
    reports generative perplexity (> 1, finite), per-sample entropy (in (0, ln 64]), word-bigram
    perplexity (> 1, finite) and the non-word rate (in [0, 1]) for every row."""
    overrides = [
        f"--data.init_args.files=[{small_play(tmp_path / 'play.txt')}]",
        f"--data.init_args.cache_dir={tmp_path / 'cache'}",
        "--data.init_args.val_fraction=0.2",
        "--data.init_args.test_fraction=0.2",
        "--model.init_args.evaluation.init_args.num_samples=8",
        "--model.init_args.evaluation.init_args.batch_size=8",
        "--model.init_args.evaluation.init_args.latency_batch=8",
    ]
    args = ["--config", TEXT, *tiny(tmp_path, 2), *overrides]
    main(["fit", *args])
    main(["test", *args, f"--ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}"])
    result = quality(tmp_path)
    assert [(r["model"], r["steps"]) for r in result["rows"]] == [
        ("teacher", 2),
        ("teacher", 4),
        ("teacher", 8),
        ("teacher", 16),
        ("student", 2),
        ("student", 4),
    ]
    for r in result["rows"]:
        assert 1.0 < r["gen_ppl"] < float("inf") and 0.0 < r["entropy"] <= math.log(64) + 1e-6
        assert 1.0 < r["word_ppl"] < float("inf") and 0.0 <= r["nonword_rate"] <= 1.0
    meta = result["meta"]
    assert meta["primary_metric"] == "gen_ppl" and meta["higher_is_better"] is False
    names = [e["evaluator"] for e in meta["evaluators"]]
    assert names[0] == "shakespeare-causal-lm" and names[1].startswith("word-bigram")
    assert names[2] == "nonword-rate"


def test_predict_writes_samples(tmp_path):
    """Invariant: mixdistill predict writes num_samples samples of the data's shape as .pt and .npy,
    all ids inside the vocabulary, with the same content in both files."""
    cli = main(["fit", *tiny_synthetic(tmp_path, 2)])
    ckpt = cli.trainer.checkpoint_callback.last_model_path
    gen = [
        "--model.init_args.generation=mixdistill.generation.Generation",
        "--model.init_args.generation.init_args.num_samples=10",
        "--model.init_args.generation.init_args.batch_size=4",
        "--model.init_args.generation.init_args.steps=2",
        f"--model.init_args.generation.init_args.output_dir={tmp_path / 'gen'}",
    ]
    main(["predict", *tiny_synthetic(tmp_path, 2), *gen, f"--ckpt_path={ckpt}"])
    x = torch.load(tmp_path / "gen" / "student_2steps" / "samples.pt")
    assert x.shape == (10, 4) and int(x.min()) >= 0 and int(x.max()) < 3
    assert (x.numpy() == np.load(tmp_path / "gen" / "student_2steps" / "samples.npy")).all()


def test_sequence_longer_than_the_teachers_is_an_error():
    """Invariant: data whose sequence length differs from the teacher's fails with both values named."""
    from types import SimpleNamespace

    from mixdistill.module import check_data_matches
    from mixdistill.nets.mlp import MLPDenoiserNet
    from mixdistill.processes import MaskingProcess
    from mixdistill.teachers.network import NetworkTeacher

    teacher = NetworkTeacher(MaskingProcess(5), (64,), MLPDenoiserNet(64, 6, 5, 8, 1))
    data = SimpleNamespace(shape=(128,), vocab_size=5, num_classes=0)
    with pytest.raises(ValueError, match=r"shape=\(128,\).*shape=\(64,\)"):
        check_data_matches(teacher, data, "teacher")
    check_data_matches(teacher, SimpleNamespace(shape=(64,), vocab_size=5, num_classes=0), "teacher")
