"""Scaling: training steps per second of ``mixdistill fit`` on 1 and more DDP processes.

Runs the console script as a user would (``mixdistill fit --config CFG --trainer.devices N``, with
``--trainer.strategy ddp`` for N > 1; gloo on CPU, NCCL on GPUs), the per-device batch held fixed
(weak scaling: the global batch grows with N), unless ``--global-batch`` fixes the global batch
instead. A Lightning callback (``StepTimer``) stamps the end of every optimizer step on rank 0;
the first ``--warmup`` steps are skipped and the next ``--steps`` timed. Runs of the device counts
alternate, ``--repeats`` times; the median run is reported. Validation, checkpoints and logging are
off, so a step is data loading + forward + backward + gradient all-reduce + AdamW.

    python bench/ddp_throughput.py                       # CPU, 1 and 2 processes, writes the section
    python bench/ddp_throughput.py --quick --no-write     # smoke run, < 1 min
    python bench/ddp_throughput.py --accelerator gpu --devices 1 2 4 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
DEFAULT_CONFIG = ROOT / "configs" / "tiny" / "mdlm_tiny.yaml"
SECTION = "## Scaling: DDP training steps per second"


class StepTimer(Callback):
    """Records ``time.perf_counter()`` after every optimizer step; rank 0 writes them to ``out`` (JSON).

    Args:
        out: Path of the JSON file (``times``, ``world_size``, ``threads``, ``batch_size``).
    """

    def __init__(self, out: str) -> None:
        self.out, self.times = out, []

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if torch.cuda.is_available() and trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        info = {
            "times": self.times,
            "world_size": trainer.world_size,
            "threads": torch.get_num_threads(),
            "batch_size": getattr(dm, "batch_size", None),
        }
        Path(self.out).write_text(json.dumps(info))


def make_corpus(folder: Path, min_bytes: int) -> Path:
    """A local ``corpus.txt`` of at least ``min_bytes``: the README and docs, repeated (offline)."""
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(p.read_text() for p in texts if p.is_file())
    path = folder / "corpus.txt"
    path.write_text("\n".join([text] * max(1, -(-min_bytes // max(len(text), 1)))))
    return path


def config_batch(config: Path) -> int:
    """``data.init_args.batch_size`` of ``config`` (32 if it sets none)."""
    data = yaml.safe_load(config.read_text()).get("data", {})
    return int(data.get("init_args", {}).get("batch_size", 32))


def fit_command(args: argparse.Namespace, devices: int, batch: int, root: Path, timer: Path) -> list[str]:
    """The ``mixdistill fit`` command line of one timed run."""
    exe = Path(sys.executable).with_name("mixdistill")
    cmd = [str(exe) if exe.exists() else shutil.which("mixdistill") or "mixdistill", "fit"]
    cmd += ["--config", str(args.config), f"--trainer.default_root_dir={root}"]
    cmd += [f"--trainer.accelerator={args.accelerator}", f"--trainer.devices={devices}"]
    cmd += ["--trainer.strategy=ddp"] if devices > 1 else []
    cmd += [f"--trainer.max_steps={args.warmup + args.steps}", "--trainer.max_time=null"]
    cmd += ["--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0"]
    cmd += ["--trainer.logger=false", "--trainer.enable_checkpointing=false"]
    cmd += ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    timer_cb = {"class_path": "ddp_throughput.StepTimer", "init_args": {"out": str(timer)}}
    cmd += [f"--trainer.callbacks=[{json.dumps(timer_cb)}]", f"--data.init_args.batch_size={batch}"]
    if args.corpus is not None:
        cmd += [f"--data.init_args.files=[{args.corpus}]", f"--data.init_args.cache_dir={args.cache}"]
    return cmd + list(args.extra)


def run_once(args: argparse.Namespace, devices: int, work: Path) -> dict:
    """One timed fit on ``devices`` processes: steps/s and examples/s of its timed steps."""
    batch = args.global_batch // devices if args.global_batch else args.batch_size
    root, timer = work / f"run_{devices}_{time.monotonic_ns()}", work / "timer.json"
    timer.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")])}
    env.setdefault("PYTHONWARNINGS", "ignore")
    if args.threads:  # else Lightning gives each CPU process cores / processes threads
        env["OMP_NUM_THREADS"] = str(args.threads)
    proc = subprocess.run(
        fit_command(args, devices, batch, root, timer), env=env, capture_output=True, text=True
    )
    if proc.returncode != 0 or not timer.exists():
        raise RuntimeError(f"mixdistill fit on {devices} device(s) failed:\n{proc.stderr[-3000:]}")
    info = json.loads(timer.read_text())
    times = info["times"][args.warmup - 1 :]  # the end of the last warm-up step starts the clock
    if len(times) < 2:
        raise RuntimeError(f"only {len(info['times'])} steps recorded; lower --warmup or raise --steps.")
    per_step = [b - a for a, b in zip(times, times[1:], strict=False)]
    steps_per_s = len(per_step) / (times[-1] - times[0])
    return {
        "devices": devices,
        "batch_per_device": batch,
        "global_batch": batch * info["world_size"],
        "threads": info["threads"],
        "steps_per_s": steps_per_s,
        "examples_per_s": steps_per_s * batch * info["world_size"],
        "median_step_ms": 1e3 * statistics.median(per_step),
    }


def measure(args: argparse.Namespace, work: Path) -> list[dict]:
    """All runs, device counts alternated ``--repeats`` times; the median run of each count."""
    runs: dict[int, list[dict]] = {d: [] for d in args.devices}
    for r in range(args.repeats):
        for d in args.devices:
            res = run_once(args, d, work)
            runs[d].append(res)
            print(f"repeat {r}: {d} device(s): {res['steps_per_s']:.2f} steps/s", flush=True)
    rows = []
    for rs in runs.values():
        mid = sorted(rs, key=lambda x: x["steps_per_s"])[len(rs) // 2]
        rows.append({**mid, "all_steps_per_s": [x["steps_per_s"] for x in rs]})
    return rows


def machine(accelerator: str) -> str:
    """The machine in words: CPU cores, or the GPU, and torch's version."""
    if accelerator == "gpu" and torch.cuda.is_available():
        what = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    else:
        what = f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})"
    return f"{what}, torch {torch.__version__}, lightning {L.__version__}"


def render(rows: list[dict], args: argparse.Namespace, command: str) -> str:
    """The "## Scaling: DDP training steps per second" section."""
    base = rows[0]
    mode = "same global batch" if args.global_batch else "same per-device batch (global batch grows)"
    backend = "gloo" if args.accelerator == "cpu" else "NCCL"
    config = Path(args.config).resolve()
    config = config.relative_to(ROOT) if config.is_relative_to(ROOT) else config
    lines = [
        SECTION,
        "",
        f"`{command}` on {machine(args.accelerator)}: `mixdistill fit --config "
        f"{config}` through the console script, "
        f"`--trainer.devices N` (`--trainer.strategy ddp` for N > 1, {backend}), "
        f"{mode}; {args.steps} timed optimizer steps after {args.warmup} warm-up steps, median of "
        f"{args.repeats} alternated runs; validation, checkpoints and logging off.",
        "",
        "| processes | batch / device | global batch | torch threads / process | steps/s | examples/s "
        "| median step ms | speed-up steps/s | speed-up examples/s | steps/s of each run |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        runs = ", ".join(f"{v:.2f}" for v in r["all_steps_per_s"])
        lines.append(
            f"| {r['devices']} | {r['batch_per_device']} | {r['global_batch']} | {r['threads']} | "
            f"{r['steps_per_s']:.2f} | {r['examples_per_s']:.1f} | {r['median_step_ms']:.1f} | "
            f"{r['steps_per_s'] / base['steps_per_s']:.2f}x | "
            f"{r['examples_per_s'] / base['examples_per_s']:.2f}x | {runs} |"
        )
    lines += ["", f"Speed-ups are against {base['devices']} process(es), the first row."]
    if args.accelerator == "cpu":
        lines += [
            "",
            f"On CPU the processes share this machine's {os.cpu_count()} cores (each process runs the "
            "torch threads of the table; Lightning's default is cores / processes): more processes "
            "split the same compute, so a "
            "speed-up above 1 here comes only from better use of the cores, not from added hardware; "
            "on N GPUs each process gets its own device (`--accelerator gpu --devices 1 2 4 8`).",
        ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="a mixdistill fit config")
    parser.add_argument("--accelerator", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2], help="process counts to time")
    parser.add_argument("--steps", type=int, default=50, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (>= 1)")
    parser.add_argument("--repeats", type=int, default=3, help="alternated runs per device count")
    parser.add_argument("--batch-size", type=int, help="batch per device (default: the config's)")
    parser.add_argument("--global-batch", type=int, help="fix the global batch instead (split over N)")
    parser.add_argument("--threads", type=int, help="torch threads per process (OMP_NUM_THREADS)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 + 5 steps, 1 repeat")
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    parser.add_argument("extra", nargs="*", help="more mixdistill fit arguments (after --)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.repeats = 5, 3, 1
    args.warmup, args.devices = max(1, args.warmup), list(dict.fromkeys(args.devices))
    args.batch_size = args.batch_size or config_batch(args.config)
    if args.global_batch and any(args.global_batch % d for d in args.devices):
        parser.error(f"--global-batch {args.global_batch} must divide by every device count {args.devices}")
    return args


def main() -> None:
    args = parse_args()
    command = "python bench/ddp_throughput.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        args.corpus, args.cache = None, work / "cache"
        if "TextData" in Path(args.config).read_text():  # the tiny MDLM: a local text file
            examples = (args.global_batch or args.batch_size * max(args.devices)) * (args.warmup + args.steps)
            args.corpus = make_corpus(work, 64 * examples + 100_000)  # ~27 bytes per 16-token example
        rows = measure(args, work)
    text = render(rows, args, command.strip())
    print(text)
    if not args.no_write:
        from report import write_section

        write_section(text)


if __name__ == "__main__":
    main()
