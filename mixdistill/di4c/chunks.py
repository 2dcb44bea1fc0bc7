"""Tiling of ``(B, n, D, S)`` logits along the sequence axis, so working copies stay bounded."""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: Default size limit of one float32 working tile (2^26 elements, 256 MB): at MDLM's shape
#: (16 latents x 1024 tokens x 50258 states per example) the whole tensor is 3.3 GB per example.
TILE_ELEMENTS = 2**26


def sequence_tiles(logits: Tensor, max_elements: int | None) -> list[slice]:
    """Slices of the sequence axis (dim 2) of ``logits`` ``(B, n, D, S)``, each at most
    ``max_elements`` elements of the whole tensor (at least one position; ``None``: one tile).
    """
    B, n, D, S = logits.shape
    if max_elements is not None and max_elements < 1:
        raise ValueError(f"sequence_tiles: max_elements={max_elements} must be at least 1 (or None).")
    per_position = B * n * S
    width = D if max_elements is None else max(1, min(D, max_elements // max(per_position, 1)))
    return [slice(i * width, min(D, (i + 1) * width)) for i in range(math.ceil(D / width))]


def working_dtype(logits: Tensor) -> torch.dtype:
    """The dtype the losses compute in: float64 for float64 logits, else float32 (bf16 / fp16 in)."""
    return torch.float64 if logits.dtype == torch.float64 else torch.float32
