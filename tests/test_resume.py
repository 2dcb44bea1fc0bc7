"""Exact resume: a fit SIGKILLed mid-epoch and resumed with --ckpt_path last continues the same run."""

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from cli_args import tiny_synthetic

from mixdistill.data.resumable import EpochSampler, ResumableLoader

TESTS = Path(__file__).resolve().parent
STEPS, EVERY, KILL = 32, 4, 18  # 12 batches per epoch: the checkpoint at 16 is mid-epoch 1


def overlay(root: Path, kill: int | None) -> Path:
    """A config over configs/synthetic.yaml: per-step CSV losses, validation between steps, every
    state that must survive (EMA, both schedules, a promoted teacher) and checkpoints every EVERY."""
    callbacks = [
        {"class_path": "mixdistill.callbacks.StudentEMA", "init_args": {"decay": 0.9}},
        {
            "class_path": "mixdistill.callbacks.LossWeightSchedule",
            "init_args": {"term": "consis", "start": 0.5, "end": 1.0, "steps": 20},
        },
        {
            "class_path": "mixdistill.callbacks.TeacherStepSchedule",
            "init_args": {"start": 0.05, "end": 0.2, "steps": 20},
        },
        {
            "class_path": "mixdistill.callbacks.MultiRoundDistillation",
            "init_args": {"every_n_steps": 10, "max_rounds": 1},
        },
    ]
    if kill is not None:
        callbacks.append({"class_path": "resume_kill.KillAtStep", "init_args": {"step": kill}})
    callbacks.append(
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"every_n_train_steps": EVERY, "save_top_k": 0, "save_last": True},
        }
    )
    config = {
        "trainer": {
            "log_every_n_steps": 1,
            "limit_val_batches": 1,
            "val_check_interval": 5,
            "logger": {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(root), "name": "csv"},
            },
            "callbacks": callbacks,
        }
    }
    path = root / "overlay.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fit(root: Path, kill: int | None = None, resume: bool = False) -> int:
    """Run ``mixdistill fit`` in a fresh single-threaded process; returns its exit status."""
    args = [
        *tiny_synthetic(root, STEPS),
        "--data.init_args.batch_size=16",
        "--config",
        str(overlay(root, kill)),
    ]
    args = [a for a in args if a != "--trainer.limit_val_batches=0"]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    cmd = [sys.executable, "-m", "mixdistill.cli", "fit", *args, *(["--ckpt_path", "last"] if resume else [])]
    proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=120)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"fit failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.returncode


def train_losses(root: Path) -> list[dict[int, float]]:
    """``step -> train/loss`` of each CSV log under ``root`` (a resumed run writes a new version)."""
    runs = []
    for path in sorted((root / "csv").glob("version_*/metrics.csv")):
        rows = csv.DictReader(path.open())
        runs.append({int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")})
    return runs


@pytest.mark.slow
def test_sigkilled_fit_resumes_the_same_run(tmp_path):
    """Invariant: killed at step KILL (last checkpoint at 16, mid-epoch, in round 1 with a promoted
    teacher), resumed with --ckpt_path last, the run logs bitwise the same train loss at every step
    after 16 as the uninterrupted run, and ends with bitwise the same weights, EMA and optimizer."""
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir(), broken.mkdir()
    assert fit(whole) == 0
    assert fit(broken, kill=KILL) == -signal.SIGKILL
    killed_at = torch.load(broken / "checkpoints/last.ckpt", weights_only=False)
    assert killed_at["global_step"] == 16
    assert fit(broken, resume=True) == 0
    [expected], (before, after) = train_losses(whole), train_losses(broken)
    assert sorted(after) == list(range(16, STEPS)), "the resumed run logs steps 16..31 (0-based)"
    assert {s: expected[s] for s in after} == after, "losses after the resume equal the uninterrupted run's"
    assert {s: expected[s] for s in before} == before, "and before it (the same seed, the same run)"
    a = torch.load(whole / "checkpoints/last.ckpt", weights_only=False)
    b = torch.load(broken / "checkpoints/last.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"] == STEPS
    assert a["mixdistill_round"] == b["mixdistill_round"] == 1
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    ema_a, ema_b = (c["callbacks"]["StudentEMA"]["shadow"] for c in (a, b))
    assert all(torch.equal(x, y) for x, y in zip(ema_a, ema_b, strict=True))
    moments_a, moments_b = (c["optimizer_states"][0]["state"].values() for c in (a, b))
    for p, q in zip(moments_a, moments_b, strict=True):
        assert torch.equal(p["exp_avg"], q["exp_avg"]) and torch.equal(p["exp_avg_sq"], q["exp_avg_sq"])


class Position:
    """A stand-in for the trainer's progress: ``(epoch, batches trained in it)``."""

    def __init__(self, epoch: int = 0, trained: int = 0) -> None:
        self.now = (epoch, trained)

    def __call__(self) -> tuple[int, int]:
        return self.now


def loader(seed: int, position: Position, batch_size: int = 4) -> ResumableLoader:
    data = torch.arange(22)
    return ResumableLoader(data, EpochSampler(data, seed), position, batch_size=batch_size)


def test_loader_order_depends_on_seed_and_epoch_only_and_resumes_after_the_trained_batches():
    """Invariant: epoch e's batches are a function of (seed, e) whatever the global RNG does; a loader
    given another loader's state at (epoch, k trained) yields exactly the batches after the k-th."""
    torch.manual_seed(1)
    first = loader(7, Position())
    first.sampler.set_epoch(2)
    epoch2 = [b.tolist() for b in first]
    torch.manual_seed(2)
    assert [b.tolist() for b in first] == epoch2, "the global RNG does not change the order"
    assert sorted(sum(epoch2, [])) == list(range(22)), "each example once per epoch"
    first.sampler.set_epoch(3)
    assert [b.tolist() for b in first] != epoch2, "another epoch, another order"
    assert [b.tolist() for b in loader(8, Position())] != [b.tolist() for b in loader(7, Position())]

    first.sampler.set_epoch(2)
    first.position.now = (2, 3)
    state = first.state_dict()
    assert state == {
        "epoch": 2,
        "batches_trained": 3,
        "seed": 7,
        "num_samples": 22,
        "batch_size": 4,
        "world_size": 1,
    }
    resumed = loader(7, Position())
    resumed.load_state_dict(state)
    assert [b.tolist() for b in resumed] == epoch2[3:], "skips exactly the 3 trained batches"
    assert [b.tolist() for b in resumed] == epoch2, "only once: the next iterator is the whole epoch"
