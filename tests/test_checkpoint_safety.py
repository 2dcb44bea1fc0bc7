"""Checkpoints are safe to write (atomic replacement) and to load (no code runs, one short message)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_args import tiny_synthetic

from mixdistill.checkpoint_io import SafeCheckpointIO, atomic_torch_save
from mixdistill.cli import run as main
from mixdistill.safe_load import UnsafeCheckpointError, safe_torch_load

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
QUICKSTART = str(CONFIG_DIR / "quickstart.yaml")


class WritesMarker:
    """Unpickling this runs ``open(marker, 'w')``: the marker file proves code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    """A Lightning-looking checkpoint whose unpickling would create ``marker``."""
    torch.save({"state_dict": {"w": torch.zeros(2)}, "global_step": 1, "payload": WritesMarker(marker)}, path)
    assert not marker.exists()
    return path


def assert_short_refusal(message: str, path: Path) -> None:
    """The refusal is one short message naming the file, without advice to disable the protection."""
    assert str(path) in message
    assert "objects other than tensors" in message and "never executes code" in message
    assert "weights_only=False" not in message and "Union" not in message
    assert len(message) < 600, len(message)


# --- writing -------------------------------------------------------------------------------------------


def test_interrupted_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    """Invariant: a save that fails after writing part of the file leaves the old checkpoint byte for
    byte, and no temporary file behind."""
    target = tmp_path / "checkpoints" / "last.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.arange(5.0)}, "global_step": 7}, target)
    good = target.read_bytes()

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(good[: len(good) // 2])  # a partial write, as when the process dies or the disk fills
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(5)}, "global_step": 8}, target)
    monkeypatch.undo()
    assert target.read_bytes() == good
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"], "no temporary file is left"
    assert io.load_checkpoint(target)["global_step"] == 7


def test_interrupt_during_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    """Invariant: a KeyboardInterrupt (Ctrl-C, SIGINT) in the middle of a save is handled the same way."""
    target = tmp_path / "last.ckpt"
    atomic_torch_save({"x": torch.ones(3)}, target)
    good = target.read_bytes()

    def interrupted(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"x": torch.zeros(3)}, target)
    assert target.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_normal_save_is_loadable_and_replaces_the_old_file(tmp_path):
    """Invariant: a completed save replaces the previous file and reads back equal, tensors and all."""
    target = tmp_path / "a" / "b.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 0}, target)
    io.save_checkpoint({"state_dict": {"w": torch.arange(3.0)}, "epoch": 1, "name": "run"}, target)
    loaded = io.load_checkpoint(target)
    assert loaded["epoch"] == 1 and loaded["name"] == "run"
    assert torch.equal(loaded["state_dict"]["w"], torch.arange(3.0))
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~current_umask()), "the umask applies"
    assert [p.name for p in target.parent.iterdir()] == ["b.ckpt"]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_cli_installs_the_safe_checkpoint_io_also_under_ddp(tmp_path):
    """Invariant: every trainer the CLI builds, single-device or DDP, writes through SafeCheckpointIO."""
    for extra in ([], ["--trainer.strategy=ddp", "--trainer.devices=2"]):
        cli = main([*tiny_synthetic(tmp_path), *extra], run=False)
        assert type(cli.trainer.strategy.checkpoint_io) is SafeCheckpointIO, extra
    assert type(cli.trainer.strategy).__name__ == "DDPStrategy"


def test_fit_writes_its_checkpoints_through_the_safe_io(tmp_path):
    """Invariant: the checkpoints of a real fit are plain tensors and containers (weights_only loads
    them) and no temporary file remains beside them."""
    main(["fit", *tiny_synthetic(tmp_path, 3)])
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == ["last.ckpt"]
    assert safe_torch_load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 3


# --- loading -------------------------------------------------------------------------------------------


def test_malicious_ckpt_path_is_refused_without_running_it(tmp_path):
    """Invariant: a pickle with code as --ckpt_path fails before training with one short message
    naming the file; its code never runs."""
    marker = tmp_path / "PWNED"
    evil = malicious_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(UnsafeCheckpointError) as err:
        main(["fit", *tiny_synthetic(tmp_path / "run"), f"--ckpt_path={evil}"])
    assert_short_refusal(str(err.value), evil)
    assert str(err.value).startswith("--ckpt_path: ")
    assert not marker.exists()
    assert not (tmp_path / "run" / "checkpoints").exists(), "nothing was trained"


def test_malicious_last_checkpoint_is_refused_when_resuming(tmp_path):
    """Invariant: --ckpt_path last resolving to a malicious last.ckpt is refused by the checkpoint IO."""
    marker = tmp_path / "PWNED"
    (tmp_path / "checkpoints").mkdir()
    evil = malicious_checkpoint(tmp_path / "checkpoints" / "last.ckpt", marker)
    with pytest.raises(UnsafeCheckpointError) as err:
        main(["test", *tiny_synthetic(tmp_path), "--ckpt_path=last"])
    assert_short_refusal(str(err.value), evil)
    assert not marker.exists()


def test_malicious_teacher_checkpoint_is_refused_with_the_setting_named(tmp_path):
    """Invariant: a teacher `checkpoint:` with code is refused at instantiation with one short message
    naming the setting and the file (no jsonargparse Union dump); its code never runs."""
    marker = tmp_path / "PWNED"
    evil = malicious_checkpoint(tmp_path / "teacher.pt", marker)
    args = ["--config", QUICKSTART, f"--trainer.default_root_dir={tmp_path}"]
    with pytest.raises(UnsafeCheckpointError) as err:
        main(["fit", *args, f"--model.init_args.teacher.init_args.checkpoint={evil}"])
    message = str(err.value)
    assert_short_refusal(message, evil)
    assert message.startswith("model.init_args.teacher: refused to load")
    assert err.value.__cause__ is None and err.value.__suppress_context__, "printed alone, no chain"
    assert not marker.exists()


def test_console_script_prints_one_line_for_a_refused_file(tmp_path):
    """Invariant: `mixdistill fit` with a malicious teacher checkpoint exits non-zero and its stderr is
    one short error line (no traceback), and the file's code never runs."""
    marker = tmp_path / "PWNED"
    evil = malicious_checkpoint(tmp_path / "teacher.pt", marker)
    exe = Path(sys.executable).with_name("mixdistill")
    args = ["fit", "--config", QUICKSTART, f"--trainer.default_root_dir={tmp_path}"]
    args.append(f"--model.init_args.teacher.init_args.checkpoint={evil}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("mixdistill: error:")]
    assert len(error) == 1
    assert_short_refusal(error[0], evil)
    assert not marker.exists()


def test_weights_only_false_is_refused(tmp_path):
    """Invariant: there is no switch that unpickles code: --weights_only false stops the CLI."""
    with pytest.raises(ValueError, match="never executes code"):
        main(["fit", *tiny_synthetic(tmp_path), "--weights_only=false"])


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip"], ids=["empty", "truncated"])
def test_unreadable_checkpoint_names_the_file(tmp_path, content):
    """Invariant: an empty or truncated checkpoint is a one-line error naming the file."""
    path = tmp_path / "broken.ckpt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"cannot read '.*broken.ckpt': not a complete torch file") as err:
        safe_torch_load(path)
    assert len(str(err.value)) < 600


def test_safe_io_ignores_a_request_for_weights_only_false(tmp_path):
    """Invariant: SafeCheckpointIO reads with weights_only=True whatever the caller asks."""
    marker = tmp_path / "PWNED"
    evil = malicious_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(UnsafeCheckpointError):
        SafeCheckpointIO().load_checkpoint(evil, weights_only=False)
    assert not marker.exists()


def test_vqgan_allow_pickle_reads_tensors_without_running_code(tmp_path):
    """Invariant: VQModel's allow_pickle (for taming checkpoints with pickled extras) uses the inert
    reader: the weights load, and a pickled payload's code does not run."""
    from mixdistill.nets.vqgan import VQGANSizes, VQModel

    tiny = {"ch": 32, "ch_mult": (1, 1, 2), "attn_resolutions": (8,), "resolution": 32, "z_channels": 32}
    sizes = VQGANSizes(**tiny, embed_dim=16, n_embed=64)

    def tiny_vqgan(**kwargs) -> VQModel:
        return VQModel(sizes, **kwargs).eval()

    marker = tmp_path / "PWNED"
    source = tiny_vqgan()
    torch.save(
        {"state_dict": source.state_dict(), "hyper_parameters": WritesMarker(marker)}, tmp_path / "v.ckpt"
    )
    with pytest.raises(ValueError, match=r"v.ckpt.*allow_pickle") as err:
        tiny_vqgan(checkpoint=str(tmp_path / "v.ckpt"))
    assert "weights_only=False" not in str(err.value)
    loaded = tiny_vqgan(checkpoint=str(tmp_path / "v.ckpt"), allow_pickle=True)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in source.state_dict().items())
    assert not marker.exists()


def test_a_killed_writers_temporary_file_is_removed_by_the_next_save(tmp_path):
    """Invariant: a temporary file left by a killed process (its pid gone) is deleted by the next save
    of the same checkpoint; one of a live process is kept."""
    target = tmp_path / "last.ckpt"
    dead = tmp_path / ".last.ckpt.999999999.deadbeef.tmp"  # above any pid_max: no such process
    live = tmp_path / f".last.ckpt.{os.getpid()}.cafe0000.tmp"
    dead.write_bytes(b"half")
    live.write_bytes(b"in flight")
    atomic_torch_save({"x": torch.ones(1)}, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "last.ckpt"])


KILLED_MID_SAVE = """
import os, signal, sys, torch
from mixdistill.checkpoint_io import atomic_torch_save

def dies(obj, f, *args, **kwargs):
    f.write(b"PK\\x03\\x04" + b"x" * 4096)
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

torch.save = dies
atomic_torch_save({"x": torch.zeros(3)}, sys.argv[1])
"""


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")
def test_sigkill_during_a_save_leaves_the_previous_checkpoint_intact(tmp_path):
    """Invariant: a process killed with SIGKILL half way through writing last.ckpt leaves the previous
    last.ckpt byte for byte (only a dot-named .tmp file remains, which the next save removes)."""
    target = tmp_path / "last.ckpt"
    atomic_torch_save({"x": torch.arange(3.0)}, target)
    good = target.read_bytes()
    done = subprocess.run([sys.executable, "-c", KILLED_MID_SAVE, str(target)], timeout=120)
    assert done.returncode == -9
    assert target.read_bytes() == good
    left = [p.name for p in tmp_path.iterdir() if p.name != "last.ckpt"]
    assert len(left) == 1 and left[0].startswith(".last.ckpt.") and left[0].endswith(".tmp")
    atomic_torch_save({"x": torch.ones(3)}, target)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    assert torch.equal(safe_torch_load(target)["x"], torch.ones(3))
