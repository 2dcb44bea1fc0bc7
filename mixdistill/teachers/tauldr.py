"""tau-LDR's CIFAR-10 teacher (andrew-cr/tauLDR): its U-Net, process, sampler and checkpoint.

The published ``ckpt_0001999999.pt`` is ``{"model": state, "optimizer": ..., "n_iter": ...}``; ``state``
holds the network under ``net.module.*`` (trained with DDP) plus tau-LDR's EMA entries
``ema_decay``, ``ema_num_updates`` and ``ema_shadow_params``: a list of the averaged parameters in
``parameters()`` order, which tau-LDR copies into the network for evaluation.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import Tensor

from mixdistill.assets import resolve_asset
from mixdistill.nets.tauldr_unet import TauLDRUNet
from mixdistill.nets.truncated_logistic import truncated_logistic_logits
from mixdistill.processes.gaussian import GaussianRateProcess
from mixdistill.safe_load import named_global
from mixdistill.sampling.step_rule import StepRule
from mixdistill.sampling.tau_leaping import TauLeapingStep
from mixdistill.teachers.base import Teacher

#: Entries of tau-LDR's model state that are its EMA, not network weights.
EMA_KEYS = ("ema_decay", "ema_num_updates", "ema_shadow_params")


def read_tauldr_checkpoint(path: str | Path) -> dict:
    """The model state of a tau-LDR checkpoint, read without executing code (``weights_only``).

    Accepts the training checkpoint ``{"model": state, ...}`` or a bare ``state``. DDP's ``module.``
    is removed from every key (``net.module.x`` -> ``net.x``).
    """
    file = resolve_asset(path)
    if not file.is_file():
        raise FileNotFoundError(f"TauLDRTeacher: checkpoint='{file}' does not exist.")
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        detail = (
            named_global(err) if isinstance(err, pickle.UnpicklingError) else f": {str(err).split('. ')[0]}"
        )
        raise ValueError(
            f"TauLDRTeacher: checkpoint='{file}' is not a tensor-only torch file (it cannot be read with "
            f"weights_only=True, which never runs code){detail}"
        ) from None
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise ValueError(
            f"TauLDRTeacher: checkpoint='{file}' holds {type(obj).__name__}; expected tau-LDR's "
            "{'model': state_dict, 'optimizer': ..., 'n_iter': ...}."
        )
    return {k.removeprefix("module.").replace(".module.", "."): v for k, v in state.items()}


def ema_weights(state: dict, names: list[str], file: str) -> dict[str, Tensor]:
    """``ema_shadow_params`` of ``state`` named by ``names`` (the network's parameter order)."""
    shadow = state.get("ema_shadow_params")
    if not isinstance(shadow, (list, tuple)) or not all(isinstance(p, Tensor) for p in shadow):
        raise ValueError(
            f"TauLDRTeacher: checkpoint='{file}' has no list of tensors 'ema_shadow_params' "
            f"(entries: {sorted(k for k in state if not isinstance(state[k], Tensor))}); "
            "set use_ema: false to load the raw weights."
        )
    if len(shadow) != len(names):
        raise ValueError(
            f"TauLDRTeacher: checkpoint='{file}' has {len(shadow)} EMA parameters but the U-Net has "
            f"{len(names)}; the network sizes differ from the checkpoint's."
        )
    return dict(zip(names, shadow, strict=True))


def _wrong_sizes(tensors: dict[str, Tensor], own: dict[str, Tensor], tag: str) -> list[str]:
    """``"key: (checkpoint shape) vs (model shape)"`` for each entry whose size differs."""
    return [
        f"{k}{tag}: {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in tensors.items()
        if v.shape != own[k].shape
    ]


class TauLDRTeacher(Teacher):
    """tau-LDR: the Gaussian-target CTMC over ``S`` pixel values, denoised by its U-Net through a
    truncated-logistic output over the ``S`` bins.

    Args:
        process: The forward process; tau-LDR's CIFAR-10 one (S 256, rate_sigma 6, Q_sigma 512,
            F(t) = 3 (100^t - 1)) by default.
        shape: ``(C, H, W)``, or ``(H, W)`` for one channel.
        net: The U-Net; tau-LDR's CIFAR-10 sizes by default. Its ``in_channels`` must be ``C``.
        checkpoint: tau-LDR's ``ckpt_*.pt`` (``asset:NAME`` for a shipped file).
        use_ema: Load ``ema_shadow_params`` (the weights tau-LDR evaluates with) instead of the raw
            weights. A student copied from this teacher starts from the same weights.
        strict: Fail on missing or unexpected keys (wrong sizes always fail).
        fix_logistic: Use the tail-accurate bin probabilities (tau-LDR's CIFAR-10 model: False).
        step_rule: The sampler's step; tau-leaping by default (``MinTimeAncestralStep`` for the
            Di4C paper's few-step product sampler).
    """

    def __init__(
        self,
        process: GaussianRateProcess | None = None,
        shape: tuple[int, ...] = (3, 32, 32),
        net: TauLDRUNet | None = None,
        checkpoint: str | None = None,
        use_ema: bool = True,
        strict: bool = True,
        fix_logistic: bool = False,
        step_rule: StepRule | None = None,
    ) -> None:
        process = process if process is not None else GaussianRateProcess()
        super().__init__(process, tuple(shape), 0, step_rule if step_rule is not None else TauLeapingStep())
        if len(self.shape) not in (2, 3):
            raise ValueError(f"TauLDRTeacher: shape={shape} must be (C, H, W) or (H, W).")
        self.image_shape = self.shape if len(self.shape) == 3 else (1, *self.shape)
        self.net = net if net is not None else TauLDRUNet(data_max=process.vocab_size - 1)
        if self.net.in_channels != self.image_shape[0] or self.net.data_max != process.vocab_size - 1:
            raise ValueError(
                f"TauLDRTeacher: net has in_channels={self.net.in_channels}, data_max={self.net.data_max} "
                f"but shape={shape} and S={process.vocab_size} need {self.image_shape[0]} and "
                f"{process.vocab_size - 1}."
            )
        self.fix_logistic = fix_logistic
        self.latent_layer = None  # lambda enters through injection.resblock.ResBlockInjection("net")
        if checkpoint is not None:
            self.load_checkpoint(checkpoint, use_ema, strict)

    def load_checkpoint(self, checkpoint: str | Path, use_ema: bool = True, strict: bool = True) -> None:
        """Load tau-LDR weights (see ``read_tauldr_checkpoint``); raises ``ValueError`` naming the
        file and the keys on any mismatch (missing and unexpected keys only when ``strict``).
        """
        state, own = read_tauldr_checkpoint(checkpoint), self.state_dict()
        weights = {k: v for k, v in state.items() if k not in EMA_KEYS}
        bad = sorted(k for k, v in weights.items() if not isinstance(v, Tensor))
        missing, unexpected = sorted(own.keys() - weights.keys()), sorted(weights.keys() - own.keys())
        if bad or (strict and (missing or unexpected)):
            raise ValueError(
                f"TauLDRTeacher: checkpoint='{checkpoint}' does not match the U-Net: missing {missing[:8]}, "
                f"unexpected {unexpected[:8]}, non-tensor {bad[:8]} (of {len(missing)}, {len(unexpected)}, "
                f"{len(bad)})."
            )
        names = [f"net.{n}" for n, _ in self.net.named_parameters()]
        ema = ema_weights(state, names, str(checkpoint)) if use_ema else {}
        found = {k: v for k, v in weights.items() if k in own}
        wrong = _wrong_sizes(found, own, "") + _wrong_sizes(ema, own, " (EMA)")
        if wrong:
            raise ValueError(f"TauLDRTeacher: checkpoint='{checkpoint}' has wrong sizes: {wrong[:8]}.")
        self.load_state_dict({**found, **ema}, strict=False)

    def network_logits(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        B, S = x_t.shape[0], self.vocab_size
        out = self.net(x_t.view(B, *self.image_shape), t)  # (B, 2C, H, W)
        return truncated_logistic_logits(out, S, self.fix_logistic).reshape(B, -1, S)  # (B, D, S)
