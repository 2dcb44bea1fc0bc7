"""Reading MDLM / SDTT checkpoints as their authors publish them, without running their code.

Two layouts exist (kuleshov-group/mdlm, jdeschena/sdtt):

* a Hugging Face directory: ``model.safetensors`` (keys ``backbone.*``) and ``config.json`` (MDLM:
  flat fields ``hidden_dim``, ``cond_dim``, ``n_blocks``, ``n_heads``, ``model_length``,
  ``vocab_size``, ``time_conditioning``; SDTT: the training config, sizes under ``model``);
* a Lightning ``.ckpt``: ``state_dict`` (keys ``backbone.*``) and ``ema`` = ``{decay, num_updates,
  shadow_params}``, the EMA weights as a list in ``backbone.parameters()`` order.

A ``.ckpt`` also pickles the authors' hyper-parameters (an OmegaConf config, a ``transformers``
tokenizer), which ``torch.load(weights_only=True)`` refuses. ``inert_load`` reads it with torch's
own allow-list of tensor-rebuilding functions and turns every other class into an inert placeholder:
no foreign code is imported or run, and a placeholder where a tensor belongs is an error.
"""

from __future__ import annotations

import json
import pickle
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mixdistill.assets import resolve_asset
from mixdistill.safe_load import read_safetensors

#: Key prefixes of the backbone in the authors' state dicts: MDLM's and SDTT's ``backbone.``, and
#: ``backbone.backbone.`` for SDTT students of the Hugging Face MDLM (whose model wraps a backbone).
PREFIXES = ("backbone.backbone.", "backbone.")


class Foreign:
    """Stands in for an object of a class that is not allowed to load; it keeps nothing."""

    origin = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Foreign:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<not loaded: {self.origin}>"


class _InertUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed = _get_allowed_globals().get(f"{module}.{name}")
        if allowed is not None:
            return allowed
        return type(name, (Foreign,), {"origin": f"{module}.{name}"})


#: The ``pickle_module`` handed to ``torch.load``.
INERT_PICKLE = types.SimpleNamespace(__name__="mixdistill_inert_pickle", Unpickler=_InertUnpickler)


def inert_load(path: Path) -> Any:
    """``torch.load`` of a (zip-format) file where only allow-listed globals are real; see module doc."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=INERT_PICKLE)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, TypeError) as err:
        raise ValueError(f"checkpoint='{path}' cannot be read as a torch checkpoint: {err}") from err


@dataclass
class MDLMCheckpoint:
    """What a checkpoint holds for the DiT: weights without prefix, EMA weights, the config."""

    path: Path
    state: dict[str, Tensor]
    shadow: list[Tensor] | None = None
    config: dict[str, Any] = field(default_factory=dict)


def read_mdlm_checkpoint(checkpoint: str, use_ema: bool = True) -> MDLMCheckpoint:
    """Read a Hugging Face directory, a ``.safetensors`` file or a Lightning ``.ckpt``/``.pt``.

    Args:
        checkpoint: The path (``asset:NAME`` names a shipped file).
        use_ema: Return the EMA weights of a Lightning checkpoint too, when it has them.

    Raises:
        FileNotFoundError: ``checkpoint`` or the ``model.safetensors`` of a directory is missing.
        ValueError: The file holds something other than tensors where weights belong.
    """
    path = resolve_asset(checkpoint)
    if path.is_dir():
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"checkpoint='{path}' is a directory without model.safetensors.")
        config = path / "config.json"
        cfg = json.loads(config.read_text()) if config.is_file() else {}
        return MDLMCheckpoint(path, backbone_state(_safetensors(weights), weights), config=cfg)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint='{path}' does not exist.")
    if path.suffix == ".safetensors":
        return MDLMCheckpoint(path, backbone_state(_safetensors(path), path))
    obj = inert_load(path)
    if not isinstance(obj, dict):
        raise ValueError(f"checkpoint='{path}' holds a {type(obj).__name__}, not a dict of weights.")
    state = obj.get("state_dict", obj)
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint='{path}': 'state_dict' is a {type(state).__name__}, not a dict.")
    shadow = ema_shadow(obj.get("ema"), path) if use_ema else None
    return MDLMCheckpoint(path, backbone_state(state, path), shadow)


def _safetensors(path: Path) -> dict[str, Tensor]:
    return read_safetensors(path)


def backbone_state(state: dict[str, Any], path: Path) -> dict[str, Tensor]:
    """The DiT's entries of ``state``, prefix removed; keys outside the backbone are not the network's.

    ``torch.compile``'s ``_orig_mod.`` is dropped. A state dict without any ``backbone.`` key is taken
    to be a bare DiT state dict.
    """
    state = {str(k).replace("_orig_mod.", ""): v for k, v in state.items()}
    prefix = next((p for p in PREFIXES if any(k.startswith(p) for k in state)), "")
    out = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    bad = sorted(k for k, v in out.items() if not isinstance(v, Tensor))
    if bad:
        kinds = sorted({repr(out[k]) if isinstance(out[k], Foreign) else type(out[k]).__name__ for k in bad})
        raise ValueError(f"checkpoint='{path}': entries {bad[:5]} are not tensors ({kinds[:3]}).")
    return out


def ema_shadow(ema: Any, path: Path) -> list[Tensor] | None:
    """The EMA weights of a Lightning checkpoint (``ema['shadow_params']``), or None without EMA."""
    if ema is None:
        return None
    shadow = ema.get("shadow_params") if isinstance(ema, dict) else None
    if not isinstance(shadow, list | tuple) or not all(isinstance(p, Tensor) for p in shadow):
        raise ValueError(
            f"checkpoint='{path}': 'ema' must be a dict whose 'shadow_params' is a list of tensors; "
            f"got {type(ema).__name__}. Pass use_ema=False to load the raw weights only."
        )
    return list(shadow)
