"""Generated token ids turned into text, for the metrics that score words."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor


def decoded_text(name: str, decode: Callable[[list[list[int]]], list[str]] | None, x: Tensor) -> list[str]:
    """The texts of samples ``x`` ``(B, L)`` through ``decode``; a clear error names metric ``name``
    when no decoder was given (``QualityEvaluation`` sets one from the data's tokenizer).
    """
    if decode is None:
        raise RuntimeError(
            f"{name}: decode is unset, so samples cannot be turned into text; give decode= "
            f"or evaluate through QualityEvaluation, which sets it."
        )
    return decode(x.tolist())
