"""Strict loading of a checkpoint's weights into a network, with errors that name the file and what
to change, instead of torch's ``Error(s) in loading state_dict`` dump.
"""

from __future__ import annotations

from torch import Tensor, nn

#: How many keys (or shapes) an error lists.
SHOWN = 5


def listed(keys: list[str]) -> str:
    """The first :data:`SHOWN` of ``keys``, an ellipsis if there are more, and their number."""
    return f"{keys[:SHOWN]}{' ...' if len(keys) > SHOWN else ''} ({len(keys)})"


def load_matching_state(
    net: nn.Module,
    state: dict[str, Tensor],
    source: str,
    owner: str,
    hint: str,
    model: str | None = None,
    prefix: str | None = None,
) -> None:
    """Load ``state`` into ``net`` strictly, after checking its keys and then its shapes.

    Args:
        net: The network, built from the config.
        state: The checkpoint's weights (any key prefix already stripped).
        source: The checkpoint as configured, named in errors.
        owner: The class whose setting ``checkpoint`` is, e.g. ``"NetworkTeacher"``.
        hint: What to check when the shapes differ, e.g. ``"set sizes to the checkpoint's"``.
        model: How errors name ``net`` (its class name by default).
        prefix: The key prefix stripped from the file, named in errors about keys (None: no setting).

    Raises:
        ValueError: Keys are missing or unexpected, or tensors have other shapes than ``net``'s.
    """
    own = net.state_dict()
    model = model or type(net).__name__
    where = f"{owner}: checkpoint='{source}'" + (f" (prefix='{prefix}')" if prefix is not None else "")
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        fix = "set prefix to the file's key prefix, or " if prefix is not None else ""
        raise ValueError(
            f"{where} does not match {model}: missing {listed(missing)}, unexpected {listed(unexpected)}; "
            f"{fix}check that the file holds this network's weights."
        )
    shapes = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if v.shape != own[k].shape
    ]
    if shapes:
        raise ValueError(
            f"{owner}: checkpoint='{source}' has tensors of other shapes than {model}'s (file vs net): "
            f"{listed(shapes)}; {hint}."
        )
    net.load_state_dict(state, strict=True)
