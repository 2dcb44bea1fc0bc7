"""The whole Di4C training step against a port of the research code's step, on real networks.

One step = teacher pass, student over the latent batch, consistency target, loss, backward, for the
MDLM DiT, the MaskGIT ViT and the tau-LDR U-Net at CPU-scaled sizes (random weights, dropout 0, float32):

* **mixdistill**: ``Di4CObjective.forward`` + backward (one teacher pass reused for the step, targets
  under ``no_grad`` with the student in eval mode, the fused loss over sequence tiles);
* **research port**: the structure of the authors' step, written from METHOD.md's description of it:
  the teacher run twice on ``x_t`` (once for the targets of distillation and data, once inside its
  step), the student at ``u`` run *with* an autograd graph that is kept to the end of the step and
  detached for the loss, and ``bench/looped_reference.py``'s loss (softmax and log-softmax both
  materialised, the teacher repeated n times, a Python loop over the latent batch); tau-LDR's
  output head as tau-LDR computes it (``tauldr_head``).

Both consume the random stream in the same order (times, corruption, lambdas at ``t``, teacher step,
lambdas at ``u``, the targets drawn with ``sample_from_logits``) and every example takes all three
terms with weight 1, so for one seed both compute the same loss: the table states the difference.
Time: median over alternated repeats of the paired ratio. Memory: the PyTorch profiler's allocator
peak of one step above what was live before it (``bench/loss_bench.py``'s method).

    python bench/step_bench.py [--repeats 7] [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from looped_reference import looped_reference_loss  # noqa: E402
from loss_bench import peak_bytes_of  # noqa: E402
from report import write_section  # noqa: E402

from mixdistill.di4c.objective import Di4CObjective  # noqa: E402
from mixdistill.di4c.times import MaskGITTimes, SDTTTimes, TauLDRTimes, TimeDraw, TimeSampler  # noqa: E402
from mixdistill.di4c.weights import ConstantWeight, SigmoidWeight  # noqa: E402
from mixdistill.injection import ExtraTokenInjection, ResBlockInjection  # noqa: E402
from mixdistill.module import DistillModule  # noqa: E402
from mixdistill.nets.dit import MDLMDiT  # noqa: E402
from mixdistill.nets.maskgit_vit import MaskGITSizes  # noqa: E402
from mixdistill.nets.tauldr_unet import TauLDRUNet  # noqa: E402
from mixdistill.processes.gaussian import GaussianRateProcess  # noqa: E402
from mixdistill.sampling.categorical import sample_from_logits  # noqa: E402
from mixdistill.teachers.maskgit import MaskGITTeacher  # noqa: E402
from mixdistill.teachers.mdlm import MDLMTeacher  # noqa: E402
from mixdistill.teachers.tauldr import TauLDRTeacher  # noqa: E402

SECTION = "## Whole training step: mixdistill against the research step"


class AllTerms(TimeSampler):
    """``base``'s times with every term on every example at weight 1 (the research step's sum)."""

    def __init__(self, base: TimeSampler) -> None:
        self.base = base

    def draw(self, batch_size: int, device=None) -> TimeDraw:
        d = self.base.draw(batch_size, device)
        one = torch.ones_like(d.t)
        return TimeDraw(d.t, d.u, one, one, one)


def mdlm(dims: int, vocab: int, latents: int) -> DistillModule:
    """MDLM DiT (128 wide, 2 blocks, 4 heads), SDTT times, lambda as an extra token."""
    dit = MDLMDiT(vocab + 1, 128, 64, 2, 4, model_length=dims, dropout=0.0)
    teacher = MDLMTeacher(backbone=dit, vocab_size=vocab, seq_len=dims)
    times = AllTerms(SDTTTimes(p_distil=0.0, distil_max=0.02, step=1 / 64))
    objective = Di4CObjective(times, SigmoidWeight(scale=0.1), latents=latents)
    return DistillModule(teacher, objective, ExtraTokenInjection("backbone", 128, 64))


def maskgit(grid: int, codes: int, latents: int) -> DistillModule:
    """MaskGIT ViT (128 wide, 2 blocks), MaskGIT times, unguided teacher step, lambda as a token."""
    sizes = MaskGITSizes(codes, 10, grid, 128, 2, 4, 512, dropout=0.0)
    teacher = MaskGITTeacher(sizes=sizes, guide_consistency=False)
    times = AllTerms(MaskGITTimes(step=0.05, distil_below=0.0, distil_weight=1.0))
    objective = Di4CObjective(times, SigmoidWeight(scale=0.1, sharpness=20.0, center=0.5), latents=latents)
    return DistillModule(teacher, objective, ExtraTokenInjection("net", 128, 64))


def tauldr(side: int, states: int, latents: int) -> DistillModule:
    """tau-LDR U-Net (32 channels, multipliers 1 and 2, one ResBlock per level) on ``side x side``
    RGB images of ``states`` values, the paper's Gaussian rate and times, lambda through the ResBlocks.
    """
    process = GaussianRateProcess(num_states=states, rate_sigma=6.0, q_sigma=2.0 * states)
    net = TauLDRUNet(3, 32, (1, 2), 1, dropout=0.0, time_embed_dim=32, data_max=states - 1)
    teacher = TauLDRTeacher(process, (3, side, side), net)
    objective = Di4CObjective(AllTerms(TauLDRTimes()), ConstantWeight(), latents=latents)
    return DistillModule(teacher, objective, ResBlockInjection(embed_dim=32))


def tauldr_head(out: torch.Tensor, num_states: int, fix_logistic: bool = False) -> torch.Tensor:
    """tau-LDR's own output head, as its code computes it: both edges' log-CDFs for every bin and
    autograd through the elementwise chain (mixdistill's head shares the edges and saves only the
    means and scales). Same values; used by the research port."""
    C = out.shape[1] // 2
    mu, log_scale = out[:, :C].unsqueeze(-1), out[:, C:].unsqueeze(-1)
    inv_scale = torch.exp(-(log_scale - 2.0))
    width = 2.0 / num_states
    centres = torch.linspace(-1.0 + width / 2, 1.0 - width / 2, num_states, device=out.device)
    log_left = F.logsigmoid((centres - width / 2 - mu) * inv_scale)
    log_right = F.logsigmoid((centres + width / 2 - mu) * inv_scale)
    return log_right + torch.log1p(-torch.exp(log_left - log_right) + 1e-6)


def research_step(module: DistillModule, x0: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    """The research code's step structure (see the module docstring): the loss, graphs kept."""
    with mock.patch("mixdistill.teachers.tauldr.truncated_logistic_logits", tauldr_head):
        return _research_step(module, x0, cond)


def _research_step(module: DistillModule, x0: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    teacher, student, obj = module.teacher, module.student, module.objective
    n, B = obj.latents, x0.shape[0]
    draw = obj.times.draw(B, x0.device)
    x_t = teacher.process.corrupt(x0, draw.t)
    rep = None if cond is None else cond.repeat_interleave(n, 0)
    lam = student.sample_latent(B * n, device=x0.device)
    logits_t = student.denoise(x_t.repeat_interleave(n, 0), draw.t.repeat_interleave(n), rep, lam)
    teacher_logits = teacher.denoise(x_t, draw.t, cond).detach()  # first teacher pass
    x_u = teacher.consistency_step(x_t, draw.t, draw.u, cond, n)  # second teacher pass, (B, n, D)
    lam_u = student.sample_latent(B * n, device=x0.device)
    logits_u_graph = student.denoise(x_u.flatten(0, 1), draw.u.repeat_interleave(n), rep, lam_u)
    logits_u = logits_u_graph.detach()
    targets = sample_from_logits(logits_u.view(B, n, *logits_u.shape[1:]))  # (B, n, D)
    loss, _ = looped_reference_loss(
        logits_t.float(), teacher_logits.float(), logits_u.float(), targets, x0, obj.corr_weight(draw.t)
    )
    module._keep = logits_u_graph  # the research step holds this graph until the step ends
    return loss


def ours_step(module: DistillModule, x0: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    """``Di4CObjective.forward``'s loss, as ``DistillModule.training_step`` computes it."""
    return module.objective(module.teacher, module.student, x0, cond)["loss"]


def network_passes(module: DistillModule, x0: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    """Only the network work any implementation of the step must do: the student over the latent
    batch at ``t`` with a graph (and, through ``run``, its backward) and at ``u`` without, here on
    ``x_t`` again (the same shapes), with no loss, target or teacher. Its time over the research
    step's is the lowest time ratio these networks allow."""
    teacher, student, obj = module.teacher, module.student, module.objective
    n, B = obj.latents, x0.shape[0]
    draw = obj.times.draw(B, x0.device)
    x_rep = teacher.process.corrupt(x0, draw.t).repeat_interleave(n, 0)
    t_rep = draw.t.repeat_interleave(n)
    rep = None if cond is None else cond.repeat_interleave(n, 0)
    logits = student.denoise(x_rep, t_rep, rep, student.sample_latent(B * n, device=x0.device))
    with torch.no_grad():
        student.eval()
        student.denoise(x_rep, t_rep, rep, student.sample_latent(B * n, device=x0.device))
        student.train()
    return logits.float().mean()


IMPLS: dict[str, Callable] = {"mixdistill": ours_step, "research port": research_step}
TIMED: dict[str, Callable] = {**IMPLS, "network passes alone": network_passes}


def run(impl: Callable, module: DistillModule, x0, cond, seed: int) -> float:
    """One step (forward + backward) from ``seed``; returns the loss."""
    torch.manual_seed(seed)
    module.student.zero_grad(set_to_none=True)
    loss = impl(module, x0, cond)
    loss.backward()
    module._keep = None
    return float(loss)


def time_pairs(module: DistillModule, x0, cond, warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per step of each implementation, alternating which goes first in each repeat."""
    for k in range(warmup):
        for impl in TIMED.values():
            run(impl, module, x0, cond, 1000 + k)
    out: dict[str, list[float]] = {name: [] for name in TIMED}
    for r in range(repeats):
        names = list(TIMED) if r % 2 == 0 else list(TIMED)[::-1]
        for name in names:
            start = time.perf_counter()
            run(TIMED[name], module, x0, cond, r)
            out[name].append(time.perf_counter() - start)
    return out


def peak_bytes(impl: Callable, module: DistillModule, x0, cond) -> int:
    """The allocator's peak during one step above what was live before it (gradients set to None)."""
    return peak_bytes_of(lambda: run(impl, module, x0, cond, 0))


def compare(name: str, module: DistillModule, b: int, args: argparse.Namespace) -> dict:
    """Losses for the same seeds, paired times and peaks of both implementations on one setup."""
    torch.manual_seed(0)
    teacher = module.teacher
    x0 = torch.randint(0, teacher.process.vocab_size, (b, teacher.num_dims))
    cond = torch.randint(0, teacher.num_classes, (b,)) if teacher.num_classes else None
    losses = {impl: [run(IMPLS[impl], module, x0, cond, 50 + s) for s in range(3)] for impl in IMPLS}
    rel = max(abs(a - r) / abs(r) for a, r in zip(losses["mixdistill"], losses["research port"], strict=True))
    secs = time_pairs(module, x0, cond, args.warmup, args.repeats)

    def to_research(name: str) -> list[float]:
        return [a / r for a, r in zip(secs[name], secs["research port"], strict=True)]

    ratios, floors = to_research("mixdistill"), to_research("network passes alone")
    peaks = {impl: peak_bytes(IMPLS[impl], module, x0, cond) for impl in IMPLS}
    return dict(
        name=name,
        batch=b,
        rel=rel,
        loss=losses["mixdistill"][0],
        ms={k: 1e3 * statistics.median(v) for k, v in secs.items()},
        ratio=statistics.median(ratios),
        ratio_range=(min(ratios), max(ratios)),
        floor=statistics.median(floors),
        floor_range=(min(floors), max(floors)),
        peak=peaks,
        mem_ratio=peaks["mixdistill"] / max(peaks["research port"], 1),
    )


def setups(quick: bool) -> list[tuple[str, Callable[[], DistillModule], int]]:
    """(description, builder, batch) of each measured setup."""
    if quick:
        return [
            ("MDLM DiT, D=32, S=256, n=4", lambda: mdlm(32, 256, 4), 2),
            ("MaskGIT ViT, D=16, S=64, n=4", lambda: maskgit(4, 64, 4), 2),
            ("tau-LDR U-Net, D=3x8x8, S=16, n=4", lambda: tauldr(8, 16, 4), 2),
        ]
    return [
        ("MDLM DiT, D=128, S=4096, n=16", lambda: mdlm(128, 4096, 16), 2),
        ("MaskGIT ViT, D=64, S=1024, n=32", lambda: maskgit(8, 1024, 32), 2),
        ("tau-LDR U-Net, D=3x16x16, S=256, n=16", lambda: tauldr(16, 256, 16), 2),
    ]


def render(rows: list[dict], args: argparse.Namespace, command: str) -> str:
    """The section: one row per setup and implementation, the goal beside each ratio."""
    lines = [
        SECTION,
        "",
        f"`{command}` ({os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, float32): one training step (forward + backward) with real networks at CPU size, "
        "128 wide, 2 blocks, random weights, dropout 0. mixdistill is `Di4CObjective.forward`; the research "
        "port runs the teacher twice, keeps the graph of the student at u and uses the looped loss "
        "(bench/step_bench.py's docstring). Every example takes distillation, consistency and data "
        "terms with weight 1. Goal: time ratio <= 0.5 and memory ratio <= 0.5, equal losses.",
        "",
        "| setup | B | implementation | loss (seed 50) | max rel. loss diff (3 seeds) | median ms "
        "| time ratio (range) | peak MB | memory ratio | goal |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ok = r["ratio"] <= 0.5 and r["mem_ratio"] <= 0.5 and r["rel"] < 1e-4
        lo, hi = r["ratio_range"]
        lines += [
            f"| {r['name']} | {r['batch']} | **mixdistill** | {r['loss']:.4f} | {r['rel']:.1e} | "
            f"{r['ms']['mixdistill']:.0f} | {r['ratio']:.2f} ({lo:.2f}-{hi:.2f}) | "
            f"{r['peak']['mixdistill'] / 2**20:.1f} | {r['mem_ratio']:.2f} | {'met' if ok else 'not met'} |",
            f"| {r['name']} | {r['batch']} | research port | - | - | {r['ms']['research port']:.0f} | 1.00 | "
            f"{r['peak']['research port'] / 2**20:.1f} | 1.00 | |",
            f"| {r['name']} | {r['batch']} | network passes alone | - | - | "
            f"{r['ms']['network passes alone']:.0f} | {r['floor']:.2f} ({r['floor_range'][0]:.2f}-"
            f"{r['floor_range'][1]:.2f}) | - | - | |",
        ]
    lines += [
        "",
        f"Time: median of {args.repeats} repeats after {args.warmup} warm-up step(s) each; the three "
        "alternate their order, and a ratio is the median (and range) of the paired ratios to the research "
        "port. *Network passes alone*: the student over the latent batch at t (forward and backward) and "
        "at u (forward), nothing else: the work every implementation of the step does, so its ratio is "
        "the lowest these networks allow; where it is above 0.5 the time goal cannot be met by the step's "
        "structure, only by cheaper networks.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run (writes nothing)")
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    args = parser.parse_args()
    rows = []
    for name, build, b in setups(args.quick):
        torch.manual_seed(0)
        row = compare(name, build(), b, args)
        print(row, flush=True)
        rows.append(row)
    command = "python bench/step_bench.py" + (f" --repeats {args.repeats}" if args.repeats != 7 else "")
    text = render(rows, args, command)
    print(text)
    if not (args.quick or args.no_write):
        write_section(text)


if __name__ == "__main__":
    main()
