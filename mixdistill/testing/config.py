"""Build only a config's teacher (and injection) through jsonargparse, optionally on the meta device.

``model.init_args.teacher`` (a ``DistillModule`` config) or ``model.init_args.model`` (a
``TeacherModule`` config) is instantiated with the same ``class_path``/``init_args`` machinery as
``mixdistill fit``, after the config files are merged and their ``${...}`` interpolations resolved
(as the CLI's ``omegaconf+`` mode does); the data, trainer and objective are never built.

On the meta device no weights are read: every init argument named ``checkpoint`` inside the
teacher's section is overridden to null (the convention of ``NetworkTeacher`` and the published
adapters: the weights file is the ``checkpoint`` argument).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ArgumentParser
from omegaconf import OmegaConf

from mixdistill.injection import LatentInjection
from mixdistill.teachers.base import Teacher


@dataclass
class TeacherSection:
    """The parts of a config ``check_teacher`` needs.

    Attributes:
        teacher: The teacher's ``class_path``/``init_args`` dict.
        injection: The injection's dict, or None (then the teacher's ``latent_layer`` is used).
        path: Dotted key of the teacher in the config.
        student_base: Whether the config trains a separate ``student_base`` (then the student is no
            copy of the teacher and its equality at init is not checked).
        overrides: Settings changed before building (``KEY=null`` for the meta device).
    """

    teacher: dict
    injection: dict | None
    path: str
    student_base: bool = False
    overrides: list[str] = field(default_factory=list)


def load_config(paths: list[str | Path]) -> dict:
    """Merge YAML files left to right and resolve their interpolations into a plain dict."""
    merged = OmegaConf.merge(*(OmegaConf.load(str(p)) for p in paths))
    return OmegaConf.to_container(merged, resolve=True)


def teacher_section(config: dict) -> TeacherSection:
    """The teacher (``model.init_args.teacher``, else ``.model``) and injection of a config."""
    args = (config.get("model") or {}).get("init_args") or {}
    for key in ("teacher", "model"):
        if isinstance(args.get(key), dict):
            base = args.get("student_base") is not None
            return TeacherSection(args[key], args.get("injection"), f"model.init_args.{key}", base)
    raise ValueError(
        "the config has neither model.init_args.teacher (DistillModule) nor model.init_args.model "
        f"(TeacherModule); found model.init_args keys {sorted(args)}."
    )


def drop_checkpoints(node: Any, path: str) -> list[str]:
    """Set every ``checkpoint`` key under ``node`` to None in place; returns the dotted keys changed."""
    changed: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "checkpoint" and value is not None:
                node[key] = None
                changed.append(f"{path}.{key}")
            else:
                changed += drop_checkpoints(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            changed += drop_checkpoints(value, f"{path}[{i}]")
    return changed


def build(
    section: TeacherSection, device: str | torch.device = "cpu"
) -> tuple[Teacher, LatentInjection | None]:
    """Instantiate the teacher and the injection (None if absent) under ``torch.device(device)``."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--teacher", type=Teacher)
    parser.add_argument("--injection", type=LatentInjection | None, default=None)
    cfg = parser.parse_object({"teacher": section.teacher, "injection": section.injection})
    instantiate = getattr(parser, "instantiate", parser.instantiate_classes)  # renamed in 4.49
    with torch.device(device):
        init = instantiate(cfg)
    return init.teacher, init.injection
