"""Images on disk for ``tokenize_images``: a folder or an IDX file in, PNGs and a grid out.

A folder ``DIR/<class>/*.png|jpg`` gives labels by sorted class name, as torchvision's
``ImageFolder`` does; images directly in ``DIR`` give none. An IDX images file (MNIST,
Fashion-MNIST) gives grey images, and an IDX labels file beside it their labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from mixdistill.data.idx_images import read_idx

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}

#: Images shown in ``grid.png`` (the first ones decoded) and per grid row.
GRID_IMAGES, GRID_ROW = 64, 8


@dataclass(frozen=True)
class ImageSource:
    """Images to encode, read one at a time so that a large dataset need not fit in memory.

    Attributes:
        setting: The command-line setting the images came from, for error messages.
        count: Number of images.
        read: The image of an index ``0 <= i < count``.
        labels: Their class labels ``(count,)`` int64, or None.
        classes: Class names, indexed by label (may be empty).
        shape: The shape every image has (IDX files), or None (a folder: any sizes).
    """

    setting: str
    count: int
    read: Callable[[int], Image.Image]
    labels: np.ndarray | None
    classes: list[str]
    shape: tuple[int, ...] | None = None


def find_images(root: Path) -> tuple[list[Path], list[int] | None, list[str]]:
    """Image files under ``root``, their labels (class subfolders, sorted) or None, and class names."""
    if not root.is_dir():
        raise FileNotFoundError(f"--images '{root}' is not a folder.")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if classes:
        pairs = [(f, c) for c, name in enumerate(classes) for f in sorted((root / name).iterdir())]
        pairs = [(f, c) for f, c in pairs if f.suffix.lower() in SUFFIXES]
        files, labels = [f for f, _ in pairs], [c for _, c in pairs]
    else:
        files, labels = sorted(f for f in root.iterdir() if f.suffix.lower() in SUFFIXES), None
    if not files:
        raise FileNotFoundError(f"--images '{root}' holds no images ({', '.join(sorted(SUFFIXES))}).")
    return files, labels, classes


def folder_source(root: Path) -> ImageSource:
    """The images of a folder (see the module docstring)."""
    files, labels, classes = find_images(root)
    return ImageSource(
        setting=f"--images '{root}'",
        count=len(files),
        read=lambda i: Image.open(files[i]),
        labels=None if labels is None else np.array(labels, dtype=np.int64),
        classes=classes,
    )


def idx_source(path: Path, labels_path: Path | None = None) -> ImageSource:
    """The grey images of an IDX file, with the labels of an IDX labels file when one is given.

    The class names are the label numbers ``"0"..str(max label)``, as IDX files name no classes.
    """
    if not path.is_file():
        raise FileNotFoundError(f"--idx '{path}' is not a file; give an IDX images file (idx3-ubyte[.gz]).")
    images = read_idx(path, 3)
    labels = classes = None
    if labels_path is not None:
        if not labels_path.is_file():
            raise FileNotFoundError(f"--labels '{labels_path}' is not a file; give an IDX labels file.")
        labels = read_idx(labels_path, 1).astype(np.int64)
        if len(labels) != len(images):
            raise ValueError(
                f"--idx '{path}' holds {len(images)} images but --labels '{labels_path}' "
                f"{len(labels)} labels; give matching files."
            )
        classes = [str(c) for c in range(int(labels.max()) + 1)] if len(labels) else []
    if len(images) == 0:
        raise ValueError(f"--idx '{path}' holds no images; give a non-empty file.")
    return ImageSource(
        setting=f"--idx '{path}'",
        count=len(images),
        read=lambda i: Image.fromarray(images[i]),  # 2-D uint8: mode "L"
        labels=labels,
        classes=classes or [],
        shape=tuple(images.shape[1:]),
    )


def fit_square(img: Image.Image, size: int) -> Image.Image:
    """``img`` with its shorter side resized (bilinear) to ``size`` and centre-cropped to a square.

    This is MaskGIT-pytorch's ImageNet evaluation transform; an image already ``size x size`` is
    returned unchanged, so exact-size inputs keep their exact pixels.
    """
    if img.size == (size, size):
        return img
    scale = size / min(img.size)
    w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
    img = img.resize((w, h), Image.BILINEAR)
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def image_grid(images: np.ndarray, per_row: int = GRID_ROW, pad: int = 2) -> np.ndarray:
    """Images ``(N, H, W[, 3])`` uint8 tiled ``per_row`` to a row, ``pad`` black pixels between.

    torchvision's ``make_grid`` (as the sample grids of ``mixdistill.image_grid``), kept in uint8 so
    that the grid's pixels are the images' own.
    """
    grey = images.ndim == 3
    t = torch.from_numpy(np.ascontiguousarray(images))
    t = t.unsqueeze(1) if grey else t.permute(0, 3, 1, 2)  # (N, C, H, W)
    grid = make_grid(t, nrow=min(per_row, len(images)), padding=pad, pad_value=0)  # (3, H', W')
    return (grid[0] if grey else grid.permute(1, 2, 0)).contiguous().numpy()


def write_pngs(images: np.ndarray, out: Path, start: int) -> None:
    """Save uint8 images ``(b, H, W)`` (grey, mode "L") or ``(b, H, W, 3)`` (RGB) as ``out/00000.png``...

    The first is numbered ``start``.
    """
    for j, img in enumerate(images):
        Image.fromarray(img).save(out / f"{start + j:05d}.png")


def write_grid(images: np.ndarray, path: Path) -> None:
    """Save the first ``GRID_IMAGES`` of ``images`` (as ``write_pngs`` takes them) as one grid PNG."""
    Image.fromarray(image_grid(images[:GRID_IMAGES])).save(path)
