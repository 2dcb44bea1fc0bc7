"""Reproducible draws that leave the caller's random state untouched."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def seeded(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Draw reproducibly from ``seed`` inside the block and leave the global random state untouched
    afterwards (so evaluation or logging in the middle of training does not reset its randomness).
    """
    device = torch.device(device or "cpu")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
