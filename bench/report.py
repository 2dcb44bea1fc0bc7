"""Writes one "## ..." section of docs/benchmarks.md, keeping the other sections."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from results_file import add_results_args

from mixdistill.cli import MixDistillCLI, run
from mixdistill.evaluation.headline import can_headline, headline_lines

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
# The objective's latent draws by bench name: the override that selects one (mixdistill.di4c.latent_draws).
LATENT_DRAWS = {"independent": "IndependentDraw", "stratified": "StratifiedDraw"}


def latent_draw_arg(draw: str) -> str:
    """The CLI override that makes the Di4C objective draw its lambdas with ``draw``."""
    return f"--model.init_args.objective.init_args.latent_draw=mixdistill.di4c.{LATENT_DRAWS[draw]}"


TITLE = "# Benchmarks\n\nEach section is written by the script it names; rerun it to refresh the figures.\n"


def write_section(text: str, doc: Path = DOC) -> None:
    """Replace, in place, the section whose first line equals ``text``'s first line (a ``## `` heading),
    or append it."""
    heading = text.splitlines()[0]
    if not heading.startswith("## "):
        raise ValueError(f"section text must start with a '## ' heading, got {heading!r}")
    old = doc.read_text() if doc.exists() else TITLE
    parts = old.split("\n## ")
    head, sections = parts[0], ["## " + p for p in parts[1:]]
    # In place, so rerunning one script leaves the order of the document as it was.
    found = [i for i, s in enumerate(sections) if s.splitlines()[0] == heading]
    if found:
        sections[found[0]] = text.strip() + "\n"
    else:
        sections.append(text.strip() + "\n")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(head.rstrip() + "\n\n" + "\n".join(s.rstrip() + "\n" for s in sections))


def fit_and_test(
    config: Path, root: str, fit_args: list[str], model_args: list[str] | None = None
) -> tuple[dict, MixDistillCLI, float]:
    """``mixdistill fit`` (with ``fit_args`` and ``model_args``) then ``mixdistill test`` (with
    ``model_args``, which must also describe the checkpoint's model) on ``config`` under ``root``.

    Returns ``quality.json`` (``rows`` and ``meta``), the fit CLI (trainer and model) and the fit's
    wall seconds.
    """
    common = [
        "--config",
        str(config),
        f"--trainer.default_root_dir={root}",
        "--trainer.enable_progress_bar=false",
        *(model_args or []),
    ]
    start = time.perf_counter()
    cli = run(["fit", *common, *fit_args])
    seconds = time.perf_counter() - start
    # The monitored best checkpoint where one was written, else the latest periodic one.
    callbacks = cli.trainer.checkpoint_callbacks
    best = [c.best_model_path for c in callbacks if c.monitor and c.best_model_path]
    last = [c.last_model_path for c in callbacks if c.last_model_path]
    run(["test", *common, f"--ckpt_path={(best + last)[0]}"])
    quality = json.loads(next(Path(root).rglob("quality.json")).read_text())
    return quality, cli, seconds


def ablation_args(description: str, steps: int, samples: int, out: str) -> argparse.Namespace:
    """The command line every ablation script takes: fit ``--steps``, evaluate ``--samples``, run
    ``--only`` some variants, keep results in ``--out``, or ``--render`` the section from them."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--steps", type=int, default=steps, help="fit steps of every variant")
    parser.add_argument("--samples", type=int, default=samples, help="samples per evaluated row")
    parser.add_argument("--only", nargs="*", help="variant names (substrings) to run")
    add_results_args(parser, out)
    return parser.parse_args()


def ablation_row(name: str, result: dict, rows: list[dict], metric: str, digits: int, second: str) -> str:
    """One ablation table row: ``| name | lambda use | metric@2 | metric@4 | second @2 / @4 | fit min |``
    from the student ``rows`` (``steps`` 2 and 4) of one variant's ``result``."""
    r = {x["steps"]: x for x in rows}
    return (
        f"| {name} | {result['lambda_use']:.4f} | {r[2][metric]:.{digits}f} | {r[4][metric]:.{digits}f} | "
        f"{r[2][second]:.3f} / {r[4][second]:.3f} | {result['fit_seconds'] / 60:.1f} |"
    )


def run_example(config: Path, render: Callable[[dict, MixDistillCLI, float], str], description: str) -> None:
    """The ``main`` of an example's benchmark: ``--root`` (default: a temporary folder), fit and
    test ``config`` there, render the section with ``render(quality, cli, seconds)``, write and print it.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", help="keep the run (logs, checkpoints) here instead of a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        quality, cli, seconds = fit_and_test(config, args.root or tmp, [])
        text = render(quality, cli, seconds)
    write_section(text)
    print(text)


def side_by_side(rows: list[dict], metric: str) -> list[str]:
    """Markdown rows ``| steps | teacher | student |`` of one metric."""
    teacher = {r["steps"]: r[metric] for r in rows if r["model"] == "teacher"}
    student = {r["steps"]: r[metric] for r in rows if r["model"] == "student"}
    lines = [f"| steps | teacher {metric} | student {metric} |", "|---:|---:|---:|"]
    for n in sorted(set(teacher) | set(student)):
        cells = [f"{d[n]:.4f}" if n in d else "-" for d in (teacher, student)]
        lines.append(f"| {n} | {cells[0]} | {cells[1]} |")
    return lines


def step_ms(latency: dict) -> tuple[float, float] | None:
    """``(teacher, student)`` ms per step and sample from quality.json's latency meta (measured on
    batches of ``batch_size``), if it was measured."""
    if "teacher_step_ms" not in latency:
        return None
    return latency["teacher_step_ms"] / latency["batch_size"], latency["student_step_ms"] / latency[
        "batch_size"
    ]


def quality_tables(
    rows: list[dict], metrics: list[str], latency: dict, higher_is_better: bool = False
) -> list[str]:
    """One side-by-side table per metric, then the per-step latency sentence of ``quality.json``'s meta."""
    lines: list[str] = []
    for metric in metrics:
        lines += [*side_by_side(rows, metric), ""]
    if can_headline(rows):
        lines += [
            f"Headline: the student at N steps against the teacher at the steps of equal {metrics[0]} "
            "(interpolated in log steps and log metric; a bound where outside the teacher's range); "
            "samples/s from the per-step latency below (batched):",
            "",
            *headline_lines(rows, metrics[0], higher_is_better, step_ms(latency)),
            "",
        ]
    return [
        *lines,
        f"Latency of one sampling step at batch {latency['batch_size']} (median of 3 x 20 alternated runs):",
        f"teacher {latency['teacher_step_ms']:.2f} ms, student {latency['student_step_ms']:.2f} ms, "
        f"mixture overhead {100 * latency['student_overhead']:+.1f}%.",
    ]
