"""Tools to measure memory without allocating it: a live-storage counter and fake-tensor modules.

``LiveBytes`` is a ``TorchDispatchMode`` that counts the bytes of every tensor storage an op
creates, until Python frees it, and keeps the peak; under ``FakeTensorMode`` the tensors have
shapes, dtypes and devices but no data, so the count is that of the real program at no cost.
"""

from __future__ import annotations

import contextlib
import weakref
from collections import Counter
from collections.abc import Iterator
from functools import partial
from unittest import mock

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveBytes(TorchDispatchMode):
    """Counts the bytes of live tensor storages, and their peak, while it is active.

    Every op's output storages are counted once, until they are freed (a weak reference's callback
    subtracts them). ``MemTracker`` of ``torch.distributed._tools`` does the same but installs
    gradient hooks on every parameter of a module it sees run, which frozen (teacher) ones refuse.

    Args:
        describe: Remember which op made each storage and keep the breakdown at the peak (slower).
    """

    def __init__(self, describe: bool = False) -> None:
        super().__init__()
        self.live: dict[int, list] = {}  # id(storage) -> [weak reference, bytes, description]
        self.current = self.peak = 0
        self.describe, self.at_peak = describe, Counter()
        self._snap_at = 0

    def track(self, *tensors: torch.Tensor | None) -> None:
        """Count storages that exist already (weights, gradients, optimizer states)."""
        for t in tensors:
            if isinstance(t, torch.Tensor):
                self._add(t.untyped_storage(), "state (weights, Adam, gradients)")

    def _add(self, st: torch.UntypedStorage, what: str) -> None:
        key, nbytes = id(st), st.nbytes()
        entry = self.live.get(key)
        if entry is not None and entry[0]() is st:  # seen: only a resize changes it
            delta, entry[1] = nbytes - entry[1], nbytes
        else:
            self.live[key] = [weakref.ref(st, partial(self._free, key)), nbytes, what]
            delta = nbytes
        self.current += delta
        if self.current > self.peak:
            self.peak = self.current
            if self.describe and self.current > 1.005 * self._snap_at:
                self._snap_at = self.current
                self.at_peak = Counter()
                for _, size, desc in self.live.values():
                    self.at_peak[desc] += size

    def _free(self, key: int, ref: weakref.ref) -> None:
        entry = self.live.get(key)
        if entry is not None and entry[0] is ref:
            del self.live[key]
            self.current -= entry[1]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                what = f"{func.__name__} {tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"
                self._add(t.untyped_storage(), what if self.describe else "")
        return out


def materialise_fake(module: torch.nn.Module) -> None:
    """Replace every meta parameter and buffer by an empty CPU tensor of the active fake mode.

    Build the module under ``torch.device("meta")`` outside the fake mode (a deep copy of a fake
    tensor, as ``MixtureStudent.from_teacher`` makes, would belong to another fake mode), then call
    this inside it.
    """
    memo: dict[int, torch.Tensor] = {}  # tied tensors stay tied
    for sub in module.modules():
        for table in (sub._parameters, sub._buffers):
            for name, t in table.items():
                if t is None:
                    continue
                if id(t) not in memo:
                    new = torch.empty(t.shape, dtype=t.dtype, device="cpu")
                    if isinstance(t, torch.nn.Parameter):
                        new = torch.nn.Parameter(new, requires_grad=t.requires_grad)
                    memo[id(t)] = new
                table[name] = memo[id(t)]


@contextlib.contextmanager
def flash_like_attention() -> Iterator[None]:
    """Attention with dropout as a GPU's flash kernel stores it: no mask, no ``L x L`` weights.

    PyTorch's CPU flash kernel refuses ``dropout_p > 0`` and falls back to the math path, which keeps
    the attention weights and a dropout mask; the CUDA flash and memory-efficient kernels regenerate
    the mask from the RNG state. Running the CPU kernel with ``dropout_p = 0`` gives their memory.
    """
    sdpa = F.scaled_dot_product_attention

    def no_mask(q, k, v, attn_mask=None, dropout_p=0.0, **kwargs):
        return sdpa(q, k, v, attn_mask, 0.0, **kwargs)

    with mock.patch.object(F, "scaled_dot_product_attention", no_mask):
        yield
