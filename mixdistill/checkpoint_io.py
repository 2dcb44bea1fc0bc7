"""Checkpoint files that are safe to write and to load: atomic replacement, ``weights_only`` reading.

``SafeCheckpointIO`` writes each checkpoint to a temporary file in the target's folder, flushes and
fsyncs it, then ``os.replace``-s it over the target (atomic on POSIX and Windows within one file
system) and fsyncs the folder: a save killed or failing at any point leaves the previous file (a good
``last.ckpt``) byte for byte, never half a file. It reads checkpoints with ``weights_only=True``
only (see :mod:`mixdistill.safe_load`). ``MixDistillCLI`` installs it in every trainer.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from mixdistill.safe_load import safe_torch_load


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)`` through a temporary file in the same folder and ``os.replace``.

    On any error (or interrupt) the temporary file is removed and ``path`` is left as it was. Its
    name (``.last.ckpt.<pid>.<random>.tmp``) starts with a dot and ends in ``.tmp``, so no ``*.ckpt``
    pattern matches it; one left by a killed process is deleted by the next save of ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_folder(path.parent)


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete temporary files of ``path`` left by writers that were killed (their process is gone).

    Returns the files deleted. A temporary file of a live process (this one included) is kept.
    """
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 :].split(".")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (always True on Windows: not probed there)."""
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # it exists but is not ours, or the pid cannot be probed: keep its file
    return True


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_remote(path: Any) -> bool:
    """Whether ``path`` is an fsspec URL (``s3://...``) rather than a local file."""
    return "://" in str(path)


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with atomic local writes and code-free reads.

    Remote URLs (``s3://``, ``gs://``, ...) are written by Lightning's own fsspec transaction. Reading
    always uses ``weights_only=True``: a file that pickles anything but tensors and plain containers
    is refused with one line naming it (``UnsafeCheckpointError``), whatever ``weights_only`` the
    caller asks for.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` atomically (the previous file survives any failure)."""
        if storage_options is not None or is_remote(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(
        self, path: Any, map_location: Any = "cpu", weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Read ``path`` with ``weights_only=True`` (the ``weights_only`` argument is ignored)."""
        if is_remote(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        if not Path(path).is_file():
            raise FileNotFoundError(f"Checkpoint file not found: {path}")
        return safe_torch_load(path, map_location=map_location)


def install_safe_checkpoint_io(trainer: L.Trainer) -> bool:
    """Put a ``SafeCheckpointIO`` into ``trainer``'s strategy where Lightning's default is in place.

    Works for every strategy that writes through ``strategy.checkpoint_io`` (single device, DDP and
    its variants); a ``checkpoint_io`` plugin the user configured is kept. Returns whether it was
    installed.
    """
    if type(trainer.strategy.checkpoint_io) is not TorchCheckpointIO:
        return False
    trainer.strategy.checkpoint_io = SafeCheckpointIO()
    return True
