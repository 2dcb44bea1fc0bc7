"""Text ablation: why the Shakespeare student does not beat the teacher, one change at a time.

Each variant is ``configs/text.yaml`` plus CLI overrides, fitted for the same number of steps with the
same seed; the student is then scored at 2 and 4 steps (gen-PPL under the shipped evaluator, unigram
entropy) with the same samples count and seed as the teacher rows, and its use of lambda is measured as
the mean KL between one lambda's product component and the mixture marginal at t = 1 (nats per token;
0 means the student ignores lambda and is a product denoiser).

    python bench/text_ablation.py --steps 400 --samples 256 [--only NAME ...]
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from lambda_use import lambda_use
from report import ablation_args, ablation_row, write_section
from results_file import ResultsFile

from mixdistill.cli import run

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "text.yaml"
EXTRA = "mixdistill.injection.ExtraTokenInjection"
VARIANTS: dict[str, list[str]] = {
    "baseline (additive lambda at the time embedding)": [],
    "lambda as an extra token": [f"--model.init_args.injection={EXTRA}"],
    "extra token, lr 3e-4": [
        f"--model.init_args.injection={EXTRA}",
        "--model.init_args.optimizer.init_args.lr=0.0003",
    ],
    "extra token, 16 latents x 16 windows": [
        f"--model.init_args.injection={EXTRA}",
        "--model.init_args.objective.init_args.latents=16",
        "--data.init_args.batch_size=16",
    ],
    "extra token, teacher step 1/8": [
        f"--model.init_args.injection={EXTRA}",
        "--model.init_args.objective.init_args.times.init_args.step=0.125",
        "--model.init_args.objective.init_args.times.init_args.distil_max=0.125",
    ],
    "extra token, corr weight 1": [
        f"--model.init_args.injection={EXTRA}",
        "--model.init_args.objective.init_args.corr_weight.init_args.scale=1.0",
    ],
}


def evaluate(cli, steps: list[int], samples: int, teacher_too: bool) -> list[dict]:
    model, dm = cli.model, cli.datamodule
    ev = model.evaluation
    ev.num_samples = samples
    ev.use_decoder(dm.decode)
    rows = []
    if teacher_too:
        rows += [ev.row("teacher", model.teacher, s, model.teacher) for s in (2, 4, 8, 16)]
    rows += [ev.row("student", model.student, s, model.teacher) for s in steps]
    return rows


def main() -> None:
    args = ablation_args(__doc__.splitlines()[0], 400, 256, "runs/text_ablation.json")
    store = ResultsFile(args.out)
    results = store.data
    if args.render:
        write_section(render(results, args.samples))
        return
    for name, overrides in VARIANTS.items():
        if args.only and not any(o in name for o in args.only):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            cli = run(
                [
                    "fit",
                    "--config",
                    str(CONFIG),
                    f"--trainer.default_root_dir={tmp}",
                    f"--trainer.max_steps={args.steps}",
                    "--trainer.enable_progress_bar=false",
                    "--trainer.val_check_interval=100000",
                    "--trainer.max_time=null",
                    "--trainer.callbacks=[]",
                    *overrides,
                ]
            )
            secs = time.perf_counter() - start
            cli.model.eval()
            use = lambda_use(cli.model.student)
            rows = evaluate(cli, [2, 4], args.samples, teacher_too="teacher" not in results)
        if "teacher" not in results:
            results["teacher"] = [r for r in rows if r["model"] == "teacher"]
        results[name] = {
            "overrides": overrides,
            "fit_seconds": secs,
            "lambda_use": use,
            "rows": [r for r in rows if r["model"] == "student"],
            "steps": args.steps,
        }
        store.save()
        print(name, json.dumps(results[name]), flush=True)
    write_section(render(results, args.samples))


def render(results: dict, samples: int) -> str:
    """The "## Text ablation" section of docs/benchmarks.md from the saved results."""
    teacher = {r["steps"]: r for r in results["teacher"]}
    runs = {k: v for k, v in results.items() if k != "teacher"}
    steps = next(iter(runs.values()))["steps"]
    lines = [
        "## Text ablation: does the student use lambda?",
        "",
        f"`python bench/text_ablation.py --steps {steps} --samples {samples}` (2 CPU cores shared with other "
        "jobs, one torch thread): each row is `configs/text.yaml` with one change, fitted for "
        f"{steps} steps from seed 0, then {samples} samples of the student at 2 and 4 steps (same seed as "
        "the teacher rows). *lambda use* is the mean KL (nats per token) between one lambda's product "
        "component and the mixture marginal at t = 1: 0 means the student is a product denoiser.",
        "",
        "Teacher: "
        + ", ".join(
            f"{n} steps {teacher[n]['gen_ppl']:.0f} (entropy {teacher[n]['entropy']:.3f})"
            for n in sorted(teacher)
        )
        + ".",
        "",
        "| variant | lambda use | student@2 gen_ppl | student@4 gen_ppl | entropy @2 / @4 | fit min |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, v in runs.items():
        lines.append(ablation_row(name, v, v["rows"], "gen_ppl", 0, "entropy"))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
