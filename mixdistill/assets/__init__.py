"""Files shipped inside the package (weights, tokenizers); ``asset:NAME`` in a config refers to them."""

from __future__ import annotations

from pathlib import Path

#: The folder of the shipped files.
ASSETS = Path(__file__).resolve().parent


def resolve_asset(path: str | Path) -> Path:
    """``asset:NAME`` -> the shipped file ``mixdistill/assets/NAME``; other paths are returned as given."""
    text = str(path)
    return ASSETS / text.removeprefix("asset:") if text.startswith("asset:") else Path(text)
