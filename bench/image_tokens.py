"""The image-token example as a new user runs it: distil the shipped Fashion-MNIST MaskGIT-style
teacher, then quality against steps (guidance on, the same seed and sample count for every row).

Runs `mixdistill fit` and `mixdistill test` on configs/image_tokens.yaml (no overrides but the output
folder) and writes the section "## Image tokens: Fashion-MNIST, classifier FD against steps" of
docs/benchmarks.md. Needs `make image-data` first.

    python bench/image_tokens.py [--root runs/bench_image_tokens]
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from report import quality_tables, run_example

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "image_tokens.yaml"


def render(quality: dict, seconds: float, steps: int) -> str:
    rows, meta = quality["rows"], quality["meta"]
    lines = [
        "## Image tokens: Fashion-MNIST, classifier FD against steps",
        "",
        f"`python bench/image_tokens.py` ({os.cpu_count()} CPU cores, torch {torch.__version__}): "
        f"`mixdistill fit --config configs/image_tokens.yaml` took {seconds / 60:.1f} min for {steps} steps,",
        "then `mixdistill test` on the kept checkpoint (best 4-step FD-fashion on the validation split)",
        f"drew {meta['num_samples']} class-conditional samples per row with the same seed (labels drawn",
        "uniformly; confidence unmasking with Gumbel noise 4.5 annealed and guidance weight 1 ramped, for",
        "teacher and student alike). Samples are decoded by the shipped VQ tokenizer; FD-fashion is the",
        "Frechet distance of the 64 penultimate features of the shipped Fashion-MNIST classifier between",
        "the decoded samples and the decoded tokens of the held-out 5% test split; class-acc is how often",
        "that classifier assigns a sample to the class it was generated for. Not FID.",
        "",
        *quality_tables(rows, ["FD-fashion", "class-acc"], meta["latency"]),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    run_example(
        CONFIG, lambda q, cli, secs: render(q, secs, cli.trainer.global_step), __doc__.splitlines()[0]
    )


if __name__ == "__main__":
    main()
