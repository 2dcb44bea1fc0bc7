"""One picture of a batch of samples: the grid that TensorBoard and ``samples.png`` show."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor
from torchvision.utils import make_grid


def sample_images(x: Tensor, datamodule: Any) -> Tensor | None:
    """Images ``(B, 1, H, W)`` in ``[0, 1]`` of samples ``x``, or ``None`` when they are not images.

    Token grids of a DataModule with an ``image_decoder`` (e.g. ``TokenGridData`` of VQ codes) are
    decoded by its ``to_images``; other 2-D samples ``(B, H, W)`` are grey levels scaled by
    ``1 / (vocab_size - 1)``.
    """
    if getattr(datamodule, "image_decoder", None) is not None:
        return datamodule.to_images(x)
    if x.dim() != 3:
        return None
    levels = max(getattr(datamodule, "vocab_size", int(x.max()) + 1) - 1, 1)
    return x.float().unsqueeze(1) / levels  # (B, 1, H, W)


def sample_grid(x: Tensor, datamodule: Any) -> Tensor | None:
    """A ``(C, H', W')`` grid (about square, white padding) of ``sample_images``, or ``None``."""
    images = sample_images(x, datamodule)
    if images is None:
        return None
    return make_grid(images.cpu(), nrow=math.ceil(math.sqrt(len(images))), pad_value=1.0)
