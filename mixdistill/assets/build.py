"""Rebuild the weights shipped in ``mixdistill/assets`` (``make assets``).

* ``digits_teacher.safetensors``: the quickstart teacher, trained with the ``mixdistill`` CLI from
  ``configs/teacher_digits.yaml`` (the checkpoint with the best held-out loss), network weights only.
* ``digits_classifier.safetensors``: the classifier whose features give the ``FD-digits`` metric,
  trained on the train split of the quickstart's ``DigitsData`` split.

The same hardware and library versions reproduce the files bit for bit.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from mixdistill.cli import run as cli_run
from mixdistill.data import DigitsData
from mixdistill.metrics.classifier import train_classifier

ASSET_DIR = Path(__file__).resolve().parent


def export(checkpoint: str | Path, prefix: str, out: Path) -> Path:
    """Write the tensors under ``prefix`` of a Lightning checkpoint to ``out`` (prefix removed)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    tensors = {k[len(prefix) :]: v.contiguous() for k, v in state.items() if k.startswith(prefix)}
    if not tensors:
        raise ValueError(f"no keys with prefix '{prefix}' in {checkpoint}.")
    save_file(tensors, str(out))
    return out


def digits_teacher(out: Path) -> Path:
    """Train the quickstart teacher with the CLI and export its network."""
    cli = cli_run(["fit", "--config", "configs/teacher_digits.yaml"])
    callback = cli.trainer.checkpoint_callback
    return export(callback.best_model_path or callback.last_model_path, "model.net.", out)


def digits_classifier(out: Path) -> Path:
    """Train the FD-digits feature classifier on the quickstart's train split."""
    data = DigitsData(levels=17, batch_size=64, val_fraction=0.1, test_fraction=0.2)
    _, accuracy = train_classifier(data, path=str(out))
    print(f"digits classifier validation accuracy: {accuracy:.3f}")
    return out


ASSETS: dict[str, Callable[[Path], Path]] = {
    "digits_teacher.safetensors": digits_teacher,
    "digits_classifier.safetensors": digits_classifier,
}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(ASSETS), help=f"assets (default: {list(ASSETS)})")
    for name in parser.parse_args().names:
        print("wrote", ASSETS[name](ASSET_DIR / name))
