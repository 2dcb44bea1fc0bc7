"""One-GPU throughput of MDLM-small under Di4C: bf16 training steps (with MFU) and sampling speed.

Part ``train``: one Di4C step as ``mixdistill fit`` takes it with configs/mdlm_owt.yaml
(``Di4CObjective.forward`` under bf16 autocast over fp32 weights, backward, gradient clipping at 1,
AdamW) for MDLM small (DiT 768 x 12 blocks x 12 heads, vocabulary 50257 + mask, 1024 tokens, lambda
as an extra token, SDTT gating with p_distil 0.3, n = 16 latents) with random weights (no checkpoint
is needed) and random tokens, at batches 1, 2, 4, ... up to the first that runs out of memory (each
batch is first tried on the gating's worst case, every example on the consistency branch).
Reported: steps/s, data tokens/s and model FLOP utilisation (MFU).

MFU: model FLOPs per step over the GPU's peak dense bf16 FLOP/s (``--peak-tflops``, 989 for an
H100/H200 SXM). Model FLOPs are counted at every DiT call of the timed steps (a forward pre-hook):
a forward over R rows of T tokens costs ``2 R (T W_blocks + L W_out) + 4 R T^2 H blocks`` (the weight
matmuls of every token, the output layer on the L data tokens, attention's two T x T products),
a forward + backward three times that. These calls are the student with gradients over ``B n`` rows
(L + 1 tokens: the lambda token), the teacher without them at ``x_t`` (B rows) and the student
without them at ``x_u`` for the consistency target (``B_c n`` rows, B_c the consistency examples).
Embedding lookups, per-row layers (adaLN, sigma and lambda embeddings), softmaxes and the losses'
elementwise work are not counted, nor flash attention's recomputation.

Part ``sample``: ``sample_chain`` with the model's own step rule (MDLM's cached ancestral step) for
the teacher and the student, ``--sample-steps`` steps at batch ``--sample-batch``, under bf16
autocast and in float32: generated tokens/s.

    python bench/gpu_step.py --out runs/gpu.json      # both parts; bench/gpu.sh runs them with timeouts
    python bench/gpu_step.py --device cpu --quick     # tiny sizes: a CPU smoke run
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mixdistill.callbacks.activation_checkpointing import checkpoint_modules
from mixdistill.di4c.objective import Di4CObjective
from mixdistill.di4c.times import SDTTTimes
from mixdistill.di4c.weights import SigmoidWeight
from mixdistill.injection import ExtraTokenInjection
from mixdistill.module import DistillModule
from mixdistill.nets.dit import MDLMDiT
from mixdistill.sampling.loop import CallCount, sample_chain
from mixdistill.teachers.mdlm import MDLMTeacher


@dataclass(frozen=True)
class Sizes:
    """Model and objective sizes: MDLM small (configs/mdlm_owt.yaml) or a tiny CPU stand-in."""

    vocab: int = 50257  # data tokens S; the DiT has S + 1 rows (the mask id)
    hidden: int = 768
    blocks: int = 12
    heads: int = 12
    cond: int = 128
    length: int = 1024
    latents: int = 16
    lam_hidden: int = 512
    lam_freq: int = 128


TINY = Sizes(
    vocab=257, hidden=32, blocks=2, heads=2, cond=16, length=16, latents=4, lam_hidden=32, lam_freq=16
)


def build(sizes: Sizes, device: torch.device) -> DistillModule:
    """The DistillModule of configs/mdlm_owt.yaml at ``sizes``, random weights, on ``device``."""
    with torch.device(device):
        dit = MDLMDiT(sizes.vocab + 1, sizes.hidden, sizes.cond, sizes.blocks, sizes.heads, sizes.length)
        teacher = MDLMTeacher(backbone=dit, vocab_size=sizes.vocab, seq_len=sizes.length)
        times = SDTTTimes(p_distil=0.3, distil_max=0.02, step=1 / 1024)
        objective = Di4CObjective(times, SigmoidWeight(scale=0.1), latents=sizes.latents)
        inject = ExtraTokenInjection("backbone", sizes.lam_hidden, sizes.lam_freq)
        # .to: a LightningModule's .device is only updated by a move, not by the device context.
        return DistillModule(teacher, objective, inject).to(device)


def with_checkpointing(module: DistillModule, on: bool) -> DistillModule:
    """The shipped config's ``ActivationCheckpointing([DiTBlock])`` on the student, if ``on``.

    MFU counts model FLOPs only: the recomputed block forwards are not added (the hook sits on the
    whole DiT's call), so checkpointing shows up as a lower MFU at a larger feasible batch.
    """
    if on:
        checkpoint_modules(module.student, ["DiTBlock"])
    return module


class FlopCounter:
    """Model FLOPs of every ``MDLMDiT`` call (see the module docstring), summed in ``total``."""

    def __init__(self, dit: MDLMDiT) -> None:
        mats = [(b.attn_qkv, b.attn_out, b.mlp[0], b.mlp[2]) for b in dit.blocks]
        self.block_weights = sum(m.weight.numel() for block in mats for m in block)  # per block, summed
        self.out_weights = dit.output_layer.linear.weight.numel()
        self.hidden, self.blocks, self.total = dit.latent_width, len(mats), 0.0

    def forward_flops(self, rows: int, length: int, tokens: int) -> float:
        """FLOPs of one forward over ``rows`` rows of ``tokens`` tokens (``length`` data tokens)."""
        matmuls = 2 * rows * (tokens * self.block_weights + length * self.out_weights)
        return matmuls + 4 * rows * tokens**2 * self.hidden * self.blocks

    def __call__(self, module: MDLMDiT, args: tuple) -> None:
        rows, length = args[0].shape
        tokens = length + (module.latent_token is not None)
        grad = torch.is_grad_enabled() and module.vocab_embed.embedding.requires_grad
        self.total += self.forward_flops(rows, length, tokens) * (3 if grad else 1)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(module: DistillModule, opt: torch.optim.Optimizer, x0: torch.Tensor) -> None:
    """One optimizer step of ``mixdistill fit`` (bf16-mixed, gradient_clip_val 1)."""
    with torch.autocast(x0.device.type, dtype=torch.bfloat16):
        loss = module.objective(module.teacher, module.student, x0)["loss"]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(module.student.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def time_batch(module: DistillModule, opt, counter: FlopCounter, b: int, args) -> dict:
    """Worst-case probe, warm-up, then ``args.steps`` timed steps at batch ``b``."""
    device, sizes = args.device, args.sizes
    x0 = torch.randint(0, sizes.vocab, (b, sizes.length), device=device)
    times, p_distil = module.objective.times, module.objective.times.p_distil
    times.p_distil = 0.0  # the probe: every example on the consistency branch (the memory peak)
    try:
        train_step(module, opt, x0)
    finally:
        times.p_distil = p_distil
    for _ in range(args.warmup):
        train_step(module, opt, x0)
    synchronize(device)
    counter.total, start = 0.0, time.perf_counter()
    for _ in range(args.steps):
        train_step(module, opt, x0)
    synchronize(device)
    seconds = time.perf_counter() - start
    flops = counter.total / args.steps
    return {
        "batch": b,
        "steps_per_s": args.steps / seconds,
        "tokens_per_s": args.steps * b * sizes.length / seconds,
        "tflops_per_step": flops / 1e12,
        "achieved_tflops": flops * args.steps / seconds / 1e12,
        "mfu": flops * args.steps / seconds / (args.peak_tflops * 1e12),
        "peak_memory_gb": torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None,
    }


def train_part(args: argparse.Namespace) -> None:
    """Batches 1, 2, 4, ... until out of memory (or ``--max-batch``); each row saved as measured."""
    module = with_checkpointing(build(args.sizes, args.device), not args.no_checkpointing)
    module.student.train()  # dropout on, as in fit; the frozen teacher stays in eval mode
    opt = torch.optim.AdamW(module.student.parameters(), lr=3e-5, weight_decay=0.0)
    counter = FlopCounter(module.student.base.backbone)
    for dit in (module.student.base.backbone, module.teacher.backbone):
        dit.register_forward_pre_hook(counter)
    save(args.out, "model", describe(module, args))
    b, rows = 1, []
    while b <= args.max_batch:
        try:
            row = time_batch(module, opt, counter, b, args)
        except (torch.cuda.OutOfMemoryError, RuntimeError) as err:  # some kernels raise a plain one
            if "out of memory" not in str(err):
                raise
            opt.zero_grad(set_to_none=True)
            gc.collect()
            torch.cuda.empty_cache()
            save(args.out, "train_oom_batch", b)
            print(f"batch {b}: out of memory", flush=True)
            break
        rows.append(row)
        save(args.out, "train", rows)
        print(f"batch {b}: {row['steps_per_s']:.3f} steps/s, MFU {100 * row['mfu']:.1f}%", flush=True)
        if args.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(args.device)
        b *= 2


def describe(module: DistillModule, args: argparse.Namespace) -> dict:
    """Sizes, parameter counts, device and software of the run."""
    dit = module.teacher.backbone
    name = torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else "cpu"
    counter = FlopCounter(dit)
    return {
        "device": name,
        "torch": torch.__version__,
        "peak_tflops": args.peak_tflops,
        "activation_checkpointing": not args.no_checkpointing,
        "sizes": asdict(args.sizes),
        "teacher_params": sum(p.numel() for p in dit.parameters()),
        "student_params": sum(p.numel() for p in module.student.parameters()),
        "matmul_weights_per_token": counter.block_weights + counter.out_weights,
    }


def sample_one(model, args: argparse.Namespace, dtype: str, counter: FlopCounter) -> dict:
    """A warm-up chain of 2 steps, then one timed chain of ``--sample-steps`` steps."""
    device, enabled = args.device, dtype == "bf16"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled):
        sample_chain(model, args.sample_batch, 2, device=device)
        synchronize(device)
        calls, counter.total, start = CallCount(), 0.0, time.perf_counter()
        sample_chain(model, args.sample_batch, args.sample_steps, device=device, calls=calls)
        synchronize(device)
    seconds = time.perf_counter() - start
    return {
        "dtype": dtype,
        "steps": args.sample_steps,
        "batch": args.sample_batch,
        "seconds": seconds,
        "tokens_per_s": args.sample_batch * args.sizes.length / seconds,
        "ms_per_step": 1e3 * seconds / args.sample_steps,
        "rows_computed": calls.computed,
        "rows_reused": calls.reused,
        "mfu": counter.total / seconds / (args.peak_tflops * 1e12) if enabled else None,
    }


def sample_part(args: argparse.Namespace) -> None:
    """Teacher and student chains, bf16 first, then float32 (``--sample-dtypes``); saved as measured."""
    module = build(args.sizes, args.device).eval()
    counter = FlopCounter(module.teacher.backbone)
    for dit in (module.student.base.backbone, module.teacher.backbone):
        dit.register_forward_pre_hook(counter)
    save(args.out, "model", describe(module, args))
    rows = []
    for dtype in args.sample_dtypes:
        for name, model in (("teacher", module.teacher), ("student", module.student)):
            rows.append({"model": name, **sample_one(model, args, dtype, counter)})
            save(args.out, "sample", rows)
            print(f"{name} {dtype}: {rows[-1]['tokens_per_s']:.0f} tokens/s", flush=True)


def save(path: Path, key: str, value: object) -> None:
    """Set ``key`` in the JSON file at ``path`` (kept across parts and partial runs)."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


TRAIN_HEAD = [
    "| train batch | steps/s | tokens/s | TFLOP / step | TFLOP/s | MFU | peak memory GB |",
    "|---:|---:|---:|---:|---:|---:|---:|",
]
SAMPLE_HEAD = [
    "| sampler | dtype | steps | batch | tokens/s | ms / step | rows computed / reused | MFU |",
    "|---|---|---:|---:|---:|---:|---:|---:|",
]


def table(path: Path) -> str:
    """Markdown tables of what ``path`` holds (training rows, then sampling rows)."""
    data = json.loads(path.read_text()) if path.exists() else {}
    m = data.get("model", {})
    lines = [f"{m.get('device', '?')}, torch {m.get('torch', '?')}, peak {m.get('peak_tflops', '?')} TFLOP/s"]
    lines += [f"sizes {m.get('sizes', {})}", "", *TRAIN_HEAD]
    for r in data.get("train", []):
        mem = "-" if r["peak_memory_gb"] is None else f"{r['peak_memory_gb']:.1f}"
        lines.append(
            f"| {r['batch']} | {r['steps_per_s']:.3f} | {r['tokens_per_s']:.0f} | {r['tflops_per_step']:.3g} "
            f"| {r['achieved_tflops']:.3g} | {100 * r['mfu']:.1f}% | {mem} |"
        )
    if "train_oom_batch" in data:
        lines += ["", f"Out of memory at batch {data['train_oom_batch']}."]
    lines += ["", *SAMPLE_HEAD]
    for r in data.get("sample", []):
        mfu = "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        lines.append(
            f"| {r['model']} | {r['dtype']} | {r['steps']} | {r['batch']} | {r['tokens_per_s']:.0f} "
            f"| {r['ms_per_step']:.1f} | {r['rows_computed']} / {r['rows_reused']} | {mfu} |"
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "train", "sample", "table"], default="all")
    parser.add_argument("--out", type=Path, default=Path("runs/gpu.json"), help="JSON of the results")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="peak dense bf16 TFLOP/s")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per batch")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per batch after the probe")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--sample-steps", type=int, default=128)
    parser.add_argument("--sample-batch", type=int, default=32)
    parser.add_argument("--sample-dtypes", nargs="+", choices=["bf16", "fp32"], default=["bf16", "fp32"])
    parser.add_argument(
        "--no-checkpointing", action="store_true", help="train without ActivationCheckpointing([DiTBlock])"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes and counts (a CPU smoke run)")
    args = parser.parse_args()
    args.device, args.sizes = torch.device(args.device), TINY if args.quick else Sizes()
    if args.quick:
        args.steps, args.warmup, args.max_batch, args.sample_steps, args.sample_batch = 2, 1, 2, 4, 2
    return args


def main() -> None:
    args = parse_args()
    if args.part != "table":
        torch.manual_seed(0)
        print(f"{args.part} on {args.device}: {args.sizes}", flush=True)
    if args.part in ("all", "train"):
        train_part(args)
    if args.part in ("all", "sample"):
        sample_part(args)
    if args.part in ("all", "table"):
        print(table(args.out))


if __name__ == "__main__":
    main()
