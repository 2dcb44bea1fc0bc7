"""`mixdistill test` under DDP (2 CPU processes, gloo) through the console script: it ends, and its
table equals the one-process table for the same seed and sample count."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = str(Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml")
CONSOLE = str(Path(sys.executable).parent / "mixdistill")


def run_test(root: Path, cache: Path, devices: int) -> dict:
    """One `mixdistill test` of the quickstart's untrained student, small, on ``devices`` processes."""
    ev = "--model.init_args.evaluation.init_args"
    args = [
        CONSOLE, "test", "--config", CONFIG, "--allow_untrained=true",
        f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false",
        f"--trainer.devices={devices}", "--trainer.logger=false",
        f"{ev}.teacher_steps=[2]", f"{ev}.student_steps=[2]", f"{ev}.num_samples=300",
        f"{ev}.batch_size=100", f"{ev}.latency_batch=0",
        f"{ev}.reference_cache.init_args.directory={cache}",
    ]  # fmt: skip
    if devices > 1:
        args.append("--trainer.strategy=ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(next(root.rglob("quality.json")).read_text())


@pytest.mark.slow
def test_ddp_test_gives_the_one_process_table(tmp_path):
    """Invariant: on 2 processes the rows (FD-pixels of teacher and student, samples, the reference
    split's size and digest) equal those of 1 process: every rank reads the whole reference and draws
    the same seeded samples, and no metric merges the ranks' copies (which would count each twice)."""
    one = run_test(tmp_path / "one", tmp_path / "cache1", 1)
    two = run_test(tmp_path / "two", tmp_path / "cache2", 2)

    def scores(q):
        return [{k: v for k, v in r.items() if "sec" not in k} for r in q["rows"]]

    assert scores(two) == scores(one)
    assert two["meta"]["reference"]["sha256"] == one["meta"]["reference"]["sha256"]
    assert two["meta"]["reference"]["examples"] == one["meta"]["reference"]["examples"] > 0
