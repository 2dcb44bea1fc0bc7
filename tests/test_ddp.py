"""DDP with 2 CPU processes (gloo) matches one process on the same global batch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent / "ddp_script.py"


def run(mode: str, out: Path) -> torch.Tensor:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), mode, str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out)


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process_on_the_same_global_batch(tmp_path):
    """Invariant: with a deterministic loss, 2-process DDP (batch 8 each) takes the same SGD steps as
    one process with batch 16, and both ranks end with identical weights."""
    single = run("single", tmp_path / "single.pt")
    ddp = run("ddp", tmp_path / "ddp.pt")
    assert torch.equal(ddp[0], ddp[1])
    torch.testing.assert_close(ddp[0], single, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(single, run_untrained()), "training must have moved the weights"


def run_untrained() -> torch.Tensor:
    sys.path.insert(0, str(SCRIPT.parent))
    import ddp_script

    return torch.cat([p.detach().flatten() for p in ddp_script.teacher().net.parameters()])


def test_distillation_under_ddp_keeps_ranks_in_sync(tmp_path):
    """Invariant: the Di4C objective under DDP trains the student and keeps both ranks identical."""
    ddp = run("distill", tmp_path / "distill.pt")
    assert torch.equal(ddp[0], ddp[1])
