"""Pre-tokenised data (e.g. VQGAN codes ``(N, 16, 16)``) from ``.npy``/``.npz``/``.pt``/``.safetensors``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mixdistill.data.base import Arrays, TensorDataModule, as_index_tensor
from mixdistill.metrics.decoded import TokenImageDecoder
from mixdistill.safe_load import read_safetensors

SUFFIXES = (".npy", ".npz", ".pt", ".safetensors")


def read_tensors(path: Path) -> Tensor | np.ndarray | dict[str, Tensor | np.ndarray]:
    """The array, or the dict of named arrays, stored in ``path`` (chosen by its suffix)."""
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    if path.suffix == ".pt":
        return torch.load(path, map_location="cpu", weights_only=True)
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    raise ValueError(f"'{path}' must end in one of {', '.join(SUFFIXES)}; got '{path.suffix}'.")


def pick(stored: object, key: str, setting: str) -> Tensor | np.ndarray:
    """The array in ``stored``: itself if it is one, else ``stored[key]``; raises naming the keys."""
    if isinstance(stored, (Tensor, np.ndarray)):
        return stored
    if not isinstance(stored, dict):
        raise TypeError(f"{setting} holds a {type(stored).__name__}; expected an array or a dict of arrays.")
    if key not in stored:
        raise KeyError(f"{setting} has no entry '{key}'; its entries are {sorted(stored)}. Set the key.")
    return stored[key]


class TokenGridData(TensorDataModule):
    """Token ids stored in a file, e.g. VQ image codes ``(N, 16, 16)`` or token sequences ``(N, L)``.

    ``path`` holds an integer array ``(N, *shape)``: a ``.npy`` file, or a ``.npz``/``.pt``/
    ``.safetensors`` file whose entry ``key`` is the array (a ``.pt`` file may also hold the tensor
    itself). Labels ``(N,)`` come from ``labels_path`` (its entry ``labels_key`` when it holds a dict)
    or, without ``labels_path``, from the entry ``labels_key`` of ``path`` when there is one.

    Args:
        path: File of token ids.
        vocab_size: Number of token values ``S`` (the codebook size); every id must lie in ``[0, S)``.
        labels_path: Optional file of class labels.
        key: Entry of the token ids in a dict-like file.
        labels_key: Entry of the labels in a dict-like file.
        num_classes: Number of classes; ``None`` infers ``max(label) + 1`` (0 without labels).
        batch_size: Examples per batch.
        num_workers: DataLoader worker processes.
        seed: Seed of the train/val/test split.
        val_fraction: Fraction held out for validation.
        test_fraction: Fraction held out for testing; 0 makes test reuse val.
        eval_batch_size: Examples per validation and test batch; ``None`` uses ``batch_size``.
        image_decoder: Maps token grids to the images they encode (e.g. a ``TokenImageDecoder`` of the
            VQ tokenizer that made them), so that sample grids show images (``to_images``).
    """

    def __init__(
        self,
        path: str,
        vocab_size: int,
        labels_path: str | None = None,
        key: str = "tokens",
        labels_key: str = "labels",
        num_classes: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.05,
        test_fraction: float = 0.0,
        image_decoder: TokenImageDecoder | None = None,
        eval_batch_size: int | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, val_fraction, test_fraction, eval_batch_size)
        if vocab_size < 1:
            raise ValueError(f"TokenGridData: vocab_size={vocab_size} must be >= 1.")
        if num_classes is not None and num_classes < 0:
            raise ValueError(f"TokenGridData: num_classes={num_classes} must be >= 0 (or None to infer).")
        self.path = path
        self._vocab_size = vocab_size
        self.labels_path = labels_path
        self.key = key
        self.labels_key = labels_key
        self._num_classes = num_classes
        self._arrays: Arrays | None = None
        self.image_decoder = image_decoder

    def to_images(self, x: Tensor) -> Tensor:
        """Images ``(B, 1, H, W)`` float in ``[0, 1]`` of token grids ``x`` ``(B, g, g)`` / ``(B, g * g)``."""
        if self.image_decoder is None:
            raise ValueError(
                f"{self.source}: image_decoder=None, so token grids have no images; set "
                f"data.init_args.image_decoder to a TokenImageDecoder of the tokenizer of the data."
            )
        return self.image_decoder(x).float().unsqueeze(1) / 255.0

    @property
    def source(self) -> str:
        return f"TokenGridData(path='{self.path}')"

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def num_classes(self) -> int:
        if self._num_classes is None:  # inferred once, then kept: the full arrays are not
            cond = self.load_arrays().cond
            self._num_classes = 0 if cond is None or cond.numel() == 0 else int(cond.max()) + 1
        return self._num_classes

    def load_splits(self) -> dict[str, Arrays]:
        self.num_classes  # noqa: B018 -- infer it before the full arrays are dropped
        splits = super().load_splits()
        self._arrays = None  # the splits hold copies; keep one copy of a large dataset in memory
        return splits

    def read(self, path: str, setting: str) -> Tensor | dict[str, Tensor | np.ndarray] | np.ndarray:
        """The contents of ``path``; raises naming ``setting`` when the file is missing."""
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"TokenGridData: {setting}='{path}' does not exist; fix the path.")
        return read_tensors(file)

    def load_arrays(self) -> Arrays:
        if self._arrays is not None:  # cached: inferring num_classes reads the labels first
            return self._arrays
        stored = self.read(self.path, "path")
        x0 = as_index_tensor(pick(stored, self.key, f"path='{self.path}'"), f"path='{self.path}'")
        if self.labels_path is not None:
            setting = f"labels_path='{self.labels_path}'"
            labels = pick(self.read(self.labels_path, "labels_path"), self.labels_key, setting)
            cond = as_index_tensor(labels, setting)
        elif isinstance(stored, dict) and self.labels_key in stored:
            cond = as_index_tensor(stored[self.labels_key], f"path='{self.path}' entry '{self.labels_key}'")
        else:
            cond = None
        if cond is not None and cond.shape != x0.shape[:1]:
            raise ValueError(
                f"{self.source}: labels have shape {tuple(cond.shape)} but the tokens {tuple(x0.shape)}; "
                f"give one label per example."
            )
        self._arrays = Arrays(x0, cond)
        return self._arrays
