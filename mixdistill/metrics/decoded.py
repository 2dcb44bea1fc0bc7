"""Token grids -> grey images through a trained VQ tokenizer, for metrics and pictures of VQ samples.

Metrics on images (classifier features, class accuracy) and sample grids then read generated VQ
codes as the images they stand for, e.g. Fashion-MNIST 28 x 28 images from 7 x 7 grids of 256 codes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixdistill.vq_training import load_tokenizer


class TokenImageDecoder(nn.Module):
    """Maps token grids ``(B, g, g)`` or ``(B, g * g)`` long to images ``(B, H, W)`` long in ``0..255``.

    The tokenizer is held outside the module tree, so its weights never enter a student checkpoint
    (``module_fingerprint`` still hashes it, so a reference cache misses when it changes); it follows
    the device of its inputs.

    Args:
        tokenizer: The ``VQTokenizer`` weights file written by ``save_tokenizer`` (or ``asset:NAME``,
            e.g. ``asset:fashion_vq.safetensors``).
    """

    def __init__(self, tokenizer: str) -> None:
        super().__init__()
        vq = load_tokenizer(tokenizer).requires_grad_(False)
        object.__setattr__(self, "tokenizer", vq)  # outside the module tree: not in checkpoints
        self._source = tokenizer  # private: the same weights under another path fingerprint alike

    @property
    def image_size(self) -> int:
        """Side ``H = W`` of the decoded images."""
        return self.tokenizer.sizes.image_size

    @property
    def grid(self) -> int:
        """Side ``g`` of the token grids."""
        return self.tokenizer.sizes.grid

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """Images ``(B, H, W)`` long (values ``0..255``) of token grids ``(B, g, g)`` / ``(B, g * g)``."""
        g = self.grid
        if x.dim() < 2 or x.shape[1:].numel() != g * g:
            raise ValueError(
                f"TokenImageDecoder(tokenizer='{self._source}'): token grids must be (B, {g}, {g}) or "
                f"(B, {g * g}); got {tuple(x.shape)}. Use the tokenizer the data was encoded with."
            )
        return self.tokenizer.to(x.device).decode(x).long()
