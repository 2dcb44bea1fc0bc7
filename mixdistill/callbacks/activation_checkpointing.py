"""Activation checkpointing of the student's blocks: recompute their activations in backward."""

from __future__ import annotations

import types
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def _checkpointed_forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    # Bound with types.MethodType, so that deep copies of the student (EMA, promoted teachers)
    # rebind it to the copy instead of calling the original module.
    forward = type(self).forward.__get__(self)
    if self.training and torch.is_grad_enabled():
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


def checkpoint_modules(root: nn.Module, class_names: list[str]) -> int:
    """Make every submodule of ``root`` whose class is named in ``class_names`` recompute its
    activations during backward (``torch.utils.checkpoint``, non-reentrant, RNG state preserved so
    dropout draws the same masks) when it runs in training mode with gradients enabled; in eval
    mode or under ``no_grad`` it runs as before. Parameter names and ``state_dict`` are unchanged.

    Returns:
        The number of modules wrapped.

    Raises:
        ValueError: a name matches no submodule (the error lists the class names present).
    """
    present = {type(m).__name__ for m in root.modules()}
    missing = sorted(set(class_names) - present)
    if missing:
        raise ValueError(
            f"ActivationCheckpointing: modules={missing} match no submodule of the student; its module "
            f"classes are {sorted(present)}. Name the repeated blocks, e.g. DiTBlock or PreNorm."
        )
    wrapped = 0
    for module in root.modules():
        done = getattr(module.forward, "__func__", None) is _checkpointed_forward
        if type(module).__name__ in class_names and not done:
            module.forward = types.MethodType(_checkpointed_forward, module)
            wrapped += 1
    return wrapped


class ActivationCheckpointing(L.Callback):
    """Trade compute for memory: the student's blocks keep only their inputs during the forward
    pass and recompute the rest in backward (about one extra forward of those blocks per step).

    At MDLM-small's shape (1024 tokens, n = 16 latents) the saved activations of the DiT blocks are
    about 10 GB per example, most of one training step's memory (docs/benchmarks.md, "Memory at
    paper size"). The frozen teacher, which never needs gradients, is left alone.

    Args:
        modules: Class names of the blocks to checkpoint, e.g. ``[DiTBlock]`` (MDLM DiT),
            ``[PreNorm]`` (MaskGIT ViT), ``[RotaryBlock]`` (the text transformer).
    """

    def __init__(self, modules: list[str]) -> None:
        if not modules:
            raise ValueError("ActivationCheckpointing: modules=[] names no block; name one class or more.")
        self.modules = list(modules)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        checkpoint_modules(pl_module.student, self.modules)
