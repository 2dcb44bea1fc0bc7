"""A small VQ-VAE that turns grey images (e.g. Fashion-MNIST 28 x 28) into token grids and back.

Encoder: two stride-2 convolutions (28 -> 14 -> 7) and residual blocks to ``embed_dim`` channels;
each of the ``grid x grid`` vectors is replaced by its nearest codebook entry; the decoder mirrors the
encoder with transposed convolutions. The codebook is not trained by gradients but by exponential
moving averages of the vectors assigned to each entry (van den Oord et al. 2017, appendix), and an
entry that has not been used for a while is moved onto a random encoder output, so most of the
codebook stays in use. Pixels are ``uint8`` intensities ``0..255`` on both ends.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass(frozen=True)
class VQTokenizerSizes:
    """Sizes of a ``VQTokenizer``.

    Attributes:
        image_size: Side of the square grey images (28 for Fashion-MNIST).
        codebook_size: Codebook entries ``S`` (the token vocabulary).
        embed_dim: Width of a code vector.
        width: Channels after the first convolution (doubled after the second).
        res_blocks: Residual blocks at the grid resolution, in the encoder and in the decoder.
        decay: EMA decay of the codebook statistics.
        commitment: Weight of the commitment loss ``|z - sg(e)|^2``.
        dead_after: A code unused (EMA count below 1) is restarted on a random encoder vector.
    """

    image_size: int = 28
    codebook_size: int = 256
    embed_dim: int = 32
    width: int = 32
    res_blocks: int = 1
    decay: float = 0.99
    commitment: float = 0.25
    dead_after: float = 1.0

    @property
    def grid(self) -> int:
        """Side of the token grid (the image side over 4)."""
        return self.image_size // 4

    def __post_init__(self) -> None:
        if self.image_size % 4 or self.image_size < 4:
            raise ValueError(f"VQTokenizerSizes: image_size={self.image_size} must be a multiple of 4.")
        if self.codebook_size < 2 or self.embed_dim < 1 or self.width < 1 or self.res_blocks < 0:
            raise ValueError(f"VQTokenizerSizes: sizes must be positive; got {asdict(self)}.")
        if not 0 < self.decay < 1:
            raise ValueError(f"VQTokenizerSizes: decay={self.decay} must lie in (0, 1).")


class ResBlock(nn.Module):
    """``x + conv1x1(relu(conv3x3(relu(x))))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class EMACodebook(nn.Module):
    """Nearest-entry quantiser whose entries follow EMAs of their assigned vectors.

    Buffers (saved with the weights): ``embed`` ``(S, d)``, ``cluster_size`` ``(S,)`` and
    ``embed_sum`` ``(S, d)``.
    """

    def __init__(self, size: int, dim: int, decay: float, dead_after: float) -> None:
        super().__init__()
        self.decay, self.dead_after, self.eps = decay, dead_after, 1e-5
        embed = torch.randn(size, dim) * 0.1
        self.register_buffer("embed", embed)
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("embed_sum", embed.clone())

    def codes(self, z: Tensor) -> Tensor:
        """Index of the nearest entry of each vector ``(N, d) -> (N,)``."""
        dist = z.square().sum(1, keepdim=True) - 2 * z @ self.embed.T + self.embed.square().sum(1)
        return dist.argmin(1)

    @torch.no_grad()
    def update(self, z: Tensor, codes: Tensor) -> None:
        """One EMA step on the vectors ``z`` ``(N, d)`` assigned to ``codes`` ``(N,)``, then restarts."""
        onehot = F.one_hot(codes, self.embed.shape[0]).type(z.dtype)  # (N, S)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(onehot.T @ z, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        # Laplace smoothing keeps rarely used entries from dividing by ~0.
        size = (self.cluster_size + self.eps) / (n + self.embed.shape[0] * self.eps) * n
        self.embed.copy_(self.embed_sum / size.unsqueeze(1))
        dead = self.cluster_size < self.dead_after
        if dead.any():
            pick = torch.randint(z.shape[0], (int(dead.sum()),), device=z.device)
            self.embed[dead] = z[pick]
            self.embed_sum[dead] = z[pick]
            self.cluster_size[dead] = 1.0


class VQTokenizer(nn.Module):
    """Grey images ``(B, H, W)`` uint8 <-> token grids ``(B, H/4, W/4)`` long in ``[0, codebook_size)``.

    Args:
        sizes: The model's sizes (defaults: 28 x 28 images, 7 x 7 grids of 256 codes).
    """

    def __init__(self, sizes: VQTokenizerSizes | None = None) -> None:
        super().__init__()
        self.sizes = sizes = sizes if sizes is not None else VQTokenizerSizes()
        w = sizes.width
        self.encoder = nn.Sequential(
            nn.Conv2d(1, w, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1),
            *(ResBlock(2 * w) for _ in range(sizes.res_blocks)),
            nn.ReLU(),
            nn.Conv2d(2 * w, sizes.embed_dim, 1),
        )
        self.codebook = EMACodebook(sizes.codebook_size, sizes.embed_dim, sizes.decay, sizes.dead_after)
        self.decoder = nn.Sequential(
            nn.Conv2d(sizes.embed_dim, 2 * w, 3, padding=1),
            *(ResBlock(2 * w) for _ in range(sizes.res_blocks)),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(w, 1, 4, stride=2, padding=1),
        )

    @property
    def codebook_size(self) -> int:
        return self.sizes.codebook_size

    def check_images(self, images: Tensor) -> None:
        side = self.sizes.image_size
        if images.dim() != 3 or tuple(images.shape[1:]) != (side, side):
            raise ValueError(f"VQTokenizer: images must be (B, {side}, {side}); got {tuple(images.shape)}.")

    def latents(self, images: Tensor) -> Tensor:
        """Encoder vectors ``(B, d, g, g)`` of ``uint8``-valued images ``(B, H, W)``."""
        self.check_images(images)
        x = images.float().unsqueeze(1) / 127.5 - 1.0  # (B, 1, H, W) in [-1, 1]
        return self.encoder(x)

    def quantise(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Codes ``(B, g, g)`` and code vectors ``(B, d, g, g)`` of encoder vectors ``(B, d, g, g)``."""
        B, d, g, _ = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)  # (B g g, d)
        codes = self.codebook.codes(flat)
        return codes.view(B, g, g), self.codebook.embed[codes].view(B, g, g, d).permute(0, 3, 1, 2)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """Token grids ``(B, g, g)`` of images ``(B, H, W)`` with values 0..255."""
        return self.quantise(self.latents(images))[0]

    def decode_vectors(self, q: Tensor) -> Tensor:
        """Reconstruction in ``[-1, 1]`` units ``(B, H, W)`` (unclamped) of code vectors."""
        return self.decoder(q).squeeze(1)

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """Images ``(B, H, W)`` uint8 of token grids ``(B, g, g)`` (or ``(B, g * g)``)."""
        g = self.sizes.grid
        codes = codes.reshape(codes.shape[0], g, g).long()
        if int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size:
            raise ValueError(
                f"VQTokenizer.decode: token ids must lie in [0, {self.codebook_size}); got "
                f"[{int(codes.min())}, {int(codes.max())}]."
            )
        q = self.codebook.embed[codes].permute(0, 3, 1, 2)  # (B, d, g, g)
        x = self.decode_vectors(q)
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

    def loss(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Training loss (reconstruction MSE in ``[-1, 1]`` units plus commitment) and the codes.

        Updates the codebook EMA when the module is in training mode; gradients reach the encoder
        through the straight-through estimator.
        """
        z = self.latents(images)
        codes, q = self.quantise(z)
        if self.training:
            self.codebook.update(z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1]), codes.flatten())
        commit = F.mse_loss(z, q.detach())
        recon = self.decode_vectors(z + (q - z).detach())
        target = images.float() / 127.5 - 1.0
        return F.mse_loss(recon, target) + self.sizes.commitment * commit, codes
