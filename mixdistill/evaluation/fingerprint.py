"""Content fingerprints (SHA-256) of tensors, networks and files, for cache keys."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

#: Plain attributes of a network that can change its output without changing its weights (e.g. a
#: classifier's ``levels`` scaling); ``training`` is left out since Lightning toggles it on every
#: module and frozen feature networks compute the same in both modes.
SETTING_TYPES = (bool, int, float, str, tuple, type(None))


def update_with_tensor(hasher: Any, x: Tensor) -> None:
    """Feed the raw bytes of ``x`` (any dtype, any device) into ``hasher``, without its shape."""
    flat = x.detach().cpu().contiguous().reshape(-1)  # (N,)
    hasher.update(flat.view(torch.uint8).numpy())  # bytes as stored: int32 and int64 differ


def canonical_sha256(fields: dict[str, Any]) -> str:
    """SHA-256 of ``fields`` as sorted, compact JSON (non-JSON values by their ``repr``)."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def _settings(module: nn.Module) -> dict[str, Any]:
    return {
        k: v
        for k, v in vars(module).items()
        if not k.startswith("_") and k != "training" and isinstance(v, SETTING_TYPES)
    }


def _held_outside(module: nn.Module) -> list[tuple[str, nn.Module]]:
    # Evaluator networks are often kept out of the module tree (object.__setattr__) so that they
    # never enter checkpoints; they decide the features all the same.
    return [(k, v) for k, v in vars(module).items() if isinstance(v, nn.Module)]


def module_fingerprint(module: nn.Module) -> str:
    """SHA-256 of a network: its structure, plain settings and every parameter and buffer.

    Networks held outside the module tree (plain attributes) are included, so that e.g.
    ``ClassifierFeatures`` (whose classifier is not a registered submodule) changes its fingerprint
    when the classifier's weights change.
    """
    hasher, stack, seen = hashlib.sha256(), [("", module)], set()
    while stack:
        prefix, top = stack.pop()
        for name, sub in top.named_modules(prefix=prefix):
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            header = {"name": name, "type": type(sub).__qualname__, "settings": _settings(sub)}
            hasher.update(json.dumps(header, sort_keys=True, default=repr).encode())
            for key, t in list(sub.named_parameters(recurse=False)) + list(sub.named_buffers(recurse=False)):
                hasher.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
                update_with_tensor(hasher, t)
            stack += [(f"{name}.{k}", v) for k, v in _held_outside(sub)]
    return hasher.hexdigest()


def file_fingerprint(path: str | Path) -> str:
    """SHA-256 of a file's bytes (memoised by path, size and modification time: weights files are big)."""
    stat = os.stat(path)
    return _file_sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def files_fingerprint(paths: Iterable[str | Path]) -> str:
    """SHA-256 of several files' contents, in order (e.g. a tokenizer's vocab and merges)."""
    return canonical_sha256({"files": [file_fingerprint(p) for p in paths]})
