"""The shared base of every DataModule: integer tensors split into train/val/test and served as dicts.

A subclass says where its examples come from (``load_arrays``) and what they mean (``vocab_size``,
``num_classes``); this class checks them, splits them with a seeded permutation and builds the loaders.
Batches are ``{"x0": LongTensor (B, *shape), "cond": LongTensor (B,)}``; ``cond`` only for labelled data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mixdistill.data.resumable import EpochSampler, ResumableLoader, shuffle_seed

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Arrays:
    """Examples and optional labels of one split.

    Attributes:
        x0: Data values ``(N, *shape)``, int64.
        cond: Class labels ``(N,)``, int64, or ``None`` for unlabelled data.
    """

    x0: Tensor
    cond: Tensor | None = None

    def select(self, index: Tensor) -> Arrays:
        """The examples at ``index`` (a 1-D index tensor)."""
        return Arrays(self.x0[index], None if self.cond is None else self.cond[index])


class ArrayDataset(Dataset):
    """A map-style dataset over ``Arrays`` whose items are ``{"x0": ..., "cond": ...}`` dicts."""

    def __init__(self, arrays: Arrays) -> None:
        self.arrays = arrays

    def __len__(self) -> int:
        return self.arrays.x0.shape[0]

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        item = {"x0": self.arrays.x0[i]}
        if self.arrays.cond is not None:
            item["cond"] = self.arrays.cond[i]
        return item


def as_index_tensor(values: Tensor | np.ndarray, what: str) -> Tensor:
    """``values`` as an int64 tensor; raises unless its dtype is an integer type.

    Args:
        values: A tensor or numpy array of token ids or labels.
        what: The setting the values came from, named in the error (e.g. ``"path='codes.npy'"``).
    """
    if isinstance(values, np.ndarray):
        if not np.issubdtype(values.dtype, np.integer):
            raise TypeError(f"{what} holds dtype {values.dtype}; token ids and labels must be integers.")
        return torch.from_numpy(values.astype(np.int64, copy=False))
    if not isinstance(values, Tensor):
        raise TypeError(f"{what} holds a {type(values).__name__}; expected an integer tensor or array.")
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        raise TypeError(f"{what} holds dtype {values.dtype}; token ids and labels must be integers.")
    return values.long()


def split_sizes(n: int, val_fraction: float, test_fraction: float, what: str) -> tuple[int, int, int]:
    """Sizes ``(train, val, test)`` of ``n`` examples split by rounded fractions; raises if one is empty.

    Args:
        n: Number of examples.
        val_fraction: Fraction for validation, in ``(0, 1)``.
        test_fraction: Fraction for testing, in ``[0, 1)``; 0 means no separate test split.
        what: What is being split, named in the error (e.g. ``"120 documents"``).
    """
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    if n_val == 0:
        raise ValueError(
            f"val_fraction={val_fraction} of {what} leaves the validation split empty; "
            f"raise val_fraction or provide more data."
        )
    if test_fraction > 0 and n_test == 0:
        raise ValueError(
            f"test_fraction={test_fraction} of {what} leaves the test split empty; "
            f"raise test_fraction, set it to 0 (test reuses val) or provide more data."
        )
    if n - n_val - n_test < 1:
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} of {what} leave no training "
            f"examples; lower the fractions or provide more data."
        )
    return n - n_val - n_test, n_val, n_test


def split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int, what: str
) -> dict[str, Tensor]:
    """Disjoint sorted index sets ``{"train", "val", "test"}`` over ``range(n)`` from a seeded permutation.

    The same ``(n, fractions, seed)`` always gives the same split. ``"test"`` is empty when
    ``test_fraction`` is 0.
    """
    n_train, n_val, n_test = split_sizes(n, val_fraction, test_fraction, what)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = torch.split(perm, [n_val, n_test, n_train])
    # Sorted so that every split keeps the source order (text stays in reading order).
    return {"val": parts[0].sort().values, "test": parts[1].sort().values, "train": parts[2].sort().values}


class TensorDataModule(L.LightningDataModule, ABC):
    """Base DataModule over integer tensors held in memory.

    Subclasses implement ``load_arrays`` (all examples; split here) or override ``load_splits`` (when
    the source has its own splits), and the properties ``vocab_size`` and ``num_classes``.

    Args:
        batch_size: Examples per batch.
        num_workers: DataLoader worker processes (0 loads in the main process).
        seed: Seed of the train/val/test split; the same seed gives the same split.
        val_fraction: Fraction of the examples held out for validation, in ``(0, 1)``.
        test_fraction: Fraction held out for testing, in ``[0, 1)``; 0 makes the test loader reuse val.
        eval_batch_size: Examples per validation and test batch; ``None`` uses ``batch_size``.
    """

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        eval_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1.")
        if eval_batch_size is not None and eval_batch_size < 1:
            raise ValueError(f"eval_batch_size={eval_batch_size} must be >= 1 (or null to use batch_size).")
        if num_workers < 0:
            raise ValueError(f"num_workers={num_workers} must be >= 0.")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction={val_fraction} must lie in (0, 1).")
        if not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise ValueError(
                f"test_fraction={test_fraction} must lie in [0, 1) with val_fraction + test_fraction < 1 "
                f"(val_fraction={val_fraction})."
            )
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size if eval_batch_size is not None else batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self._splits: dict[str, Arrays] | None = None

    # ----- what a subclass provides -------------------------------------------------------------

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of data values ``S``; every id lies in ``[0, S)``."""

    @property
    def num_classes(self) -> int:
        """Number of class labels served as ``cond``; 0 for unlabelled data."""
        return 0

    @property
    def source(self) -> str:
        """The setting the data came from, as named in error messages (e.g. ``"path='a.npy'"``)."""
        return type(self).__name__

    def load_arrays(self) -> Arrays:
        """All examples, before splitting. Override this or ``load_splits``."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_arrays or load_splits.")

    def load_splits(self) -> dict[str, Arrays]:
        """The ``train``/``val``/``test`` examples; by default ``load_arrays`` split by the fractions."""
        arrays = self.load_arrays()
        if arrays.x0.dim() < 2:
            raise ValueError(
                f"{self.source} has shape {tuple(arrays.x0.shape)}; expected (N, *shape): "
                f"a batch axis and at least one axis per example."
            )
        n = arrays.x0.shape[0]
        if n == 0:
            raise ValueError(f"{self.source} holds no examples (empty dataset); point it at non-empty data.")
        index = split_indices(n, self.val_fraction, self.test_fraction, self.seed, f"{n} examples")
        return {name: arrays.select(index[name]) for name in SPLITS if index[name].numel() > 0}

    # ----- checked, split data ------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Load, check and split the data once; later calls (one per stage) reuse it."""
        if self._splits is not None:
            return
        splits = self.load_splits()
        for name, arrays in splits.items():
            self.check_arrays(arrays, name)
            if arrays.x0.shape[1:] != splits["train"].x0.shape[1:]:
                raise ValueError(
                    f"{self.source}: the {name} examples have shape {tuple(arrays.x0.shape[1:])} but the "
                    f"train examples {tuple(splits['train'].x0.shape[1:])}; all splits must share one shape."
                )
        if "test" not in splits:
            splits["test"] = splits["val"]
        self._splits = splits

    @property
    def splits(self) -> dict[str, Arrays]:
        """The checked ``train``/``val``/``test`` arrays (loads them on first use)."""
        self.setup()
        assert self._splits is not None
        return self._splits

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example (without the batch axis)."""
        return tuple(self.splits["train"].x0.shape[1:])

    def check_arrays(self, arrays: Arrays, split: str) -> None:
        """Raise a clear error unless ``arrays`` holds in-range int64 ids (and labels) of one shape."""
        x0, where = arrays.x0, f"{self.source} ({split} split)"
        if x0.dtype != torch.long:
            raise TypeError(f"{where} has dtype {x0.dtype}; expected int64 token ids.")
        if x0.dim() < 2 or x0.shape[0] == 0:
            raise ValueError(f"{where} has shape {tuple(x0.shape)}; expected (N >= 1, *shape) examples.")
        low, high = int(x0.min()), int(x0.max())
        if low < 0 or high >= self.vocab_size:
            raise ValueError(
                f"{where} holds ids in [{low}, {high}], outside [0, vocab_size={self.vocab_size}); "
                f"fix the data or raise vocab_size."
            )
        self.check_labels(arrays, where)

    def check_labels(self, arrays: Arrays, where: str) -> None:
        """Raise unless labels are present exactly when ``num_classes > 0`` and lie in range."""
        cond = arrays.cond
        if cond is None:
            if self.num_classes > 0:
                raise ValueError(f"{where} has no labels but num_classes={self.num_classes}; give labels.")
            return
        if cond.dtype != torch.long or cond.shape != (arrays.x0.shape[0],):
            raise ValueError(
                f"{where} labels have shape {tuple(cond.shape)} and dtype {cond.dtype}; "
                f"expected int64 of shape ({arrays.x0.shape[0]},), one label per example."
            )
        low, high = int(cond.min()), int(cond.max())
        if low < 0 or high >= self.num_classes:
            raise ValueError(
                f"{where} holds labels in [{low}, {high}], outside [0, num_classes={self.num_classes}); "
                f"fix the labels or set num_classes."
            )

    # ----- loaders ------------------------------------------------------------------------------

    def _loader(self, split: str) -> DataLoader:
        """The ``split``'s loader in source order; its own generator seeds the workers.

        Every rank of a DDP run reads the whole split (a one-replica ``DistributedSampler``, which
        Lightning leaves in place), so that the evaluation's reference on each rank is exactly the
        one a single process has: ``mixdistill test`` gives the same table on 1 or N devices.
        """
        dataset = ArrayDataset(self.splits[split])
        return DataLoader(
            dataset,
            sampler=DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=False),
            batch_size=self.eval_batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> ResumableLoader:
        """Shuffled by ``(seed, epoch)`` alone and resumable mid-epoch (``mixdistill.data.resumable``)."""
        dataset = ArrayDataset(self.splits["train"])
        trainer = self.trainer
        ranks = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        return ResumableLoader(
            dataset,
            EpochSampler(dataset, shuffle_seed(self.seed), *ranks),
            self._train_position,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _train_position(self) -> tuple[int, int]:
        """``(epoch, batches trained in it)`` of the running fit; a finished epoch is the next one's start."""
        loop = self.trainer.fit_loop
        epoch = loop.epoch_progress.current.completed
        trained = loop.epoch_loop.batch_progress.current.processed
        return (epoch + 1, 0) if trained >= self.trainer.num_training_batches else (epoch, trained)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        """``predict`` generates samples, so its batches come from the model's ``predict_dataloader``."""
        return self.trainer.lightning_module.predict_dataloader()
