"""Sampler cost of the mixture student: per-step overhead against its teacher, and the cached sampler.

Builds teacher and student as the shipped configs do (``mixdistill.testing.config``: the config's
teacher section through jsonargparse, the student copied from it with the config's injection):
the Shakespeare text teacher (configs/text.yaml, shipped weights), the MaskGIT ImageNet 256
transformer (configs/maskgit_imagenet256.yaml sizes, random weights) and MDLM's small DiT
(configs/mdlm_owt.yaml, random weights, at a reduced length). Times one sampling step of each pair,
alternating teacher and student, then counts the network rows the cached sampler computes and reuses
along whole chains. Writes "## Sampler: mixture overhead per step and cached calls" of
docs/benchmarks.md.

    python bench/sampler_overhead.py            # the full run (alone on the machine)
    python bench/sampler_overhead.py --quick    # smoke run, under a minute
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from report import DOC, write_section

from mixdistill.evaluation.latency import step_seconds
from mixdistill.sampling.loop import CallCount, sample_chain
from mixdistill.sampling.step_rule import AncestralStep, CachedAncestralStep
from mixdistill.student import MixtureStudent
from mixdistill.teachers.base import Teacher
from mixdistill.testing.config import build, drop_checkpoints, load_config, teacher_section
from mixdistill.testing.teacher import default_injection

HEADING = "## Sampler: mixture overhead per step and cached calls"
CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SETUPS = {  # name -> (config, keep its weights file, what the weights are)
    "text": ("text.yaml", True, "the shipped teacher asset"),
    "maskgit": ("maskgit_imagenet256.yaml", False, "random weights (no checkpoint read)"),
    "mdlm": ("mdlm_owt.yaml", False, "random weights, MDLM small"),
}
GOAL = 1.05
QUICK = dict(text_batch=16, maskgit_batch=1, mdlm_batch=1, mdlm_len=32, repeats=3, warmup=1)
QUICK |= dict(cache_batch=8, cache_steps=[4, 16])


def parse_args() -> argparse.Namespace:
    """The command line; ``--quick`` replaces the sizes left at their defaults with ``QUICK``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setups", nargs="+", choices=list(SETUPS), default=list(SETUPS))
    p.add_argument("--text-batch", type=int, default=256, help="batch of the text setup")
    p.add_argument("--maskgit-batch", type=int, default=4, help="batch of the MaskGIT setup")
    p.add_argument("--mdlm-batch", type=int, default=4, help="batch of the MDLM setup")
    p.add_argument("--mdlm-len", type=int, default=256, help="MDLM tokens per sequence (the paper: 1024)")
    p.add_argument("--repeats", type=int, default=15, help="alternated timed step pairs per setup")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps of each model first")
    p.add_argument("--cache-setup", choices=["text", "mdlm"], default="text", help="setup of the chains")
    p.add_argument("--cache-batch", type=int, default=64, help="samples per chain")
    p.add_argument("--cache-steps", type=int, nargs="+", default=[16, 64, 256], help="chain lengths")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="shrink everything for a smoke run")
    p.add_argument("--no-write", action="store_true", help="print the section only")
    p.add_argument("--doc", type=Path, default=DOC, help="the markdown file to write the section into")
    args = p.parse_args()
    if args.quick:  # only the settings left at their defaults
        vars(args).update({k: v for k, v in QUICK.items() if getattr(args, k) == p.get_default(k)})
    if args.repeats < 2:
        p.error("--repeats must be at least 2 (the spread needs two ratios)")
    return args


def build_pair(name: str, mdlm_len: int) -> tuple[Teacher, MixtureStudent]:
    """Teacher and mixture student of a setup, both frozen (eval mode, no gradients)."""
    config, keep_weights, _ = SETUPS[name]
    section = teacher_section(load_config([CONFIGS / config]))
    if not keep_weights:
        drop_checkpoints(section.teacher, section.path)
    if name == "mdlm":
        section.teacher["init_args"]["seq_len"] = mdlm_len
    teacher, injection = build(section)
    injection = injection if injection is not None else default_injection(teacher)
    student = MixtureStudent.from_teacher(teacher.freeze(), injection)
    return teacher, student.freeze()


def paired_steps(teacher: Teacher, student: Teacher, batch: int, repeats: int, warmup: int) -> dict:
    """One step of each model per repeat, in alternating order (AB, BA, ...), after warm-up.

    Args:
        teacher: The teacher.
        student: Its mixture student.
        batch: Samples per step.
        repeats: Timed pairs of steps.
        warmup: Untimed steps of each model first.

    Returns:
        Median ms of each model, and the median, quartiles and range of the paired ratios
        student / teacher.
    """
    for model in (teacher, student):
        step_seconds(model, batch, repeats=1, warmup=warmup)
    t_ms, s_ms = [], []
    for i in range(repeats):
        order = [(teacher, t_ms), (student, s_ms)]
        for model, out in order if i % 2 == 0 else order[::-1]:
            out.append(1e3 * step_seconds(model, batch, repeats=1, warmup=0))
    ratios = [s / t for s, t in zip(s_ms, t_ms, strict=True)]
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    med = statistics.median
    values = (med(t_ms), med(s_ms), med(ratios), q1, q3, min(ratios), max(ratios))
    return dict(zip(("teacher_ms", "student_ms", "ratio", "q1", "q3", "min", "max"), values, strict=True))


def goal_met(r: dict) -> str:
    """``yes`` when the upper quartile of the ratios is within the goal, ``no`` when the lower one is
    above it, else ``within noise``."""
    return "yes" if r["q3"] <= GOAL else "no" if r["q1"] > GOAL else "within noise"


def chain_row(model: Teacher, batch: int, steps: int, seed: int, cached: bool) -> tuple[CallCount, float]:
    """Rows computed and reused, and wall seconds, of one ``sample_chain`` with (or without) caching."""
    model.step_rule = CachedAncestralStep() if cached else AncestralStep()
    calls = CallCount()
    torch.manual_seed(seed)
    start = time.perf_counter()
    sample_chain(model, batch, steps, calls=calls)
    return calls, time.perf_counter() - start


def cached_rows(pair: tuple[Teacher, Teacher], batch: int, steps: list[int], seed: int) -> list[dict]:
    """Cached against plain ancestral chains of teacher and student at each chain length, the two
    in alternating order (cached first at even rows).

    Args:
        pair: Teacher and student; their step rules are restored afterwards.
        batch: Samples per chain.
        steps: Chain lengths.
        seed: Seed of every chain (cached and plain draw alike).

    Returns:
        One row per model and length: rows ``computed`` and ``reused``, ``cached_s`` and ``plain_s``.
    """
    rows = []
    for name, model in zip(("teacher", "student"), pair, strict=True):
        shipped = model.step_rule
        for n in steps:
            order = (True, False) if len(rows) % 2 == 0 else (False, True)
            out = {cached: chain_row(model, batch, n, seed, cached) for cached in order}
            (calls, cached_s), (_, plain_s) = out[True], out[False]
            rows.append(
                {"model": name, "steps": n, "computed": calls.computed, "reused": calls.reused}
                | {"cached_s": cached_s, "plain_s": plain_s}
            )
        model.step_rule = shipped
    return rows


def describe(name: str, pair: tuple[Teacher, MixtureStudent]) -> str:
    """One line naming a setup's config, network, sizes, weights and injection."""
    teacher, student = pair
    config, _, weights = SETUPS[name]
    params = sum(p.numel() for p in teacher.parameters()) / 1e6
    extra = " (reduced: the paper's MDLM has 1024)" if name == "mdlm" else ""
    return (
        f"- {name}: `configs/{config}`, {type(teacher).__name__} ({params:.1f}M parameters, "
        f"{teacher.num_dims} tokens{extra}, {teacher.vocab_size} values), {weights}; student lambda "
        f"through {type(student.injection).__name__}, step rule {type(teacher.step_rule).__name__}."
    )


def latency_lines(steps: dict[str, dict], batches: dict[str, int]) -> list[str]:
    """The per-step table: medians, paired ratio with its spread, and the goal."""
    lines = [
        f"| setup | batch | teacher ms | student ms | ratio (median) | ratio IQR | ratio min-max | "
        f"goal <= {GOAL}x |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in steps.items():
        lines.append(
            f"| {name} | {batches[name]} | {r['teacher_ms']:.1f} | {r['student_ms']:.1f} | "
            f"{r['ratio']:.3f} | {r['q1']:.3f}-{r['q3']:.3f} | {r['min']:.3f}-{r['max']:.3f} | "
            f"{goal_met(r)} |"
        )
    return lines


def cache_lines(rows: list[dict]) -> list[str]:
    """The cached-sampler table: rows computed and reused, calls saved, wall time with and without."""
    lines = [
        "| model | steps | rows computed | rows reused | calls saved | cached s | uncached s | speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        saved = r["reused"] / (r["computed"] + r["reused"])
        lines.append(
            f"| {r['model']} | {r['steps']} | {r['computed']} | {r['reused']} | {100 * saved:.1f}% | "
            f"{r['cached_s']:.2f} | {r['plain_s']:.2f} | {r['plain_s'] / r['cached_s']:.2f}x |"
        )
    return lines


STEP_NOTE = (
    "Per step: one `Teacher.step` (one network call and the step rule, from the prior at t = 1 to t = 0.5, "
    "without guidance) timed by `mixdistill.evaluation.latency.step_seconds`; warm-up: {warmup} untimed "
    "step(s) of each model, then {repeats} repeats of one teacher and one student step in alternating order "
    "(AB, BA, ...). Ratio: student / teacher within each repeat; median, interquartile range and range. "
    "Goal: yes when the upper quartile is within it, no when the lower quartile is above it, else within "
    "noise."
)
CACHE_NOTE = (
    "Cached sampler: `sample_chain` on the {cache_setup} setup, {cache_batch} samples per chain, "
    "`CachedAncestralStep` (no network call for a row none of whose tokens changed since its last call) "
    "against `AncestralStep` (one call per row and step), same seed, one chain each (alternating which "
    "runs first); {exact}. Calls saved: reused / (computed + reused) rows; the student draws a new lambda "
    "at each call."
)
EXACT = {
    "text": "its network is time-conditioned, so a reused row keeps the logits of its last call's time "
    "(an approximation; the counts do not depend on it)",
    "mdlm": "its DiT ignores time, so a reused row's logits are exact",
}


def render(args: argparse.Namespace, setups: list[str], steps: dict, batches: dict, rows: list[dict]) -> str:
    """The docs section: command and machine, setups, the per-step table, the cached-sampler table."""
    command = shlex.join(["python", "bench/sampler_overhead.py", *sys.argv[1:]])
    smoke = ": a smoke run, the figures mean nothing" if args.quick else ""
    machine = (
        f"{os.cpu_count()} CPU cores, torch {torch.__version__}, torch threads {torch.get_num_threads()}"
    )
    return "\n".join(
        [HEADING, "", f"`{command}` ({machine}){smoke}.", "", *setups, ""]
        + [STEP_NOTE.format(**vars(args)), "", *latency_lines(steps, batches), ""]
        + [CACHE_NOTE.format(exact=EXACT[args.cache_setup], **vars(args)), "", *cache_lines(rows)]
    )


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = {"text": args.text_batch, "maskgit": args.maskgit_batch, "mdlm": args.mdlm_batch}
    names = list(dict.fromkeys([*args.setups, args.cache_setup]))
    setups, steps, rows = [], {}, []
    for name in names:  # one pair at a time in memory
        torch.manual_seed(args.seed)
        pair = build_pair(name, args.mdlm_len)
        setups.append(describe(name, pair))
        if name in args.setups:
            steps[name] = paired_steps(*pair, batches[name], args.repeats, args.warmup)
            print(name, {k: round(v, 4) for k, v in steps[name].items()}, flush=True)
        if name == args.cache_setup:
            rows = cached_rows(pair, args.cache_batch, args.cache_steps, args.seed)
        del pair
    text = render(args, setups, steps, batches, rows)
    if not args.no_write:
        write_section(text, args.doc)
    print(text)


if __name__ == "__main__":
    main()
