"""Reading torch files without executing code: ``weights_only=True`` and one short message on refusal.

``torch.load(weights_only=True)`` rebuilds tensors and plain containers only; a pickle that names any
other class or function (``os.system`` in a malicious file, a pickled ``nn.Module`` in a careless one)
is refused. Torch's own text for the refusal invites the user to retry with ``weights_only=False``,
which would run the file's code; :func:`safe_torch_load` replaces it with what was found and why it was
refused, naming the file.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

#: What a refused file is told; mixdistill has no switch that unpickles arbitrary objects.
WHY = (
    "it contains objects other than tensors and plain containers, and mixdistill never executes code "
    "from checkpoints"
)


class UnsafeCheckpointError(ValueError):
    """A checkpoint that ``weights_only=True`` refuses: it pickles code or objects, not just tensors."""


def named_global(err: BaseException) -> str:
    """`` (it names os.system)``: what torch's refusal ``err`` found in the file, or ``""``."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    return f" (it names {found.group(1)})" if found else ""


def refusal(path: str | Path, err: BaseException) -> str:
    """The one-line message for ``path`` refused with ``err`` (torch's ``UnpicklingError``)."""
    return (
        f"refused to load '{path}'{named_global(err)}: {WHY}. Save the weights as a state_dict of "
        "tensors or as .safetensors."
    )


def safe_torch_load(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` whose errors name the file in one line.

    Args:
        path: A local torch file (``.pt``, ``.ckpt``, ...).
        map_location: Where tensors go (``torch.load``'s argument).

    Raises:
        UnsafeCheckpointError: The file pickles something other than tensors and plain containers.
        ValueError: The file is empty, truncated or not a torch file.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(refusal(path, err)) from None
    except (RuntimeError, EOFError, KeyError) as err:  # what torch raises on a truncated or foreign file
        first = str(err).split(". ")[0] or type(err).__name__
        raise ValueError(
            f"cannot read '{path}': not a complete torch file (truncated or corrupt?): {first}."
        ) from None


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, with errors that name the file in one line.

    Raises:
        ValueError: The file is truncated, corrupt or not a safetensors file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(
            f"cannot read '{path}': not a complete .safetensors file (truncated or corrupt?): {err}."
        ) from None
