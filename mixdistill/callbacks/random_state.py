"""The global random streams of training, kept in checkpoints so that a resumed fit draws the same.

The objective's times, masks and lambdas come from the global torch generator (CUDA's on a GPU);
numpy's and Python's are kept too, for code that uses them. The states are saved as tensors and
plain numbers, so that checkpoints stay readable with ``weights_only=True``.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn


def capture_random_state() -> dict[str, Any]:
    """The states of the global torch (CPU and every initialised CUDA device), numpy and Python RNGs."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos)},
        "numpy_gauss": {"has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: dict[str, Any]) -> None:
    """Set the global RNGs to ``state`` (from :func:`capture_random_state`).

    Raises:
        ValueError: If ``state`` holds CUDA states for another number of devices than this process has.
    """
    torch.set_rng_state(state["torch"])
    numpy, gauss = state["numpy"], state["numpy_gauss"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["kind"], keys, numpy["pos"], gauss["has_gauss"], gauss["cached"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        if len(state["cuda"]) != torch.cuda.device_count():
            raise ValueError(
                f"the checkpoint holds random states of {len(state['cuda'])} CUDA devices but this process "
                f"sees {torch.cuda.device_count()}; resume on as many devices (CUDA_VISIBLE_DEVICES)."
            )
        torch.cuda.set_rng_state_all(state["cuda"])


class RandomStateCheckpoint(L.Callback):
    """Saves the training random streams in every checkpoint and restores them when ``fit`` resumes.

    The state is restored in ``on_train_start``: after the sanity validation and the first loader
    iterators, before the first resumed step. Validation during ``fit`` draws from a fork of the
    streams, so whether it runs between two steps (it does not run again at the resumed step) does
    not change what training draws. ``mixdistill fit`` adds this callback itself.

    Under DDP the checkpoint holds rank 0's state and every rank restores it: exact when the ranks
    draw the same (one ``seed_everything`` seed on all ranks, Lightning's default).
    """

    def __init__(self) -> None:
        self._to_restore: dict[str, Any] | None = None
        self._training_state: dict[str, Any] | None = None  # held while validation draws from a fork

    def state_dict(self) -> dict[str, Any]:
        """The training streams now (as they were before the validation that is running, if any)."""
        return self._training_state if self._training_state is not None else capture_random_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._to_restore is not None:
            restore_random_state(self._to_restore)
            self._to_restore = None
        elif trainer.ckpt_path is not None:
            rank_zero_warn(
                f"{trainer.ckpt_path} holds no random state (written before mixdistill saved it): the "
                "resumed run draws other times, masks and lambdas than the uninterrupted one would."
            )

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._training_state = capture_random_state()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._training_state is not None:
            restore_random_state(self._training_state)
            self._training_state = None
