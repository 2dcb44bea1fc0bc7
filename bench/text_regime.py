"""Where the text student stands against the teacher at more step counts, and how much it uses lambda.

Tests a kept ``configs/text.yaml`` checkpoint (``python bench/text.py --root runs/text`` or
``mixdistill fit --config configs/text.yaml``) with the teacher at 2..32 steps and the student at
2..16 under every evaluator of the config, and measures the student's lambda use (bench/lambda_use.py)
at several times on real test windows. Prints one JSON object and keeps it in ``--out``.

    python bench/text_regime.py --ckpt CKPT --draw DRAW [--samples 512]
    # the shipped config (StratifiedDraw), then a fit with the paper's iid lambdas, each its own section:
    python bench/text.py --root runs/text
    python bench/text_regime.py --ckpt runs/text/checkpoints/last.ckpt --draw stratified
    mixdistill fit --config configs/text.yaml --trainer.default_root_dir=runs/text_iid
        --model.init_args.objective.init_args.latent_draw=mixdistill.di4c.IndependentDraw
    python bench/text_regime.py --ckpt runs/text_iid/checkpoints/last.ckpt --draw independent
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path

import torch
from lambda_use import lambda_use
from report import LATENT_DRAWS, latent_draw_arg, write_section
from results_file import ResultsFile, add_results_args, per_draw_out

from mixdistill.cli import run

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "text.yaml"
TIMES = (1.0, 0.75, 0.5, 0.25, 0.125)
METRICS = ("gen_ppl", "word_ppl", "nonword_rate", "entropy")


def step_table(rows: list[dict]) -> list[str]:
    """``| steps | teacher / student of every metric |``, and the nats a doubling of steps buys."""
    by = {(r["model"], r["steps"]): r for r in rows}
    steps = sorted({r["steps"] for r in rows})
    head = " | ".join(f"teacher {m} | student {m}" for m in METRICS)
    lines = [f"| steps | {head} | nats per step bought by 2x steps |"]
    lines.append("|---:|" + "---:|" * (2 * len(METRICS) + 1))
    for n in steps:
        cells = []
        for m in METRICS:
            cells += [f"{by[(k, n)][m]:.4g}" if (k, n) in by else "-" for k in ("teacher", "student")]
        t, t2 = by.get(("teacher", n)), by.get(("teacher", 2 * n))
        gain = f"{64 * math.log(t['gen_ppl'] / t2['gen_ppl']) / n:.2f}" if t and t2 else "-"
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {gain} |")
    return lines


SECTIONS = {
    "independent": "## Text: the student against the teacher at 2 to 32 steps",
    "stratified": "## Text: the student fitted with stratified lambdas, at 2 to 32 steps",
}
FITS = {
    "independent": f"`configs/text.yaml` fitted with `{latent_draw_arg('independent')}` (the paper's iid "
    "lambdas; 1500 steps, seed 0, nothing else changed)",
    "stratified": "`configs/text.yaml` as shipped (StratifiedDraw lambdas; 1500 steps, seed 0: the fit of "
    "`bench/text.py`)",
}


def render(result: dict, samples: int, draw: str) -> str:
    use = result["lambda_use"]
    return (
        "\n".join(
            [
                SECTIONS[draw],
                "",
                f"`python bench/text_regime.py --ckpt {result['ckpt']} --draw {draw}` "
                f"({os.cpu_count()} CPU cores): {FITS[draw]} "
                "tested with the teacher at 2..32 and the student at 2..16 steps, "
                f"{samples} samples of 64 tokens per row, same "
                "seed. *nats per step bought by 2x steps*: 64 ln(teacher gen_ppl at N / at 2N) / N, the "
                "evaluator nats the teacher gains by doubling its steps, per step of an N-step sampler: what "
                "one student step must add through lambda to equal the teacher at 2N.",
                "",
                *step_table(result["rows"]),
                "",
                "Lambda use of the student (bench/lambda_use.py, mean KL of one lambda's component to the "
                "mixture marginal, nats per token; times 64 for a window) at time t on real test windows:",
                "",
                "| t | " + " | ".join(use) + " |",
                "|---|" + "---:|" * len(use),
                "| nats per token | " + " | ".join(f"{v:.4f}" for v in use.values()) + " |",
                "| nats per window | " + " | ".join(f"{64 * v:.3f}" for v in use.values()) + " |",
            ]
        )
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="checkpoint of a configs/text.yaml fit")
    parser.add_argument("--samples", type=int, default=512, help="samples per row")
    parser.add_argument("--teacher-steps", default="[2,4,8,16,32]")
    parser.add_argument("--student-steps", default="[2,4,8,16]")
    parser.add_argument("--draw", choices=list(LATENT_DRAWS), default="independent", help="the fit's lambdas")
    add_results_args(parser, None)
    parser.add_argument("overrides", nargs="*", help="further CLI overrides (the fit's model overrides)")
    args = parser.parse_args()
    store = ResultsFile(args.out or per_draw_out("text_regime", args.draw))
    if args.render:
        write_section(render(store.data, args.samples, args.draw))
        return
    ev = "--model.init_args.evaluation.init_args"
    with tempfile.TemporaryDirectory() as tmp:
        common = ["--config", str(CONFIG), f"--trainer.default_root_dir={tmp}", latent_draw_arg(args.draw)]
        common += args.overrides
        cli = run(
            ["test", *common, f"--ckpt_path={args.ckpt}", "--trainer.enable_progress_bar=false"]
            + [f"{ev}.teacher_steps={args.teacher_steps}", f"{ev}.student_steps={args.student_steps}"]
            + [f"{ev}.num_samples={args.samples}"]
        )
        quality = json.loads(next(Path(tmp).rglob("quality.json")).read_text())
    dm = cli.datamodule
    x0 = torch.cat([b["x0"] for b in dm.test_dataloader()])
    use = {str(t): lambda_use(cli.model.student.cpu(), t=t, x0=x0, batch=64) for t in TIMES}
    result = {"ckpt": args.ckpt, "overrides": args.overrides, "rows": quality["rows"], "lambda_use": use}
    store.data = result
    store.save()
    keys = ("model", "steps", "gen_ppl", "word_ppl", "nonword_rate", "entropy")
    print(json.dumps({"rows": [{k: r.get(k) for k in keys} for r in result["rows"]], "lambda_use": use}))
    if not args.overrides:
        write_section(render(result, args.samples, args.draw))


if __name__ == "__main__":
    main()
