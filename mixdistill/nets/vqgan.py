"""taming-transformers' ``VQModel`` (the VQGAN that MaskGIT's tokens come from) and its checkpoint loader.

``encode(images in [-1, 1]) -> tokens (B, R/16, R/16)`` and ``decode(tokens) -> images``. The module
keys are taming's (``encoder.*``, ``decoder.*``, ``quantize.embedding.weight``, ``quant_conv``,
``post_quant_conv``), so the published Lightning checkpoint loads strictly once its training-only
``loss.*`` entries (discriminator and LPIPS) are set aside.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import Tensor, nn

from mixdistill.assets import resolve_asset
from mixdistill.nets.vqgan_layers import Decoder, Encoder, VQGANSizes
from mixdistill.safe_load import named_global
from mixdistill.teachers.mdlm_checkpoint import inert_load

#: Prefix of the training-loss modules inside a taming checkpoint; they are not part of the model.
LOSS_PREFIX = "loss."


class VectorQuantizer(nn.Module):
    """Nearest codebook entry by squared Euclidean distance (taming's ``VectorQuantizer2``).

    Args:
        n_embed: Codebook entries.
        embed_dim: Vector size.
    """

    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    def indices(self, z: Tensor) -> Tensor:
        """Codes ``(B, h, w)`` of features ``(B, C, h, w)``."""
        B, C, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, C)  # (B h w, C)
        e = self.embedding.weight  # (n, C)
        dist = flat.square().sum(1, keepdim=True) + e.square().sum(1) - 2.0 * flat @ e.T  # (B h w, n)
        return dist.argmin(1).view(B, h, w)

    def vectors(self, codes: Tensor) -> Tensor:
        """Codebook vectors ``(B, C, h, w)`` of codes ``(B, h, w)``."""
        return self.embedding(codes).permute(0, 3, 1, 2).contiguous()


class VQModel(nn.Module):
    """Encoder, codebook and decoder of a VQGAN (no training losses).

    Args:
        sizes: The architecture (MaskGIT's ImageNet f16 VQGAN by default).
        checkpoint: A taming Lightning checkpoint (``last.ckpt``) whose ``state_dict`` holds the model;
            ``None`` keeps random weights.
        allow_pickle: Read a checkpoint that pickles objects besides tensors (taming's Lightning
            checkpoints hold hyper-parameters and callbacks, which ``weights_only=True`` refuses) with
            the inert reader of :mod:`mixdistill.teachers.mdlm_checkpoint`: those objects become
            placeholders and none of their code runs.
    """

    def __init__(
        self, sizes: VQGANSizes | None = None, checkpoint: str | None = None, allow_pickle: bool = False
    ) -> None:
        super().__init__()
        self.sizes = sizes if sizes is not None else VQGANSizes()
        self.encoder, self.decoder = Encoder(self.sizes), Decoder(self.sizes)
        self.quantize = VectorQuantizer(self.sizes.n_embed, self.sizes.embed_dim)
        self.quant_conv = nn.Conv2d(self.sizes.z_channels, self.sizes.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(self.sizes.embed_dim, self.sizes.z_channels, 1)
        if checkpoint is not None:
            self.load_checkpoint(checkpoint, allow_pickle)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """Token grids ``(B, R/f, R/f)`` long of images ``(B, 3, R, R)`` with values in ``[-1, 1]``."""
        return self.quantize.indices(self.quant_conv(self.encoder(images)))

    @torch.no_grad()
    def decode(self, tokens: Tensor) -> Tensor:
        """Images ``(B, 3, R, R)`` (about ``[-1, 1]``) of token grids ``(B, h, w)``."""
        return self.decoder(self.post_quant_conv(self.quantize.vectors(tokens)))

    def load_checkpoint(self, path: str | Path, allow_pickle: bool = False) -> None:
        """Load a taming checkpoint strictly (``loss.*`` entries set aside); errors name the file."""
        state = read_taming_state(path, allow_pickle)
        own = self.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"VQModel: checkpoint='{path}' does not match VQModel({self.sizes}): missing {missing[:5]} "
                f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})."
            )
        wrong = [
            f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
            for k, v in state.items()
            if v.shape != own[k].shape
        ]
        if wrong:
            raise ValueError(f"VQModel: checkpoint='{path}' has other shapes (file vs model): {wrong[:3]}.")
        self.load_state_dict(state, strict=True)


def read_taming_state(path: str | Path, allow_pickle: bool = False) -> dict[str, Tensor]:
    """The model entries of a taming checkpoint's ``state_dict``, without its ``loss.*`` entries."""
    file = resolve_asset(path)
    if not file.is_file():
        raise FileNotFoundError(f"VQModel: checkpoint='{file}' does not exist.")
    try:
        obj = inert_load(file) if allow_pickle else torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"VQModel: checkpoint='{file}' holds pickled objects that weights_only=True refuses"
            f"{named_global(err)}; pass allow_pickle=True (--allow-pickle) to read its tensors with the "
            "inert reader, which runs no code from the file."
        ) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        found = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"VQModel: checkpoint='{file}' has no 'state_dict' entry (found {found}).")
    return {k: v for k, v in obj["state_dict"].items() if not k.startswith(LOSS_PREFIX)}
