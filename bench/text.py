"""The text example as the README runs it: distil the shipped Shakespeare teacher, then gen-PPL against steps.

Runs `mixdistill fit` and `mixdistill test` on configs/text.yaml (no overrides but the output folder;
`make text-data` first), scores the real test windows with the same evaluator as a reference, and
writes the section "## Text: Shakespeare, generative perplexity against steps" of docs/benchmarks.md.

    python bench/text.py
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from report import quality_tables, run_example, step_ms

from mixdistill.evaluation.headline import headline_lines

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "text.yaml"


def data_row(cli) -> dict[str, float]:
    """The evaluation's sample metrics on the real test split, as a "data" reference row."""
    dm, evaluation = cli.datamodule, cli.model.evaluation
    dm.setup("test")
    x0 = torch.cat([b["x0"] for b in dm.test_dataloader()])[: evaluation.num_samples]
    evaluation.use_decoder(dm.decode)
    return evaluation.score(x0) | {"samples": int(x0.shape[0])}


def render(quality: dict, data: dict, seconds: float, steps: int) -> str:
    rows, meta = quality["rows"], quality["meta"]
    lat, ev = meta["latency"], meta["evaluators"][0]
    lines = [
        "## Text: Shakespeare, generative perplexity against steps",
        "",
        f"`python bench/text.py` ({os.cpu_count()} CPU cores, torch {torch.__version__}): "
        f"`mixdistill fit --config configs/text.yaml` took {seconds / 60:.1f} min for {steps} steps,",
        f"then `mixdistill test` drew {meta['num_samples']} samples of 64 tokens per row with the same "
        "seed. gen_ppl is the perplexity of",
        f"the decoded samples under the shipped evaluator LM (`{ev['evaluator']}`, trained on ten plays the "
        "teacher never saw; float64,",
        "fixed retokenisation); entropy is the mean entropy (nats) of each sample's own token histogram "
        "(at most ln 64 = 4.16).",
        "word_ppl and nonword_rate are evaluators nothing in mixdistill trained: per-word perplexity under a "
        "Kneser-Ney word-bigram model of the ten held-out plays' counts, and the share of the samples' words "
        "that those plays never use.",
        f"Reference, the real test windows ({data['samples']} of them) under the same evaluators: "
        f"gen_ppl {data['gen_ppl']:.2f}, entropy {data['entropy']:.3f}, word_ppl {data['word_ppl']:.1f}, "
        f"nonword_rate {data['nonword_rate']:.3f}.",
        "",
        *quality_tables(rows, ["gen_ppl", "entropy", "word_ppl", "nonword_rate"], lat),
        "",
        "The same headline under the word-bigram evaluator (equal word_ppl):",
        "",
        *headline_lines(rows, "word_ppl", False, step_ms(lat)),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    run_example(
        CONFIG,
        lambda q, cli, secs: render(q, data_row(cli), secs, cli.trainer.global_step),
        __doc__.splitlines()[0],
    )


if __name__ == "__main__":
    main()
