"""Loading an evaluator network (feature classifier, evaluator LM) from its weights file, frozen."""

from __future__ import annotations

from torch import nn

from mixdistill.assets import resolve_asset
from mixdistill.teachers.network import load_state_dict


def load_frozen(net: nn.Module, checkpoint: str, owner: str, how_to_get: str) -> nn.Module:
    """``net`` with the weights of ``checkpoint`` (all keys, all shapes), in eval mode, without gradients.

    Args:
        net: The network, built with the settings it was trained with.
        checkpoint: ``.safetensors``, ``.pt``/``.ckpt`` or ``asset:NAME``.
        owner: The class named in errors, e.g. ``"ClassifierFeatures"``.
        how_to_get: What to do when the file is missing, appended to the error.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
        ValueError: Its keys or shapes do not match ``net``.
    """
    if not resolve_asset(checkpoint).is_file():
        raise FileNotFoundError(f"{owner}: checkpoint='{checkpoint}' does not exist; {how_to_get}")
    try:
        net.load_state_dict(load_state_dict(checkpoint), strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"{owner}: checkpoint='{checkpoint}' does not match {type(net).__name__}; build the network with "
            f"the settings it was trained with. ({err})"
        ) from err
    return net.eval().requires_grad_(False)
