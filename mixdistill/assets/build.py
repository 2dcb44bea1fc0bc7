"""Rebuild the weights shipped in ``mixdistill/assets`` (``make assets``).

Each asset is trained with the ``mixdistill`` CLI from a config in ``configs/`` and its network's
weights are exported to safetensors, so anyone can reproduce the shipped files bit-for-bit on the
same hardware and library versions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file

from mixdistill.cli import run as cli_run

ASSET_DIR = Path(__file__).resolve().parent

#: asset file -> (config, key prefix of the network inside the LightningModule's state dict)
ASSETS = {"digits_teacher.safetensors": ("configs/teacher_digits.yaml", "model.net.")}


def export(checkpoint: str | Path, prefix: str, out: Path) -> Path:
    """Write the tensors under ``prefix`` of a Lightning checkpoint to ``out`` (prefix removed)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    tensors = {k[len(prefix) :]: v.contiguous() for k, v in state.items() if k.startswith(prefix)}
    if not tensors:
        raise ValueError(f"no keys with prefix '{prefix}' in {checkpoint}.")
    save_file(tensors, str(out))
    return out


def build(name: str) -> Path:
    """Train the asset ``name`` from its config and export it."""
    config, prefix = ASSETS[name]
    cli = cli_run(["fit", "--config", config])
    callback = cli.trainer.checkpoint_callback
    ckpt = callback.best_model_path or callback.last_model_path
    return export(ckpt, prefix, ASSET_DIR / name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", default=list(ASSETS), help=f"assets (default: {list(ASSETS)})")
    for asset in parser.parse_args().names:
        print("wrote", build(asset))
