"""A small image classifier whose penultimate activations are Frechet-distance features for small images.

Inception-v3 features mean little on 8x8 greyscale digits, so mixdistill trains this network on the
data itself and reports the distance as ``"FD-<data>"`` (e.g. ``"FD-digits"``), never as FID.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn

from mixdistill.data.base import TensorDataModule
from mixdistill.metrics.checkpoint import load_frozen
from mixdistill.metrics.decoded import TokenImageDecoder


class SmallImageClassifier(nn.Module):
    """Two 3x3 convolutions -> 4x4 average pool -> ``feature_dim`` features -> class logits.

    No batch norm or dropout, so training and evaluation modes compute the same features.

    Args:
        shape: Image shape ``(H, W)`` (greyscale) or ``(C, H, W)``.
        levels: Grey levels ``S``: pixel values ``0..S-1`` are scaled to ``[0, 1]``.
        num_classes: Number of class labels.
        width: Channels of the convolutions.
        feature_dim: Width of the penultimate layer (the features).
    """

    def __init__(
        self,
        shape: tuple[int, ...] = (8, 8),
        levels: int = 17,
        num_classes: int = 10,
        width: int = 32,
        feature_dim: int = 64,
    ) -> None:
        super().__init__()
        if len(shape) not in (2, 3) or levels < 2:
            raise ValueError(
                f"SmallImageClassifier: shape={shape} must be (H, W) or (C, H, W) and levels={levels} >= 2."
            )
        self.shape, self.levels, self.feature_dim = tuple(shape), levels, feature_dim
        channels = 1 if len(shape) == 2 else shape[0]
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(2 * width * 16, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations ``(B, feature_dim)`` of pixel values ``(B, *shape)`` in ``0..levels-1``."""
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"SmallImageClassifier: images of shape {tuple(x.shape[1:])}, built for {self.shape}."
            )
        h = x.float() / (self.levels - 1)
        return self.body(h.unsqueeze(1) if len(self.shape) == 2 else h)  # (B, C, H, W) -> (B, F)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.head(self.features(x))


class ClassifierFeatures(nn.Module):
    """Frozen penultimate features of a trained ``SmallImageClassifier`` for ``FrechetDistance(features=)``.

    The network is held outside the module tree, so its weights never enter a student checkpoint; it
    follows the device of its inputs. With a ``decoder``, the samples are token grids (e.g. VQ codes)
    and the features are those of the images they decode to.

    Args:
        net: The classifier, built with the settings it was trained with.
        checkpoint: Its weights (``.safetensors``, ``.pt`` or ``asset:NAME``), as ``train_classifier`` writes.
        decoder: Maps token grids to the images the classifier reads (``None``: samples are images).
    """

    def __init__(
        self, net: SmallImageClassifier, checkpoint: str, decoder: TokenImageDecoder | None = None
    ) -> None:
        super().__init__()
        net = load_classifier(net, checkpoint, "ClassifierFeatures")
        object.__setattr__(self, "net", net)  # outside the module tree: not in checkpoints
        self.decoder = decoder  # holds its tokenizer outside the tree too

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """Features ``(B, feature_dim)`` of pixel values ``(B, *shape)`` (or of token grids, decoded)."""
        images = x if self.decoder is None else self.decoder(x)  # (B, *shape)
        return self.net.to(x.device).features(images)


def load_classifier(net: SmallImageClassifier, checkpoint: str, owner: str) -> SmallImageClassifier:
    """``net`` with the weights of ``checkpoint``, frozen; errors name ``owner`` and how to get one."""
    how = f"train one with mixdistill.metrics.train_classifier(datamodule, path='{checkpoint}')."
    return load_frozen(net, checkpoint, owner, how)


def accuracy(net: SmallImageClassifier, x: Tensor, y: Tensor) -> float:
    """Fraction of ``x`` ``(N, *shape)`` classified as ``y`` ``(N,)``."""
    with torch.no_grad():
        return float((net(x).argmax(-1) == y).float().mean())


def fit(net: nn.Module, x: Tensor, y: Tensor, batch_size: int, epochs: int, lr: float, seed: int) -> None:
    """AdamW on cross-entropy over shuffled batches of ``x`` ``(N, *shape)`` with labels ``y`` ``(N,)``."""
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        for index in torch.randperm(x.shape[0], generator=gen).split(batch_size):
            loss = F.cross_entropy(net(x[index]), y[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def train_classifier(
    datamodule: TensorDataModule,
    path: str | None = None,
    width: int = 32,
    feature_dim: int = 64,
    epochs: int = 30,
    lr: float = 3e-3,
    seed: int = 0,
) -> tuple[SmallImageClassifier, float]:
    """Train a ``SmallImageClassifier`` on a labelled image DataModule; returns it and its val accuracy.

    AdamW on shuffled batches (the DataModule's ``batch_size``) of its train split (``x0`` pixels,
    ``cond`` labels); the accuracy is measured on its val split.

    Args:
        datamodule: E.g. ``DigitsData``; must serve labels (``num_classes > 0``).
        path: Where to write the weights as safetensors (``None``: not written).
        width: Convolution channels.
        feature_dim: Width of the features.
        epochs: Passes over the train split.
        lr: AdamW learning rate.
        seed: Seed of the initialisation and the batch order.
    """
    splits, levels = datamodule.splits, datamodule.vocab_size
    train, val = splits["train"], splits["val"]
    if datamodule.num_classes < 1 or train.cond is None or val.cond is None:
        raise ValueError(f"train_classifier: {datamodule.source} serves no labels; give labelled data.")
    torch.manual_seed(seed)
    net = SmallImageClassifier(tuple(train.x0.shape[1:]), levels, datamodule.num_classes, width, feature_dim)
    fit(net, train.x0, train.cond, datamodule.batch_size, epochs, lr, seed)
    net.eval()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
    return net, accuracy(net, val.x0, val.cond)
