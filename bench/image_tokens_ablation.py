"""Image-token ablation: where lambda enters the MaskGIT student and how strongly the data's
correlation term pulls, one change at a time.

Each variant is ``configs/image_tokens.yaml`` plus CLI overrides, fitted for the same number of steps
from the same seed (no validation), then ``mixdistill test`` on its last checkpoint: FD-fashion and
class accuracy of the teacher and the student at 2 and 4 steps, same samples count and seed. *lambda
use* is the mean KL (nats per token) between one lambda's product component and the mixture marginal
at t = 1.

    python bench/image_tokens_ablation.py --steps 250 --samples 2000 [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from lambda_use import lambda_use
from report import ablation_args, ablation_row, fit_and_test, write_section
from results_file import ResultsFile

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "image_tokens.yaml"
ADDITIVE = [
    "--model.init_args.injection=mixdistill.injection.AdditiveInjection",
    "--model.init_args.injection.init_args.layer=net.tok_emb",
]
CORR_1 = [
    "--model.init_args.objective.init_args.corr_weight=mixdistill.di4c.weights.ConstantWeight",
    "--model.init_args.objective.init_args.corr_weight.init_args.value=1.0",
]
LABELS = "--model.init_args.objective.init_args.label_dropout=0.1"
ANCESTRAL = "--model.init_args.teacher.init_args.consistency_rule=mixdistill.sampling.step_rule.AncestralStep"
EMA = '--trainer.callbacks+={"class_path": "mixdistill.callbacks.StudentEMA", "init_args": {"decay": 0.99}}'
STEP = "--model.init_args.objective.init_args.times.init_args.step={}"
LR_5 = "--model.init_args.optimizer.init_args.lr=1e-5"
BEST = [LR_5, LABELS, ANCESTRAL]
VARIANTS: dict[str, list[str]] = {
    "paper: extra token, random projection": [],
    "control: paper at lr 0 (the student as initialised)": ["--model.init_args.optimizer.init_args.lr=0.0"],
    "extra token, zero-initialised projection": ["--model.init_args.injection.init_args.zero_init=true"],
    "additive lambda on every token embedding (exact at init)": ADDITIVE,
    "additive, data correlation weight 1 at every t": ADDITIVE + CORR_1,
    "paper, 10% of the labels dropped (unconditional branch distilled too)": [LABELS],
    "additive, 10% of the labels dropped": ADDITIVE + [LABELS],
    "paper, labels dropped, ancestral teacher step in the target": [LABELS, ANCESTRAL],
    "additive, labels dropped, ancestral teacher step in the target": ADDITIVE + [LABELS, ANCESTRAL],
    "paper, lr 1e-5 (the paper's MaskGIT lr)": [LR_5],
    "paper, lr 1e-5, labels dropped": [LR_5, LABELS],
    "paper, lr 1e-5, labels dropped, ancestral teacher step in the target": [LR_5, LABELS, ANCESTRAL],
    "paper, student EMA 0.99": [EMA],
    "paper, lr 1e-5, labels dropped, ancestral, teacher step 0.1": [*BEST, STEP.format(0.1)],
    "paper, lr 1e-5, labels dropped, ancestral, teacher step 0.2": [*BEST, STEP.format(0.2)],
}


def main() -> None:
    args = ablation_args(__doc__.splitlines()[0], 250, 2000, "runs/image_tokens_ablation.json")
    store = ResultsFile(args.out)
    results = store.data
    for name, overrides in VARIANTS.items():
        if args.render or (args.only and not any(o in name for o in args.only)):
            continue
        fit_args = [
            f"--trainer.max_steps={args.steps}",
            "--trainer.max_time=null",
            "--trainer.limit_val_batches=0",
        ]
        model_args = [
            f"--model.init_args.evaluation.init_args.num_samples={args.samples}",
            "--model.init_args.evaluation.init_args.teacher_steps=[2,4]",
            "--model.init_args.evaluation.init_args.latency_batch=0",
            *overrides,
        ]
        with tempfile.TemporaryDirectory() as tmp:
            quality, cli, secs = fit_and_test(CONFIG, tmp, fit_args, model_args)
            cli.model.eval()
            use = lambda_use(cli.model.student)
        results[name] = {"overrides": overrides, "fit_seconds": secs, "lambda_use": use, **quality}
        store.save()
        print(name, json.dumps({k: results[name][k] for k in ("lambda_use", "rows")}), flush=True)
    write_section(render(results, args))


def render(results: dict, args: argparse.Namespace) -> str:
    """The "## Image-token ablation" section of docs/benchmarks.md from the saved results."""
    first = next(iter(results.values()))
    teacher = {r["steps"]: r for r in first["rows"] if r["model"] == "teacher"}
    lines = [
        "## Image-token ablation: where lambda enters",
        "",
        f"`python bench/image_tokens_ablation.py --steps {args.steps} --samples {args.samples}` "
        "(2 CPU cores): each row is `configs/image_tokens.yaml` with one change, fitted for "
        f"{args.steps} steps from seed 0 without validation, then {args.samples} class-conditional "
        "samples of the student at 2 and 4 steps (same seed as the teacher's). *lambda use*: mean "
        "KL (nats per token) between one lambda's product component and the mixture marginal at "
        "t = 1 (0: a product denoiser).",
        "",
        "Teacher: "
        + ", ".join(
            f"{n} steps FD-fashion {r['FD-fashion']:.2f} (class-acc {r['class-acc']:.3f})"
            for n, r in sorted(teacher.items())
        )
        + ".",
        "",
        "The control (lr 0) is the student as initialised: the teacher's weights plus an untrained, "
        "randomly projected lambda token. A trained row worse than it is one where training made the "
        "student worse; a row better than the teacher but not than the control owes that to the random "
        'token, not to distillation. Every row is one seed: the section "Image tokens: seed spread" '
        "gives the spread a difference must exceed.",
        "",
        "| variant | lambda use | student@2 FD-fashion | student@4 FD-fashion | class-acc @2 / @4 "
        "| fit min |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, v in results.items():
        student = [x for x in v["rows"] if x["model"] == "student"]
        lines.append(ablation_row(name, v, student, "FD-fashion", 2, "class-acc"))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
