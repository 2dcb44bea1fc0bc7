"""Quickstart over seeds: does the 2x on digits hold beyond seed 0, for both latent draws?

Each (draw, seed): ``configs/quickstart.yaml`` with that latent draw, fitted and evaluated with the
seed (the seed sets the fit and the evaluation's sampling), then FD-pixels of the teacher at 4 and 8
steps and the student at 2 and 4 steps on the kept (best validation) checkpoint, 2000 samples per row.

    python bench/quickstart_seeds.py --seeds 0 1 2 --draws independent stratified [--render]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile

from quickstart import CONFIG
from report import LATENT_DRAWS, fit_and_test, latent_draw_arg, write_section
from results_file import ResultsFile, add_results_args

COLUMNS = [("teacher", 4), ("teacher", 8), ("student", 2), ("student", 4)]
METRIC = "FD-pixels"


def fit_and_evaluate(seed: int, draw: str) -> dict:
    """quality.json rows of the quickstart fitted and evaluated with ``seed`` and ``draw``."""
    ev = "--model.init_args.evaluation.init_args"
    model_args = [latent_draw_arg(draw), f"{ev}.seed={seed}", f"{ev}.teacher_steps=[4,8]"]
    model_args += [f"{ev}.student_steps=[2,4]", f"{ev}.latency_batch=0"]
    with tempfile.TemporaryDirectory() as tmp:
        quality, _, secs = fit_and_test(CONFIG, tmp, [f"--seed_everything={seed}"], model_args)
    return {"fit_seconds": secs, "rows": quality["rows"]}


def render(results: dict[str, dict[str, dict]], seeds: list[str]) -> str:
    """Per draw and seed, FD-pixels and the two 2x margins; then their mean and sample std."""
    lines = [
        "## Quickstart: the 2x over seeds and latent draws",
        "",
        f"`python bench/quickstart_seeds.py --seeds {' '.join(seeds)} --draws {' '.join(results)}` "
        "(2 CPU cores): `configs/quickstart.yaml` with the latent draw named, fitted and evaluated per "
        f"seed (the seed sets the fit and the sampling), {METRIC} of 2000 samples, best validation "
        "checkpoint. A negative margin is a student at N steps better than the teacher at 2N.",
        "",
        "| lambdas | seed | teacher@4 | teacher@8 | student@2 | student@4 | student@2 - teacher@4 "
        "| student@4 - teacher@8 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for draw, by_seed in results.items():
        table = [
            [{(r["model"], r["steps"]): r[METRIC] for r in q["rows"]}[c] for c in COLUMNS]
            for q in by_seed.values()
        ]
        table = [row + [row[2] - row[0], row[3] - row[1]] for row in table]
        for seed, row in zip(by_seed, table, strict=True):
            lines.append(
                f"| {draw} | {seed} | "
                + " | ".join(f"{v:+.4f}" if i > 3 else f"{v:.4f}" for i, v in enumerate(row))
                + " |"
            )
        if len(table) > 1:
            for name, fn in (("mean", statistics.mean), ("std", statistics.stdev)):
                lines.append(
                    f"| {draw} | {name} | "
                    + " | ".join(f"{fn(c):.4f}" for c in zip(*table, strict=True))
                    + " |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--draws", nargs="+", choices=list(LATENT_DRAWS), default=list(LATENT_DRAWS))
    add_results_args(parser, "runs/quickstart_seeds.json")
    args = parser.parse_args()
    store = ResultsFile(args.out)
    results = store.data
    for draw in [] if args.render else args.draws:
        for seed in args.seeds:
            if str(seed) in results.get(draw, {}):
                continue
            results.setdefault(draw, {})[str(seed)] = fit_and_evaluate(seed, draw)
            store.save()
            print(draw, seed, json.dumps(results[draw][str(seed)]["rows"]), flush=True)
    write_section(render(results, [str(s) for s in args.seeds]))


if __name__ == "__main__":
    main()
