"""Benchmark one training step's Di4C loss: mixdistill's batched losses vs the looped research form.

For three setups shaped like the paper's (scaled down so that a CPU runs them in seconds) and a
latent batch of n = 16 and 32, three implementations get the SAME inputs (student logits at t,
teacher logits at x_t, student logits at u, the sampled consistency targets, x0 and alpha(t)) and
compute distillation + data + consistency loss: ``di4c_loss_terms`` as ``Di4CObjective`` uses it,
the composition of the per-term log-probability functions, and the looped research formulation
(bench/looped_reference.py). Against the looped one we compare

* the loss value (relative difference, must be <= 1e-5; the script fails otherwise) and the
  gradient w.r.t. the logits,
* the wall time of forward + backward (after warm-up; implementations alternate, paired ratios),
* the peak memory of forward + backward above what was allocated before it (inputs excluded,
  the gradient of the logits included), read from the PyTorch profiler's CPU allocator trace
  ("Total Allocated" running counter of every allocation/free), and cross-checked in a fresh
  subprocess by the rise of the process's peak resident set size (VmHWM, reset through
  /proc/self/clear_refs) with glibc's mmap threshold pinned low so that freed buffers go back to
  the OS at once.

Run ``python bench/loss_bench.py`` (or ``make bench``); it rewrites the section
"## Loss: batched vs looped research formulation" of docs/benchmarks.md and keeps the others.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from looped_reference import looped_reference_loss  # noqa: E402
from report import DOC, write_section  # noqa: E402

from mixdistill.di4c.fused_losses import di4c_loss_terms  # noqa: E402
from mixdistill.di4c.losses import (  # noqa: E402
    consistency_loss,
    data_loss,
    distillation_loss,
    mixture_log_marginal,
)
from mixdistill.sampling.categorical import sample_from_logits  # noqa: E402

SECTION = "## Loss: batched vs looped research formulation"
COMMAND = "python bench/loss_bench.py"


@dataclass(frozen=True)
class Setup:
    name: str
    paper: str  # the paper's shapes this is scaled down from
    dims: int
    states: int
    batch: Callable[[int], int]  # examples per step for a latent batch n

    def shapes(self, n: int) -> tuple[int, int, int, int]:
        return self.batch(n), n, self.dims, self.states


SETUPS = [
    # tau-LDR CIFAR-10: D = 3*32*32, S = 256, B*n capped at 128 rows (8 images at n = 16).
    Setup("tau-LDR-like", "D=3072, S=256, B=128/n", 3 * 16 * 16, 256, lambda n: 128 // n),
    # MaskGIT ImageNet-256: D = 16*16 tokens, S = 1024 codes + mask, 2 images per GPU.
    Setup("MaskGIT-like", "D=256, S=1025, B=2", 256, 1025, lambda n: 2),
    # SDTT/MDLM OpenWebText: D = 1024 tokens, S = 50258, 1 sequence per GPU.
    Setup("SDTT-like", "D=1024, S=50258, B=1", 256, 4096, lambda n: 1),
]
LATENTS = (16, 32)


def make_inputs(setup: Setup, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random but realistic inputs: peaked logits, targets sampled from the student at u."""
    b, n, d, s = setup.shapes(n)
    g = torch.Generator().manual_seed(seed)
    logits_t = (3.0 * torch.randn(b * n, d, s, generator=g)).requires_grad_(True)
    teacher_logits = 3.0 * torch.randn(b, d, s, generator=g)
    # The student at u: close to the student at t (a small time step), detached.
    logits_u = logits_t.detach() + 0.5 * torch.randn(b * n, d, s, generator=g)
    targets = sample_from_logits(logits_u.view(b, n, d, s), generator=g)  # (B, n, D)
    x0 = torch.randint(0, s, (b, d), generator=g)
    t = torch.rand(b, generator=g)
    alpha = torch.sigmoid(20 * (t - 0.5))
    return dict(
        logits_t=logits_t,
        teacher_logits=teacher_logits,
        logits_u=logits_u,
        targets=targets,
        x0=x0,
        corr_weight=alpha,
    )


def batched_loss(
    logits_t: torch.Tensor,
    teacher_logits: torch.Tensor,
    logits_u: torch.Tensor,
    targets: torch.Tensor,
    x0: torch.Tensor,
    corr_weight: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss part of ``Di4CObjective.forward`` (all three terms, unit weights) from raw logits.

    The same calls as the objective: the targets under ``no_grad`` (teacher log-probabilities; the
    average of the student distributions at u, as ``StudentAtU`` builds it), then
    ``di4c_loss_terms`` on the student's float32 logits at t.
    """
    b, n, d = targets.shape
    with torch.no_grad():
        teacher_logp = teacher_logits.float().log_softmax(-1)
        target_lm = mixture_log_marginal(logits_u.float().log_softmax(-1).view(b, n, d, -1))
    logits = logits_t.float().view(b, n, d, -1)
    distil, consis, data = di4c_loss_terms(logits, teacher_logp, x0, corr_weight, targets, target_lm)
    per_example = distil + consis + data
    return per_example.mean(), per_example


def composed_loss(
    logits_t: torch.Tensor,
    teacher_logits: torch.Tensor,
    logits_u: torch.Tensor,
    targets: torch.Tensor,
    x0: torch.Tensor,
    corr_weight: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same loss composed from the log-probability functions of ``mixdistill.di4c.losses``.

    ``log_softmax``, then ``mixture_log_marginal``, ``distillation_loss``, ``consistency_loss`` and
    ``data_loss`` sharing one mixture marginal (the objective's composition before
    ``di4c_loss_terms``); reported for reference.
    """
    b, n, d = targets.shape
    with torch.no_grad():
        teacher_logp = teacher_logits.float().log_softmax(-1)
        target_lm = mixture_log_marginal(logits_u.float().log_softmax(-1).view(b, n, d, -1))
    logp = logits_t.float().log_softmax(-1).view(b, n, d, -1)
    log_marginal = mixture_log_marginal(logp)
    distil = distillation_loss(teacher_logp, logp)
    consis = consistency_loss(logp, targets, target_lm, True, log_marginal)
    data = data_loss(logp, x0, teacher_logp, corr_weight, True, log_marginal)
    per_example = distil + consis + data
    return per_example.mean(), per_example


IMPLS = {"batched": batched_loss, "composed": composed_loss, "looped": looped_reference_loss}


def step(impl: Callable, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    inputs["logits_t"].grad = None
    loss, _ = impl(**inputs)
    loss.backward()
    return loss.detach()


def time_ms(inputs: dict[str, torch.Tensor], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Wall times (ms) of forward + backward per implementation, ``repeats`` each.

    The implementations alternate within each repeat, so that repeat ``i`` of each saw about the
    same machine load (this machine may be shared): compare them pairwise.
    """
    for _ in range(warmup):
        for impl in IMPLS.values():
            step(impl, inputs)
    times: dict[str, list[float]] = {name: [] for name in IMPLS}
    for _ in range(repeats):
        for name, impl in IMPLS.items():
            inputs["logits_t"].grad = None
            gc.collect()
            start = time.perf_counter()
            step(impl, inputs)
            times[name].append(time.perf_counter() - start)
    inputs["logits_t"].grad = None
    return {name: [1e3 * x for x in t] for name, t in times.items()}


def profiler_peak_bytes(impl: Callable, inputs: dict[str, torch.Tensor]) -> int:
    """Peak of the CPU allocator's running total during one forward + backward of ``impl`` on
    ``inputs``, above the inputs (see ``peak_bytes_of``)."""
    inputs["logits_t"].grad = None
    return peak_bytes_of(lambda: step(impl, inputs))


def peak_bytes_of(run: Callable[[], object]) -> int:
    """Peak of the CPU allocator's running total while ``run()`` runs, above what was live before.

    The profiler's memory events carry "Total Allocated", the running sum of all allocations
    minus frees, so its maximum over the call, less its value at the start, is the peak above
    everything that was live before it.
    """
    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    mem = sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"])
    if not mem:
        return 0
    # The counter is process-wide and only moves while a profiler records, so measure from the
    # value it had just before the first event of this step.
    base = mem[0]["args"]["Total Allocated"] - mem[0]["args"]["Bytes"]
    return max(0, *(e["args"]["Total Allocated"] - base for e in mem))


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_child(setup_name: str, n: int, impl_name: str) -> None:
    """Subprocess mode: print the rise of peak RSS (bytes) over one forward + backward."""
    setup = next(s for s in SETUPS if s.name == setup_name)
    inputs = make_inputs(setup, n)
    impl = IMPLS[impl_name]
    step(impl, inputs)  # warm-up: lazy initialisation, thread pools
    inputs["logits_t"].grad = None
    gc.collect()
    before = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    step(impl, inputs)
    print(json.dumps({"rss_peak_bytes": 1024 * (_status_kb("VmHWM") - before)}))


def rss_peak_bytes(setup: Setup, n: int, impl_name: str) -> int | None:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    cmd = [sys.executable, __file__, "--rss-child", setup.name, str(n), impl_name]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    except (subprocess.CalledProcessError, OSError):
        return None
    return int(json.loads(out.strip().splitlines()[-1])["rss_peak_bytes"])


def compare(setup: Setup, n: int, warmup: int, repeats: int, rss: bool) -> list[dict]:
    """One row per implementation; differences are relative to the looped reference."""
    inputs = make_inputs(setup, n)
    values, grads = {}, {}
    for name, impl in IMPLS.items():
        inputs["logits_t"].grad = None
        loss, per_example = impl(**inputs)
        loss.backward()
        values[name] = torch.cat([loss.detach().view(1), per_example.detach()])
        grads[name] = inputs["logits_t"].grad
    inputs["logits_t"].grad = None
    want, want_grad = values["looped"], grads["looped"]
    rows = []
    for name in IMPLS:
        rel = ((values[name] - want).abs() / want.abs()).max().item()
        grad_rel = ((grads[name] - want_grad).abs().max() / want_grad.abs().max()).item()
        row = dict(setup=setup.name, paper=setup.paper, shapes=setup.shapes(n), n=n, impl=name)
        rows.append(dict(row, rel_diff=rel, grad_rel_diff=grad_rel))
    del grads, values, want_grad
    ms = time_ms(inputs, warmup, repeats)
    for row, (name, impl) in zip(rows, IMPLS.items(), strict=True):
        row["ms"] = statistics.median(ms[name])
        row["time_ratio"] = statistics.median(a / b for a, b in zip(ms[name], ms["looped"], strict=True))
        row["mem"] = profiler_peak_bytes(impl, inputs)
        row["rss"] = rss_peak_bytes(setup, n, name) if rss else None
    for row in rows:
        ref = next(r for r in rows if r["impl"] == "looped")
        row["mem_ratio"] = row["mem"] / ref["mem"]
        row["rss_ratio"] = None if row["rss"] is None or not ref["rss"] else row["rss"] / ref["rss"]
    return rows


def _mb(x: int | None) -> str:
    return "n/a" if x is None else f"{x / 2**20:.0f}"


def _ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


LABELS = {
    "looped": "looped reference",
    "batched": "**di4c_loss_terms** (Di4CObjective)",
    "composed": "log-prob functions composed",
}


def render(rows: list[dict], warmup: int, repeats: int) -> str:
    lines = [
        SECTION,
        "",
        "One training step's loss (distillation + data + consistency, forward + backward) from the same",
        "inputs: student logits at t for B*n rows (float32, requires grad), teacher logits at x_t,",
        "student logits at u for the n consistency rows (detached), the sampled consistency targets,",
        "x0 and alpha(t). The networks are not part of the measurement. Implementations:",
        "",
        "* **looped reference**: `bench/looped_reference.py`, a port of the research code's formulation",
        "  (softmax and log_softmax both materialised, teacher repeated n times for the per-lambda KL,",
        "  a Python loop over the latent batch for the consistency correlation term);",
        "* **di4c_loss_terms**: `mixdistill.di4c.fused_losses.di4c_loss_terms`, exactly as",
        "  `Di4CObjective.forward` calls it (one autograd function from the logits, in-place backward);",
        "* **log-prob functions composed**: `log_softmax` then `mixture_log_marginal`,",
        "  `distillation_loss`, `consistency_loss`, `data_loss` (the public per-term functions).",
        "",
        "Shapes are (B, n, D, S), scaled down from the paper's (in brackets) for a CPU. Ratios are",
        "implementation / looped reference (targets for di4c_loss_terms: time <= 0.5, memory <= 0.5).",
        "",
        "| setup (paper) | (B, n, D, S) | implementation | rel. diff loss / grad | median ms | "
        "time ratio | peak MB | mem ratio | RSS peak MB | RSS ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = "-" if r["impl"] == "looped" else f"{r['rel_diff']:.1e} / {r['grad_rel_diff']:.1e}"
        lines.append(
            f"| {r['setup']} ({r['paper']}) | {tuple(r['shapes'])} | {LABELS[r['impl']]} | {diff} | "
            f"{r['ms']:.0f} | {r['time_ratio']:.2f} | {_mb(r['mem'])} | {r['mem_ratio']:.2f} | "
            f"{_mb(r['rss'])} | {_ratio(r['rss_ratio'])} |"
        )
    threads = torch.get_num_threads()
    lines += [
        "",
        '* "rel. diff": largest relative difference from the looped reference of the mean loss and',
        "  the per-example losses / max |grad - grad_ref| / max |grad_ref| for the gradient w.r.t. the",
        "  student logits (float32 throughout).",
        f"* Time: median of {repeats} forward + backward passes after {warmup} warm-up pass(es). The",
        "  implementations alternate within each repeat (the machine may be shared), and the time",
        "  ratio is the median over repeats of the paired ratio implementation / looped.",
        '* Peak MB: maximum of the PyTorch profiler\'s CPU allocator counter ("Total Allocated" of its',
        "  `[memory]` events, `profile_memory=True`) during one forward + backward, less its value at",
        "  the start: the peak above the inputs, counting the gradient of the logits. RSS peak MB",
        "  cross-checks it in a fresh subprocess per case: the rise of VmHWM (reset through",
        "  /proc/self/clear_refs) over VmRSS just before the step, with `MALLOC_MMAP_THRESHOLD_=65536`",
        "  so that freed buffers go back to the OS at once.",
        f"* Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({threads} threads), Python {platform.python_version()}.",
        f"* Reproduce: `{COMMAND}` (also `make bench`); `--no-rss` skips the subprocess cross-check.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-rss", action="store_true", help="skip the subprocess RSS cross-check")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--rss-child", nargs=3, metavar=("SETUP", "N", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]), args.rss_child[2])
        return
    rows = []
    for setup in SETUPS:
        for n in LATENTS:
            for row in compare(setup, n, args.warmup, args.repeats, not args.no_rss):
                rows.append(row)
                print(json.dumps(row), flush=True)
    bad = [r for r in rows if r["rel_diff"] > 1e-5]
    text = render(rows, args.warmup, args.repeats)
    print(text)
    if not args.no_write:
        write_section(text)
        print(f"wrote {DOC.relative_to(ROOT)}")
    if bad:
        raise SystemExit(f"values differ by more than 1e-5: {[(r['setup'], r['n']) for r in bad]}")


if __name__ == "__main__":
    main()
