"""The quickstart as a new user runs it: distil the shipped digits teacher, then quality against steps.

Runs `mixdistill fit` and `mixdistill test` on configs/quickstart.yaml, exactly as the README says
(no overrides but the output folder), and writes the section "## Quickstart: digits, FD-pixels
against steps" of docs/benchmarks.md with the wall time of the fit.

    python bench/quickstart.py [--root runs/bench_quickstart]
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from report import quality_tables, run_example

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
    run_example(
        CONFIG, lambda q, cli, secs: render(q, secs, cli.trainer.global_step), __doc__.splitlines()[0]
    )


if __name__ == "__main__":
    main()
