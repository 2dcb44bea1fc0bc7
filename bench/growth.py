"""Growth of one Di4C training step's time and peak memory with D, S and n, and fitted exponents.

The step is ``Di4CObjective.forward`` + backward under bf16 autocast (``paper_memory.train_step``):
a real ``MDLMTeacher`` (MDLM's DiT, random weights, no dropout as configs/tiny/mdlm_tiny.yaml) and
its mixture student with lambda as an extra token (``ExtraTokenInjection``), AdamW states present.
As in bench/paper_memory.py every example takes the consistency branch (``AllConsistencyObjective``,
the gating's worst case), so each step does the same work. From a base point ``(D0, S0, n0)`` each
of D (sequence length), S (vocabulary) and n (latents) takes three values, the others held.

* Time: median of ``--repeats`` steps after warm-up; the points alternate within each repeat, so
  a drift of a shared machine's speed falls on all of them alike.
* Memory: the real step's peak above what was live before it (``paper_memory.real_peak``: the
  PyTorch profiler's CPU allocator counter, as in bench/loss_bench.py), gradients included.
* Exponent: least-squares slope of log(value) against log(size) over the three points.

Run ``python bench/growth.py`` (about 3-5 minutes on 2 cores); ``--quick`` is a smoke run of tiny
sizes that writes nothing. It rewrites the section named ``SECTION`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from paper_memory import (  # noqa: E402
    AllConsistencyObjective,
    Setup,
    batch,
    fixed_bytes,
    prepared,
    real_peak,
    train_step,
)
from report import DOC, write_section  # noqa: E402

from mixdistill.di4c.times import SDTTTimes  # noqa: E402
from mixdistill.di4c.weights import SigmoidWeight  # noqa: E402
from mixdistill.injection import ExtraTokenInjection  # noqa: E402
from mixdistill.module import DistillModule  # noqa: E402
from mixdistill.nets.dit import MDLMDiT  # noqa: E402
from mixdistill.teachers.mdlm import MDLMTeacher  # noqa: E402

SECTION = "## Growth: step time and memory against D, S and n"
FIELDS = {"D": "dims", "S": "states", "n": "latents"}  # axis name -> Point field


@dataclass(frozen=True)
class Point:
    """One shape: sequence length ``D``, vocabulary ``S`` (the DiT has S + 1 rows), latents ``n``."""

    dims: int
    states: int
    latents: int


@dataclass(frozen=True)
class Grid:
    """The base point, three sizes per axis, and the fixed batch and network width."""

    base: Point
    sizes: dict[str, tuple[int, int, int]]
    batch: int
    hidden: int
    blocks: int
    heads: int


FULL = Grid(
    Point(128, 2048, 8), {"D": (64, 128, 256), "S": (1024, 2048, 4096), "n": (4, 8, 16)}, 4, 128, 2, 4
)
QUICK = Grid(Point(32, 256, 4), {"D": (16, 32, 64), "S": (128, 256, 512), "n": (2, 4, 8)}, 2, 32, 1, 2)


def vary(grid: Grid, axis: str, size: int) -> Point:
    """The base point with ``axis`` ("D", "S" or "n") set to ``size``."""
    return replace(grid.base, **{FIELDS[axis]: size})


def all_points(grid: Grid) -> list[Point]:
    """Every distinct point of the grid (the base point once)."""
    points = [vary(grid, axis, s) for axis, sizes in grid.sizes.items() for s in sizes]
    return list(dict.fromkeys(points))


def growth_setup(grid: Grid, p: Point) -> Setup:
    """``paper_memory.Setup`` of an MDLM DiT teacher and mixture student at point ``p``."""

    def build() -> DistillModule:
        dit = MDLMDiT(
            p.states + 1, grid.hidden, 32, grid.blocks, grid.heads, model_length=p.dims, dropout=0.0
        )
        teacher = MDLMTeacher(backbone=dit, vocab_size=p.states, seq_len=p.dims)
        times = SDTTTimes(p_distil=0.0, distil_max=0.0625, step=0.0625)
        objective = AllConsistencyObjective(times, SigmoidWeight(scale=0.1), latents=p.latents)
        return DistillModule(teacher, objective, ExtraTokenInjection("backbone", grid.hidden, 16))

    name = f"D={p.dims}, S={p.states}, n={p.latents}"
    return Setup(name, name, p.dims, p.states, p.latents, build, False, "DiTBlock")


def time_points(grid: Grid, points: list[Point], warmup: int, repeats: int) -> dict[Point, float]:
    """Median seconds of one forward + backward per point; points alternate within each repeat."""
    runs = []
    for p in points:
        setup = growth_setup(grid, p)
        torch.manual_seed(0)
        module = setup.build()
        runs.append((p, module, prepared(module, setup), batch(setup, grid.batch)))
    seconds: dict[Point, list[float]] = {p: [] for p in points}
    for i in range(warmup + repeats):
        for p, module, opt, (x0, cond) in runs:
            start = time.perf_counter()
            train_step(module, x0, cond)
            elapsed = time.perf_counter() - start
            opt.zero_grad(set_to_none=True)
            if i >= warmup:
                seconds[p].append(elapsed)
    return {p: statistics.median(s) for p, s in seconds.items()}


def exponent(sizes: tuple[int, ...], values: list[float]) -> float:
    """Least-squares slope of ``log(value)`` against ``log(size)``."""
    xs, ys = [math.log(s) for s in sizes], [math.log(max(v, 1e-12)) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def measure(grid: Grid, warmup: int, repeats: int) -> dict:
    """``rows`` (per axis: sizes, seconds, peak bytes, both exponents), the base point's ``seconds``
    and ``peak``, and its ``state`` (weights and AdamW states, which the peak does not count).
    """
    points = all_points(grid)
    seconds = time_points(grid, points, warmup, repeats)
    peaks = {}
    for p in points:
        setup = growth_setup(grid, p)
        peaks[p] = float(real_peak(setup, grid.batch))
        print(f"{setup.name}: {1e3 * seconds[p]:.1f} ms, {peaks[p] / 2**20:.1f} MB", flush=True)
    rows = []
    for axis, sizes in grid.sizes.items():
        pts = [vary(grid, axis, s) for s in sizes]
        secs, mem = [seconds[p] for p in pts], [peaks[p] for p in pts]
        fits = dict(a_time=exponent(sizes, secs), a_mem=exponent(sizes, mem))
        rows.append(dict(axis=axis, sizes=sizes, seconds=secs, peaks=mem, **fits))
    with torch.device("meta"):
        fixed = fixed_bytes(growth_setup(grid, grid.base).build())
    state = fixed["teacher"] + fixed["student"] + fixed["adam"]
    return dict(rows=rows, seconds=seconds[grid.base], peak=peaks[grid.base], state=state)


def formula(grid: Grid, rows: list[dict], key: str, value: str) -> str:
    """``value ≈ v0 (D/D0)^a (S/S0)^b (n/n0)^c`` with the fitted exponents under ``key``."""
    b = grid.base
    base = {"D": b.dims, "S": b.states, "n": b.latents}
    terms = " ".join(f"({r['axis']}/{base[r['axis']]})^{r[key]:.2f}" for r in rows)
    return f"{value} {terms}"


def table(rows: list[dict]) -> list[str]:
    """The markdown table: one row per varied size."""
    lines = [
        "| varied | sizes | step ms | time exponent | peak MB | memory exponent |",
        "|---|---|---|---:|---|---:|",
    ]
    for r in rows:
        sizes = " / ".join(str(s) for s in r["sizes"])
        ms = " / ".join(f"{1e3 * s:.1f}" for s in r["seconds"])
        mb = " / ".join(f"{p / 2**20:.1f}" for p in r["peaks"])
        lines.append(f"| {r['axis']} | {sizes} | {ms} | {r['a_time']:.2f} | {mb} | {r['a_mem']:.2f} |")
    return lines


def render(grid: Grid, result: dict, command: str, warmup: int, repeats: int) -> str:
    """The section: table, the two formulas, and how it was measured (``result`` of ``measure``)."""
    b, rows = grid.base, result["rows"]
    t0, m0, state = 1e3 * result["seconds"], result["peak"] / 2**20, result["state"]
    return "\n".join(
        [
            SECTION,
            "",
            f"`{command}`: one training step (`Di4CObjective.forward` + backward, bf16 autocast) of a random "
            f"MDLM DiT teacher ({grid.hidden} wide, {grid.blocks} block(s), {grid.heads} heads, lambda as an "
            f"extra token) and its mixture student, batch B = {grid.batch}, every example on the consistency "
            f"branch. Base point D = {b.dims}, S = {b.states}, n = {b.latents}; each row varies one of them.",
            "",
            *table(rows),
            "",
            "Predict a run of another shape (same width and batch) from the base point:",
            "",
            f"* time ≈ {formula(grid, rows, 'a_time', f'{t0:.1f} ms')}",
            f"* peak ≈ {formula(grid, rows, 'a_mem', f'{m0:.1f} MB')}",
            "",
            f"* Time: median of {repeats} steps after {warmup} warm-up step(s) (and one step with an AdamW "
            "update before them); the points alternate within each repeat. The ms are this machine's; the "
            "exponents hold while the same parts of the step dominate, and the shares of the network and "
            "of the (B, n, D, S) logits change with width, depth and batch (to refit at yours, edit `FULL` "
            "in bench/growth.py).",
            "* Peak: real, the PyTorch profiler's CPU allocator counter over one step, above what was live "
            "before it (`bench/paper_memory.py`'s `real_peak`): activations, logits and the student's "
            f"gradients; not the weights and AdamW states ({state / 2**20:.1f} MB at the base point).",
            "* Exponent: least-squares slope of log(value) against log(size) over the three points.",
            f"* Machine: {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run (writes nothing)")
    parser.add_argument("--repeats", type=int, help="timed steps per point (default 9, --quick 2)")
    parser.add_argument("--warmup", type=int, help="untimed steps per point (default 2, --quick 1)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    grid = QUICK if args.quick else FULL
    repeats = args.repeats or (2 if args.quick else 9)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    result = measure(grid, warmup, repeats)
    command = " ".join(["python bench/growth.py", *sys.argv[1:]])
    text = render(grid, result, command, warmup, repeats)
    print(text)
    if not (args.quick or args.no_write):
        write_section(text, DOC)
        print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
