"""Quantisation of integer intensities to fewer grey levels."""

from __future__ import annotations

import numpy as np


def check_levels(levels: int, max_levels: int) -> None:
    """Raise unless ``2 <= levels <= max_levels`` (the source's number of distinct intensities)."""
    if not 2 <= levels <= max_levels:
        raise ValueError(f"levels={levels} must lie in [2, {max_levels}] (the data has {max_levels} values).")


def quantise(values: np.ndarray, max_value: int, levels: int) -> np.ndarray:
    """Map integers in ``[0, max_value]`` to ``[0, levels)`` by rounding ``v * (levels - 1) / max_value``.

    Halves round up, in exact integer arithmetic: ``floor(v * (levels - 1) / max_value + 1/2)``. With
    ``levels = max_value + 1`` the values are unchanged.

    Args:
        values: Integer intensities in ``[0, max_value]``.
        max_value: The largest intensity of the source (16 for sklearn digits, 255 for 8-bit images).
        levels: Number of output levels ``S``.

    Returns:
        int64 array of the same shape with values in ``[0, levels)``.
    """
    v = values.astype(np.int64)
    return (2 * v * (levels - 1) + max_value) // (2 * max_value)
