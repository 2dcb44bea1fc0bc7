"""How much dependence one student step can learn, against the latent batch n: an exact test.

Di4C trains the mixture with ``n`` lambdas drawn from the prior per example; the estimate
``log (1/n) sum_j p(y | lambda_j)`` only rewards a lambda region that one of the n draws reaches, so a
student can learn a mixture of about ``n`` distinguishable components, i.e. about ``log n`` nats of
information between lambda and the tokens it reveals in one step. A table of ``P`` independent
copied pairs (``x^{2i} = x^{2i+1}``, each pair uniform over S values)
needs ``P log S`` nats in one step: ``S^P`` equally likely joint choices. This script fits
``configs/synthetic.yaml`` (exact oracle teacher) on tables of two copied pairs (D = 4) over S values
for several ``n``, with the paper's independent lambdas and with stratified ones (``StratifiedDraw``),
and reports the exact TV of the 1-step student (lambda by quadrature).

    python bench/latent_cap.py [--steps 1500] [--values 2 3 4] [--latents 2 8 32 128]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from report import LATENT_DRAWS, latent_draw_arg, write_section
from results_file import ResultsFile, add_results_args

from mixdistill.cli import run

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "synthetic.yaml"
D, PAIRS = 4, 2


def pairs_table(values: int) -> np.ndarray:
    """``p(x)`` over ``values^D``: tokens in copied pairs ``x^(2i) = x^(2i+1)``, every choice uniform."""
    grids = np.meshgrid(*[np.arange(values)] * D, indexing="ij")
    keep = np.ones((values,) * D, dtype=bool)
    for i in range(PAIRS):
        keep &= grids[2 * i] == grids[2 * i + 1]
    return keep / keep.sum()


def fit_and_test(root: str, table: str, latents: int, draw: str, steps: int, seed: int) -> dict:
    """Exact TV of the student at 1 step after fitting with ``latents`` lambdas per example."""
    common = ["--config", str(CONFIG), f"--trainer.default_root_dir={root}"]
    common += ["--trainer.enable_progress_bar=false"]
    common += [f"--trainer.max_steps={steps}", f"--seed_everything={seed}", f"--data.init_args.table={table}"]
    objective = "--model.init_args.objective.init_args"
    common += [f"{objective}.latents={latents}", latent_draw_arg(draw)]
    ev = "--model.init_args.evaluation.init_args"
    common += [f"{ev}.teacher_steps=[1,2,4]", f"{ev}.student_steps=[1]"]
    cli = run(["fit", *common])
    run(["test", *common, f"--ckpt_path={cli.trainer.checkpoint_callback.last_model_path}"])
    rows = json.loads(next(Path(root).rglob("quality.json")).read_text())["rows"]
    return {(r["model"], r["steps"]): r["TV"] for r in rows}


def render(results: dict, args: argparse.Namespace) -> str:
    lines = [
        "## Latent batch against learnable dependence (exact)",
        "",
        f"`python bench/latent_cap.py --steps {args.steps} --seed {args.seed}` ({os.cpu_count()} CPU cores): "
        f"`configs/synthetic.yaml` (exact oracle teacher, MLP student, its settings but the latent batch n) "
        f"fitted on tables of {PAIRS} copied pairs (x^1 = x^2, x^3 = x^4) over S values, every choice "
        f"uniform: one step from all-masked must produce S^{PAIRS} equally likely joint choices, "
        f"{PAIRS} ln S nats of dependence. Exact TV to the table of the 1-step student (lambda by "
        "quadrature, 1024 nodes) against n, the number of lambdas drawn per example in training, "
        "independent (`IndependentDraw`, the paper's) or stratified (`StratifiedDraw`: one lambda in each "
        "1/n slice). '-': not fitted.",
        "",
        f"| S | nats needed ({PAIRS} ln S) | lambdas | teacher@1 | teacher@2 | teacher@4 | "
        + " | ".join(f"student@1, n={n} (ln n {math.log(n):.2f})" for n in args.latents)
        + " |",
        "|---:|---:|---|---:|---:|---:|" + "---:|" * len(args.latents),
    ]
    for v in args.values:
        for draw in args.draws:
            r = results[draw][str(v)]
            first = r[str(args.latents[0])]
            teacher = " | ".join(f"{first[f'teacher@{k}']:.3f}" for k in (1, 2, 4))
            cells = " | ".join(f"{r[str(n)]['student@1']:.3f}" if str(n) in r else "-" for n in args.latents)
            lines.append(f"| {v} | {PAIRS * math.log(v):.2f} | {draw} | {teacher} | {cells} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--values", type=int, nargs="+", default=[2, 3, 4], help="S of each table")
    parser.add_argument("--latents", type=int, nargs="+", default=[2, 8, 32, 128])
    parser.add_argument("--draws", nargs="+", choices=list(LATENT_DRAWS), default=list(LATENT_DRAWS))
    add_results_args(parser, "runs/latent_cap.json")
    args = parser.parse_args()
    store = ResultsFile(args.out)
    if not args.render:
        fit_missing(store, args)
    text = render(store.data, args)
    write_section(text)
    print(text)


def fit_missing(store: ResultsFile, args: argparse.Namespace) -> None:
    """Fits every (draw, S, n) not yet in ``store``, saving each row as it lands."""
    results = store.data
    with tempfile.TemporaryDirectory() as tmp:
        for draw in args.draws:
            for v in args.values:
                table = Path(tmp) / f"pairs{v}.npy"
                np.save(table, pairs_table(v))
                for n in args.latents:
                    if str(n) in results.get(draw, {}).get(str(v), {}):
                        continue
                    torch.manual_seed(args.seed)
                    root = str(Path(tmp) / f"{draw}s{v}n{n}")
                    tv = fit_and_test(root, str(table), n, draw, args.steps, args.seed)
                    row = {f"{m}@{k}": x for (m, k), x in tv.items()}
                    results.setdefault(draw, {}).setdefault(str(v), {})[str(n)] = row
                    store.save()
                    print(draw, v, n, json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
