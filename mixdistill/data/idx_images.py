"""Images in the IDX format of MNIST and Fashion-MNIST (gzipped or not), with their labels."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from mixdistill.data.base import Arrays, TensorDataModule, as_index_tensor, split_indices
from mixdistill.data.quantise import check_levels, quantise

#: IDX type code of unsigned bytes, the only one image datasets use.
IDX_UBYTE = 0x08

#: File stems of the training and test images and labels.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array stored in an IDX file (``.gz`` is decompressed), checked against its header.

    Args:
        path: The file.
        ndim: Expected number of dimensions (3 for images, 1 for labels).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != IDX_UBYTE or raw[3] != ndim:
        raise ValueError(
            f"'{path}' does not start with the IDX magic number 0x0000{IDX_UBYTE:02x}{ndim:02x} "
            f"(unsigned bytes, {ndim} dimensions); got {raw[:4].hex() or 'an empty file'}. "
            f"Is it the right file, fully downloaded?"
        )
    header = 4 + 4 * ndim
    dims = tuple(int(n) for n in np.frombuffer(raw[4:header], dtype=">u4"))
    if len(dims) != ndim or len(raw) - header != int(np.prod(dims)):
        raise ValueError(
            f"'{path}' has a header for shape {dims} ({int(np.prod(dims))} bytes) but "
            f"{len(raw) - header} data bytes; the file is truncated or corrupt."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


class IdxImageData(TensorDataModule):
    """Grey-scale images from IDX files: ``x0`` ``(rows, cols)`` (from the header), ``cond`` the labels.

    Reads ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte`` (split into train/val) and
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (the test split) from ``root``, each
    gzipped (``.gz``) or not. Pixels 0..255 are quantised to ``round(v * (levels-1) / 255)``.

    Args:
        root: Folder holding the four files (Fashion-MNIST: ``apt-get install dataset-fashion-mnist``).
        levels: Number of grey levels ``S`` (the vocabulary size), 2..256.
        num_classes: Number of classes of the labels (10 for MNIST and Fashion-MNIST).
        batch_size: Examples per batch.
        num_workers: DataLoader worker processes.
        seed: Seed of the train/val split.
        val_fraction: Fraction of the training files held out for validation.
    """

    def __init__(
        self,
        root: str = "/usr/share/datasets/fashion-mnist",
        levels: int = 256,
        num_classes: int = 10,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 1 / 12,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, val_fraction, 0.0)
        check_levels(levels, 256)
        if num_classes < 1:
            raise ValueError(f"IdxImageData: num_classes={num_classes} must be >= 1.")
        self.root = root
        self.levels = levels
        self._num_classes = num_classes

    @property
    def source(self) -> str:
        return f"IdxImageData(root='{self.root}')"

    @property
    def vocab_size(self) -> int:
        return self.levels

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def find(self, stem: str) -> Path:
        """The file ``root/stem.gz`` or ``root/stem``; raises naming both when neither exists."""
        root = Path(self.root)
        for path in (root / f"{stem}.gz", root / stem):
            if path.is_file():
                return path
        raise FileNotFoundError(
            f"{self.source}: neither '{root / stem}.gz' nor '{root / stem}' exists. For Fashion-MNIST run "
            f"`apt-get install dataset-fashion-mnist`, or give root= the folder holding the IDX files."
        )

    def read_split(self, split: str) -> Arrays:
        """Quantised images and labels of the ``train`` or ``test`` files."""
        image_path, label_path = (self.find(stem) for stem in IDX_FILES[split])
        images, labels = read_idx(image_path, 3), read_idx(label_path, 1)
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"'{image_path}' holds {images.shape[0]} images but '{label_path}' {labels.shape[0]} "
                f"labels; use matching files."
            )
        if images.shape[0] == 0:
            raise ValueError(f"'{image_path}' holds no images (empty dataset); use a non-empty file.")
        x0 = quantise(images, 255, self.levels)
        return Arrays(as_index_tensor(x0, f"'{image_path}'"), as_index_tensor(labels, f"'{label_path}'"))

    def load_splits(self) -> dict[str, Arrays]:
        train = self.read_split("train")
        n = train.x0.shape[0]
        index = split_indices(n, self.val_fraction, 0.0, self.seed, f"{n} training images")
        test = self.read_split("test")
        return {"train": train.select(index["train"]), "val": train.select(index["val"]), "test": test}
