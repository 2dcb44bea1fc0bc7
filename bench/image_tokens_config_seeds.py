"""Image tokens: the shipped configs/image_tokens.yaml fitted and evaluated on several seeds.

Each seed: ``mixdistill fit --config configs/image_tokens.yaml --seed_everything S`` (the config's
own steps, validation and best-checkpoint selection) with the evaluation's sampling seed ``S``, then
``mixdistill test`` on the best checkpoint with the teacher at 2, 4 and 8 steps and the student at
2 and 4. A seed whose folder ``ROOT/seedS`` already holds a ``quality.json`` is read, not refitted
(a stopped run resumes). Writes the section "## Image tokens: the shipped config over seeds".

    python bench/image_tokens_config_seeds.py --seeds 0 1 2 [--root runs/image_tokens_seeds] [--render]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from image_tokens_ablation import CONFIG
from report import fit_and_test, write_section
from results_file import ResultsFile, add_results_args

from mixdistill.evaluation.headline import headline_lines

SECTION = "## Image tokens: the shipped config over seeds"
FD = [("teacher", 2), ("teacher", 4), ("teacher", 8), ("student", 2), ("student", 4)]


def evaluation_args(seed: int) -> list[str]:
    ev = "--model.init_args.evaluation.init_args"
    return [f"{ev}.seed={seed}", f"{ev}.teacher_steps=[2,4,8]", f"{ev}.latency_batch=0"]


def seed_result(seed: int, root: Path) -> dict:
    """quality.json of ``seed``: read from ``root/seedS`` when a run left one there, else fitted."""
    folder = root / f"seed{seed}"
    found = sorted(folder.rglob("quality.json"))
    if found:
        return {"fit_seconds": _fit_seconds(folder), **json.loads(found[-1].read_text())}
    quality, _, secs = fit_and_test(CONFIG, str(folder), [f"--seed_everything={seed}"], evaluation_args(seed))
    return {"fit_seconds": secs, **quality}


def _fit_seconds(folder: Path) -> float | None:
    """A finished run's fit time from its files: first log folder's creation to the last checkpoint."""
    starts = sorted(folder.glob("lightning_logs/*/hparams.yaml"), key=lambda f: f.stat().st_mtime)
    last = folder / "checkpoints" / "last.ckpt"
    return last.stat().st_mtime - starts[0].stat().st_mtime if starts and last.is_file() else None


def _table(results: dict[str, dict]) -> list[str]:
    rows = {s: {(r["model"], r["steps"]): r for r in q["rows"]} for s, q in results.items()}
    lines = [
        "| seed | teacher@2 | teacher@4 | teacher@8 | student@2 | student@4 | student@2 - teacher@4 "
        "| student@4 - teacher@8 | class-acc @4 teacher / student |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    cols = {c: [v[c]["FD-fashion"] for v in rows.values()] for c in FD}
    margins = [
        [a - b for a, b in zip(cols[("student", 2)], cols[("teacher", 4)], strict=True)],
        [a - b for a, b in zip(cols[("student", 4)], cols[("teacher", 8)], strict=True)],
    ]
    for i, (s, v) in enumerate(rows.items()):
        cells = [f"{cols[c][i]:.2f}" for c in FD] + [f"{m[i]:+.2f}" for m in margins]
        acc = f"{v[('teacher', 4)]['class-acc']:.3f} / {v[('student', 4)]['class-acc']:.3f}"
        lines.append(f"| {s} | " + " | ".join(cells) + f" | {acc} |")
    for name, fn, sign in (("mean", statistics.mean, "+"), ("std", statistics.stdev, "")):
        if len(rows) > 1:
            cells = [f"{fn(cols[c]):.2f}" for c in FD] + [f"{fn(m):{sign}.2f}" for m in margins]
            lines.append(f"| {name} | " + " | ".join(cells) + " | |")
    return lines


def mean_rows(results: dict[str, dict]) -> list[dict]:
    """The rows averaged over seeds (FD-fashion and samples/s), for the headline."""
    per = [{(r["model"], r["steps"]): r for r in q["rows"]} for q in results.values()]
    keys = [(r["model"], r["steps"]) for r in next(iter(results.values()))["rows"]]
    return [
        {
            "model": m,
            "steps": n,
            **{k: statistics.mean(p[(m, n)][k] for p in per) for k in ("FD-fashion", "samples_per_sec")},
        }
        for m, n in keys
    ]


def render(results: dict[str, dict]) -> str:
    secs = [q["fit_seconds"] for q in results.values() if q["fit_seconds"] is not None]
    fit = f"; fits of {min(secs) / 60:.0f}-{max(secs) / 60:.0f} min to the last checkpoint" if secs else ""
    lines = [
        SECTION,
        "",
        f"`python bench/image_tokens_config_seeds.py --seeds {' '.join(results)}` (2 CPU cores{fit}): "
        "`configs/image_tokens.yaml` as shipped, fitted per seed (the seed sets the fit and the "
        "sampling), best 4-step validation checkpoint, then 2000 class-conditional samples per row, "
        "guidance on. FD-fashion, lower is better; a negative margin is a student at N steps better "
        "than the teacher at 2N.",
        "",
        *_table(results),
        "",
        "Headline on the seed means (teacher steps of equal FD-fashion interpolated in log steps; "
        "samples/s from each row's own sampling time):",
        "",
        *headline_lines(mean_rows(results), "FD-fashion", higher_is_better=False),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--root", type=Path, default=Path("runs/image_tokens_seeds"), help="folder of seed folders"
    )
    add_results_args(parser, "runs/image_tokens_config_seeds.json")
    args = parser.parse_args()
    store = ResultsFile(args.out)
    for seed in [] if args.render else args.seeds:
        store.data[str(seed)] = seed_result(seed, args.root)
        store.save()
        print(seed, json.dumps(store.data[str(seed)]["rows"]), flush=True)
    write_section(render({str(s): store.data[str(s)] for s in args.seeds if str(s) in store.data}))


if __name__ == "__main__":
    main()
