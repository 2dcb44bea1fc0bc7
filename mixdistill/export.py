"""Export a trained student as ``student.safetensors`` plus its resolved model config, and load it back.

``python -m mixdistill.export --config cfg.yaml [more overrides] --ckpt_path CKPT --out DIR`` writes

* ``DIR/student.safetensors``: the student's ``state_dict`` (no pickle: loading runs no code);
* ``DIR/config.yaml``: the ``model:`` section of the resolved config (``${...}`` interpolations and
  overrides applied), enough to rebuild the student's structure without the data or the trainer.

``load_student(DIR)`` rebuilds the model from ``config.yaml`` (the student is a copy of the teacher
with the lambda injection, so the teacher's own weights are read as the config says) and loads the
exported weights strictly: the result computes exactly the checkpoint's student.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from jsonargparse import ArgumentParser
from safetensors.torch import save_file

from mixdistill.cli import MixDistillCLI, run
from mixdistill.safe_load import read_safetensors, safe_torch_load
from mixdistill.student import MixtureStudent

WEIGHTS, CONFIG = "student.safetensors", "config.yaml"


class _ParseOnly(MixDistillCLI):
    """``mixdistill fit``'s parser (same configs, overrides and interpolation), building nothing."""

    def instantiate_classes(self) -> None:
        return None

    def _run_subcommand(self, subcommand: str) -> None:
        return None


def resolved_model_config(config_args: list[str]) -> dict[str, Any]:
    """The ``model`` section of the config that ``mixdistill fit <config_args>`` would use, resolved.

    Args:
        config_args: ``--config`` files and ``--key value`` overrides, as given to ``mixdistill fit``
            (the ``config.yaml`` a run saves beside its logs is one).
    """
    with warnings.catch_warnings():  # LightningCLI warns when sys.argv is set too (python -m ...)
        warnings.filterwarnings("ignore", message=".*args parameter is intended")
        cli = run(["fit", *config_args], cli_class=_ParseOnly)
    return yaml.safe_load(cli.parser.dump(cli.config, format="yaml", skip_unset=False))["fit"]["model"]


def build_model(model_config: dict[str, Any]) -> L.LightningModule:
    """Instantiate the LightningModule of a resolved ``model`` section (``class_path``/``init_args``)."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(L.LightningModule, "model", required=True, fail_untyped=False)
    init = parser.instantiate(parser.parse_object({"model": model_config}))
    return init.model


def student_state(ckpt_path: str | Path) -> dict[str, torch.Tensor]:
    """The student's entries of a mixdistill checkpoint (``student.`` removed), read without code."""
    state = safe_torch_load(ckpt_path)["state_dict"]
    found = {k.removeprefix("student."): v for k, v in state.items() if k.startswith("student.")}
    if not found:
        raise ValueError(
            f"'{ckpt_path}' holds no student weights (no 'student.*' keys): not a DistillModule run."
        )
    return found


def export_student(config_args: list[str], ckpt_path: str | Path, out: str | Path) -> Path:
    """Write ``out/student.safetensors`` and ``out/config.yaml`` for the student of ``ckpt_path``.

    Args:
        config_args: The run's ``--config`` files and overrides (e.g. its saved ``config.yaml``).
        ckpt_path: A checkpoint of that run (``last.ckpt``, ``best.ckpt``).
        out: The folder to write (created if missing).

    Returns:
        The folder. The weights are checked against the config's student (strict load) first.
    """
    model_config = resolved_model_config(config_args)
    student = build_model(model_config).student
    student.load_state_dict(student_state(ckpt_path), strict=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in student.state_dict().items()}
    save_file(tensors, str(out / WEIGHTS), metadata={"format": "pt", "source": str(ckpt_path)})
    (out / CONFIG).write_text(yaml.safe_dump({"model": model_config}, sort_keys=False))
    return out


def load_student(folder: str | Path) -> MixtureStudent:
    """The exported student of ``folder`` (written by :func:`export_student`), in eval mode."""
    folder = Path(folder)
    for name in (WEIGHTS, CONFIG):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{folder / name} does not exist: not a folder written by mixdistill.export."
            )
    model_config = yaml.safe_load((folder / CONFIG).read_text())["model"]
    student = build_model(model_config).student
    student.load_state_dict(read_safetensors(folder / WEIGHTS), strict=True)
    return student.eval()


def main(argv: list[str] | None = None) -> Path:
    """``python -m mixdistill.export --config cfg.yaml [--key value ...] --ckpt_path CKPT --out DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True, help="the run's checkpoint (last.ckpt, best.ckpt)")
    parser.add_argument("--out", required=True, help="folder for student.safetensors and config.yaml")
    args, config_args = parser.parse_known_args(argv)
    out = export_student(config_args, args.ckpt_path, args.out)
    print(f"wrote {out / WEIGHTS} and {out / CONFIG}")
    return out


if __name__ == "__main__":
    main()
