"""The quickstart as a new user runs it: distil the shipped digits teacher, then quality against steps.

Runs `mixdistill fit` and `mixdistill test` on configs/quickstart.yaml, exactly as the README says
(no overrides but the output folder), and writes the section "## Quickstart: digits, FD-pixels
against steps" of docs/benchmarks.md with the wall time of the fit.

    python bench/quickstart.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from report import fit_and_test, quality_tables, write_section

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"


def render(quality: dict, seconds: float, steps: int) -> str:
    rows, lat = quality["rows"], quality["meta"]["latency"]
    lines = [
        "## Quickstart: digits, FD-pixels against steps",
        "",
        f"`python bench/quickstart.py` ({os.cpu_count()} CPU cores, torch {torch.__version__}): "
        f"`mixdistill fit --config configs/quickstart.yaml` took {seconds / 60:.1f} min for {steps} steps,",
        "then `mixdistill test` on the kept checkpoint (best 4-step FD-pixels on the validation split)",
        "drew 2000 samples per row with the same seed. FD-pixels is the Frechet",
        "distance between Gaussian fits of the raw 64 pixel values (scaled to [0, 1]) of the samples and",
        "of the 20% test split; FD-digits the same on the 64 penultimate features of the shipped digits",
        "classifier (98% validation accuracy). Lower is better; neither is FID.",
        "",
        *quality_tables(rows, ["FD-pixels", "FD-digits"], lat),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        quality, cli, seconds = fit_and_test(CONFIG, root, [])
        text = render(quality, seconds, cli.trainer.global_step)
    write_section(text)
    print(text)


if __name__ == "__main__":
    main()
