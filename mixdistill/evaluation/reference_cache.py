"""Reference statistics cached per (reference data, split, metric, feature network).

The real side of a sample metric (e.g. a Frechet distance's mean and covariance sums of the test
split's features) depends only on the reference data and the feature network, yet costs a pass of
the feature network over the whole split on every ``mixdistill test``. ``ReferenceStream`` hashes the
reference batches as they stream by and keeps them (token ids: small); once all are seen,
``ReferenceCache.provide`` loads the metric's real-side state from a file named by that hash (a hit:
no feature extraction at all) or feeds the kept batches to the metric and writes its state (a miss).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from lightning.pytorch.utilities import rank_zero_info
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from mixdistill.evaluation.fingerprint import canonical_sha256, update_with_tensor

#: Bumped whenever the key fields or the file layout change, so that old files are never read.
FORMAT_VERSION = 1
#: The YAML path of the directory setting, named in errors.
SETTING = "model.init_args.evaluation.init_args.reference_cache.init_args.directory"


@runtime_checkable
class ReferenceStatistics(Protocol):
    """A sample metric whose real side can be saved and restored (e.g. ``FrechetDistance``)."""

    def reference_state(self) -> dict[str, Tensor]:
        """The real-side states accumulated by ``update(x, real=True)``, by state name."""
        ...

    def load_reference_state(self, state: dict[str, Tensor]) -> None:
        """Replace the real-side states by ``state`` (as ``reference_state`` returned it)."""
        ...

    def feature_fingerprint(self) -> str:
        """A digest of everything that maps a reference example to its features (network weights,
        settings such as scaling), so that any change there misses the cache.
        """
        ...


class ReferenceCacheError(RuntimeError):
    """A cache file that cannot be read, or a cache directory that cannot be created."""


class ReferenceStream:
    """The reference batches of one evaluation: their count, a running SHA-256 of their bytes (in order)
    and, while the cache has not yet decided, CPU copies of the batches themselves.

    Args:
        split: Name of the data split the batches come from (part of the cache key).
    """

    def __init__(self, split: str = "reference") -> None:
        self.split, self.examples, self.device = split, 0, torch.device("cpu")
        self.kept: list[Tensor] = []
        self.settled = False
        self._hasher, self._layout = hashlib.sha256(), ""

    def add(self, x0: Tensor, keep: bool) -> None:
        """Hash a batch ``(B, *shape)`` and, if ``keep``, hold a CPU copy of it for ``provide``."""
        layout = f"{tuple(x0.shape[1:])}:{x0.dtype}"
        if layout != self._layout:  # the example layout enters the hash, batch boundaries do not
            self._hasher.update(layout.encode())
            self._layout = layout
        cpu = x0.detach().to("cpu", copy=True)  # (B, *shape); a copy: the caller may reuse its buffer
        update_with_tensor(self._hasher, cpu)
        self.examples += x0.shape[0]
        self.device = x0.device
        if keep:
            self.kept.append(cpu)

    def sha256(self) -> str:
        """Digest of all reference bytes so far, their example layout and count."""
        hasher = self._hasher.copy()
        hasher.update(f"n={self.examples}".encode())
        return hasher.hexdigest()

    def settle(self) -> None:
        """Mark the reference complete and drop the kept batches."""
        self.kept, self.settled = [], True

    def __getstate__(self) -> dict:
        # A hashlib object cannot be pickled; the module holding this stream can be (DDP spawn,
        # deepcopy) as long as no reference is in flight, which then starts afresh.
        if self.examples:
            raise TypeError("ReferenceStream: cannot copy a stream in progress; reset_reference() first.")
        return {k: v for k, v in vars(self).items() if k != "_hasher"}

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state)
        self._hasher = hashlib.sha256()


class ReferenceCache:
    """Files of reference statistics, one per (data, split, metric, feature network, examples).

    A file is ``<directory>/<key>.safetensors`` where ``key`` is the SHA-256 of a JSON of the reference
    data's digest, the split name, the metric's name and class, its ``feature_fingerprint()`` and the
    number of examples; the JSON is stored in the file and checked on reading. Files are written
    atomically (a temporary file, then ``os.replace``), so a crash never leaves half a file.

    Under DDP every rank reads the whole split (``data.base``'s evaluation loaders), so every rank
    computes the key and the statistics a single process does: runs on 1 or N devices share files,
    and ranks that write the same file at once each write their own temporary file first.

    Args:
        directory: Folder of the cache files (created on the first write).
    """

    def __init__(self, directory: str = ".mixdistill_cache/reference") -> None:
        self.directory = Path(directory)

    def fields(self, name: str, metric: ReferenceStatistics, stream: ReferenceStream) -> dict:
        """What the key of ``metric``'s statistics on ``stream`` is made of."""
        return {
            "version": FORMAT_VERSION,
            "data_sha256": stream.sha256(),
            "examples": stream.examples,
            "split": stream.split,
            "metric": name,
            "class": f"{type(metric).__module__}.{type(metric).__qualname__}",
            "features": metric.feature_fingerprint(),
        }

    def path(self, fields: dict) -> Path:
        """The file for the statistics described by ``fields``."""
        return self.directory / f"{canonical_sha256(fields)}.safetensors"

    def provide(self, name: str, metric: ReferenceStatistics, stream: ReferenceStream) -> dict[str, str]:
        """Load ``metric``'s real side from the cache (hit) or compute it from ``stream.kept`` and save it.

        Returns:
            ``{"cache": "hit" | "written", "file": path}``.
        """
        fields = self.fields(name, metric, stream)
        path = self.path(fields)
        state = self.load(path, fields)
        if state is not None:
            try:
                metric.load_reference_state(state)
            except (ValueError, KeyError) as err:
                raise ReferenceCacheError(
                    f"reference cache file {path} does not fit {name} ({err}); delete it to recompute."
                ) from err
            rank_zero_info(f"reference statistics of {name} ({stream.split}): cache hit, read {path}")
            return {"cache": "hit", "file": str(path)}
        for x0 in stream.kept:  # (B, *shape) each, back on the device the data came on
            metric.update(x0.to(stream.device), real=True)
        self.save(path, fields, metric.reference_state())
        rank_zero_info(f"reference statistics of {name} ({stream.split}): cache miss, wrote {path}")
        return {"cache": "written", "file": str(path)}

    def load(self, path: Path, fields: dict) -> dict[str, Tensor] | None:
        """The tensors of ``path`` (``None`` if it does not exist); an unreadable file is an error."""
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                stored = (f.metadata() or {}).get("fields")
                state = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as err:  # safetensors raises its own SafetensorError besides OSError
            raise ReferenceCacheError(
                f"reference cache file {path} cannot be read ({type(err).__name__}: {err}); delete it "
                f"(it is recomputed on the next run)."
            ) from err
        if stored != json.dumps(fields, sort_keys=True):
            raise ReferenceCacheError(
                f"reference cache file {path} was written for other data or another metric than its name "
                f"says (stored {stored!r}); delete it (it is recomputed on the next run)."
            )
        return state

    def save(self, path: Path, fields: dict, state: dict[str, Tensor]) -> None:
        """Write ``state`` with ``fields`` as metadata to ``path``, atomically."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ReferenceCacheError(
                f"ReferenceCache: directory='{self.directory}' cannot be created ({err}); set {SETTING} "
                f"to a writable folder, or remove reference_cache to evaluate without a cache."
            ) from err
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: ranks never collide
        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        try:
            save_file(tensors, str(tmp), metadata={"fields": json.dumps(fields, sort_keys=True)})
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
