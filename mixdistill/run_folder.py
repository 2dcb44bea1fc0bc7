"""One run per folder: ``mixdistill fit`` refuses a checkpoint folder that another run has written.

Without this guard a second ``fit`` with the same ``default_root_dir`` mixes its checkpoints with the
first run's (Lightning writes ``last-v1.ckpt`` beside the old ``last.ckpt``, and ``--ckpt_path last``
then picks whichever is newer), so a week-long run's checkpoints can be lost to a typo.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

from mixdistill.checkpoint_io import is_remote


class RunFolderInUseError(FileExistsError):
    """``fit`` into a checkpoint folder that already holds checkpoints, without resuming."""


def existing_checkpoints(trainer: L.Trainer) -> dict[Path, list[str]]:
    """The ``*.ckpt`` files already in each local ``ModelCheckpoint`` folder of ``trainer``."""
    found: dict[Path, list[str]] = {}
    for cb in trainer.checkpoint_callbacks:
        if not isinstance(cb, ModelCheckpoint) or cb.dirpath is None or is_remote(cb.dirpath):
            continue
        folder = Path(cb.dirpath)
        names = sorted(p.name for p in folder.glob("*.ckpt")) if folder.is_dir() else []
        if names:
            found[folder] = names
    return found


def check_fresh_run_folder(trainer: L.Trainer) -> None:
    """Raise before training if ``trainer``'s checkpoint folders hold another run's checkpoints.

    Raises:
        RunFolderInUseError: Naming the folder, its checkpoints and the three ways on.
    """
    found = existing_checkpoints(trainer)
    if not found:
        return
    folder, names = next(iter(found.items()))
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    raise RunFolderInUseError(
        f"{folder} already holds checkpoints of another run ({shown}); a new fit would mix with them. "
        "Resume that run with --ckpt_path last, or choose another --trainer.default_root_dir, or pass "
        "--overwrite true to delete them and train there."
    )


def clear_checkpoints(trainer: L.Trainer) -> list[Path]:
    """``--overwrite true``: delete the ``*.ckpt`` files in ``trainer``'s checkpoint folders (global
    rank 0 only), so the new run's ``last.ckpt`` is not written as ``last-v1.ckpt`` beside the old one.

    Returns the deleted files (logs and other files are left alone).
    """
    if not trainer.is_global_zero:
        return []
    removed = [folder / name for folder, names in existing_checkpoints(trainer).items() for name in names]
    for path in removed:
        path.unlink(missing_ok=True)
    if removed:
        rank_zero_info(f"--overwrite true: removed {len(removed)} old checkpoint(s) from {removed[0].parent}")
    return removed
