"""Image tokens: how much FD-fashion moves with the seed alone, for the teacher and for the
untrained student (the teacher plus a randomly projected lambda token, as a fit starts).

Each seed sets both the evaluation's sampling seed and the student's initialisation; ``mixdistill
test --allow_untrained`` on ``configs/image_tokens.yaml`` draws 2000 samples per row at 2 and 4 steps.

    python bench/image_tokens_seeds.py --seeds 0 1 2 3 [--render]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from report import write_section

from mixdistill.cli import run

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "image_tokens.yaml"


def evaluate(seed: int) -> list[dict]:
    """quality.json's rows of the teacher and the untrained student at 2 and 4 steps for ``seed``."""
    with tempfile.TemporaryDirectory() as tmp:
        run(
            [
                "test",
                f"--config={CONFIG}",
                "--allow_untrained=true",
                f"--seed_everything={seed}",
                f"--trainer.default_root_dir={tmp}",
                "--trainer.enable_progress_bar=false",
                f"--model.init_args.evaluation.init_args.seed={seed}",
                "--model.init_args.evaluation.init_args.teacher_steps=[2,4]",
                "--model.init_args.evaluation.init_args.latency_batch=0",
            ]
        )
        return json.loads(next(Path(tmp).rglob("quality.json")).read_text())["rows"]


def render(results: dict[str, list[dict]]) -> str:
    """The "## Image tokens: seed spread" section: one row per seed, then mean and sample std."""
    cols = [(m, n) for m in ("teacher", "student") for n in (2, 4)]
    value = {s: {(r["model"], r["steps"]): r["FD-fashion"] for r in rows} for s, rows in results.items()}
    lines = [
        "## Image tokens: seed spread",
        "",
        f"`python bench/image_tokens_seeds.py --seeds {' '.join(results)}` (2 CPU cores): FD-fashion of "
        "2000 class-conditional samples of `configs/image_tokens.yaml` under `mixdistill test "
        "--allow_untrained`; the seed sets the sampling seed and the untrained student's random lambda "
        "projection. The spread of one row is what a single-seed difference in the ablation above must "
        "exceed to mean anything.",
        "",
        "| seed | teacher@2 | teacher@4 | untrained student@2 | untrained student@4 |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {s} | " + " | ".join(f"{v[c]:.2f}" for c in cols) + " |" for s, v in value.items()]
    for name, fn in (("mean", statistics.mean), ("std", statistics.stdev)):
        cells = [f"{fn([v[c] for v in value.values()]):.2f}" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--out", default="runs/image_tokens_seeds.json")
    parser.add_argument("--render", action="store_true", help="only rewrite the docs section from --out")
    args = parser.parse_args()
    results = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    for seed in [] if args.render else args.seeds:
        results[str(seed)] = evaluate(seed)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
    write_section(render(results))


if __name__ == "__main__":
    main()
