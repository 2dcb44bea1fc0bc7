"""One run per folder, and one documented periodic checkpoint in the shipped configs."""

from pathlib import Path

import pytest
import torch
import yaml
from cli_args import tiny_synthetic

from mixdistill.cli import run as main
from mixdistill.run_folder import RunFolderInUseError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
CHECKPOINT = "lightning.pytorch.callbacks.ModelCheckpoint"


def step_of(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def test_second_fit_into_a_used_folder_fails_before_training(tmp_path):
    """Invariant: a new fit (no --ckpt_path) into a default_root_dir whose checkpoints/ holds checkpoints
    stops before any step, names the folder and the three ways on, and leaves the old files as they were."""
    main(["fit", *tiny_synthetic(tmp_path)])
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    with pytest.raises(RunFolderInUseError) as err:
        main(["fit", *tiny_synthetic(tmp_path, 4)])
    message = str(err.value)
    assert str(tmp_path / "checkpoints") in message and "last.ckpt" in message
    for way in ("--ckpt_path last", "--trainer.default_root_dir", "--overwrite true"):
        assert way in message
    assert last.read_bytes() == before
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]


def test_resuming_into_the_same_folder_is_allowed(tmp_path):
    """Invariant: --ckpt_path last continues the run in its own folder (no refusal)."""
    main(["fit", *tiny_synthetic(tmp_path)])
    cli = main(["fit", *tiny_synthetic(tmp_path, 4), "--ckpt_path=last"])
    assert cli.trainer.global_step == 4 and step_of(tmp_path / "checkpoints" / "last.ckpt") == 4


def test_overwrite_replaces_the_old_checkpoints(tmp_path):
    """Invariant: --overwrite true trains a new run there: the old checkpoints are deleted first, so the
    new run's last.ckpt is last.ckpt (not last-v1.ckpt beside a stale one)."""
    main(["fit", *tiny_synthetic(tmp_path, 3)])
    cli = main(["fit", *tiny_synthetic(tmp_path, 2), "--overwrite=true"])
    assert cli.trainer.global_step == 2
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]
    assert step_of(tmp_path / "checkpoints" / "last.ckpt") == 2


def test_an_empty_checkpoint_folder_is_not_in_use(tmp_path):
    """Invariant: only *.ckpt files mark a folder as used (an empty folder or other files do not)."""
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "notes.txt").write_text("x")
    cli = main(["fit", *tiny_synthetic(tmp_path)])
    assert cli.trainer.global_step == 2


@pytest.mark.parametrize("name", ["quickstart.yaml", "text.yaml", "synthetic.yaml"])
def test_shipped_configs_checkpoint_periodically_with_one_last_callback(name):
    """Invariant: each config has exactly one ModelCheckpoint with save_last (no last-v1.ckpt), it saves
    every N train steps, N divides max_steps (the final state is saved), and it is the last callback
    (so --trainer.callbacks.every_n_train_steps N changes its period)."""
    config = yaml.safe_load((CONFIG_DIR / name).read_text())
    callbacks = config["trainer"]["callbacks"]
    savers = [c for c in callbacks if c["class_path"] == CHECKPOINT and c["init_args"].get("save_last")]
    assert len(savers) == 1
    periodic = savers[0]["init_args"]
    assert periodic["every_n_train_steps"] > 0 and periodic["save_top_k"] == 0
    assert config["trainer"]["max_steps"] % periodic["every_n_train_steps"] == 0
    assert callbacks[-1] is savers[0]


def test_periodic_checkpoint_period_is_one_override(tmp_path):
    """Invariant: --trainer.callbacks.every_n_train_steps 2 saves last.ckpt at steps 2, 4, ... (the
    documented way): a 5-step run's last.ckpt is from step 4, and there is exactly one last file."""
    cli = main(["fit", *tiny_synthetic(tmp_path, 5), "--trainer.callbacks.every_n_train_steps=2"])
    (callback,) = cli.trainer.checkpoint_callbacks
    assert callback._every_n_train_steps == 2
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]
    assert step_of(tmp_path / "checkpoints" / "last.ckpt") == 4
