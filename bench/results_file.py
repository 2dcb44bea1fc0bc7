"""The JSON file a long benchmark keeps its results in, so that a stopped run resumes where it was and
``--render`` redraws its docs section without refitting."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


class ResultsFile:
    """Results so far (``data``, empty when the file does not exist yet), written back by ``save``.

    Args:
        path: the JSON file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.data: dict = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def save(self) -> None:
        """Write ``data`` now, so that what has been measured survives a later failure."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2))


def add_results_args(parser: argparse.ArgumentParser, default_out: str | None) -> None:
    """``--out`` (the results JSON) and ``--render`` (only rewrite the docs section from it)."""
    where = default_out or "per draw"
    parser.add_argument("--out", default=default_out, help=f"results JSON (default {where})")
    parser.add_argument("--render", action="store_true", help="only rewrite the docs section from --out")


def per_draw_out(stem: str, draw: str) -> str:
    """``runs/STEM.json`` for the paper's independent lambdas, ``runs/STEM_DRAW.json`` for another draw,
    so that the fits of two draws never overwrite each other."""
    return f"runs/{stem}.json" if draw == "independent" else f"runs/{stem}_{draw}.json"
