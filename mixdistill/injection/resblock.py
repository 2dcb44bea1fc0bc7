"""Lambda through a zero-initialised path into every ResBlock (the Di4C authors' tau-LDR student)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixdistill.injection.base import LatentInjection, find_submodule
from mixdistill.nets.tauldr_layers import tauldr_timestep_embedding
from mixdistill.nets.tauldr_unet import TauLDRUNet


def _mlp(width: int, hidden: int) -> nn.ModuleList:
    """Two linear layers ``width -> hidden -> hidden`` with zero biases (tau-LDR's embedding MLPs)."""
    layers = nn.ModuleList([nn.Linear(width, hidden), nn.Linear(hidden, hidden)])
    for lin in layers:
        nn.init.zeros_(lin.bias)
    return layers


class ResBlockInjection(LatentInjection):
    """Adds a lambda embedding to the hidden activations of every ResBlock of a ``TauLDRUNet``.

    As in sony/di4c's tau-LDR student: ``e = sinusoid(scale * lambda, embed_dim)`` per coordinate.
    Down path: ``silu(tlam_mix([e, temb_sin]))`` -> ``lemb_modules``; middle and up path:
    ``silu(h_t_lam_mix([e, temb_sin, mean_hw(bottleneck)]))`` -> ``hlemb_modules`` (``temb_sin`` is
    the U-Net's sinusoidal time features, the bottleneck the features after the down path). ResBlock
    ``k`` adds ``dense1[k](silu(embedding))``, right after its time embedding. Every ``dense1``
    starts at zero, so the student computes exactly its teacher's function until training moves it.

    Args:
        module: Dotted name of the ``TauLDRUNet`` inside the teacher.
        embed_dim: Sinusoidal features per lambda coordinate and mix width (the authors: 128).
        hidden: Width of the embedding MLPs; defaults to the U-Net's time-embedding width (512).
        scale: Multiplier of lambda before the sinusoids (the authors: 1000).
    """

    exact_at_init = True  # every dense1 starts at zero: h + 0 is h

    def __init__(
        self, module: str = "net", embed_dim: int = 128, hidden: int | None = None, scale: float = 1000.0
    ) -> None:
        super().__init__()
        self.module, self.embed_dim, self.hidden, self.scale = module, embed_dim, hidden, scale
        self._lam: Tensor | None = None

    def attach(self, model: nn.Module, latent_dim: int) -> None:
        net = find_submodule(model, self.module, "ResBlockInjection: module")
        if not isinstance(net, TauLDRUNet):
            raise ValueError(
                f"ResBlockInjection: module='{self.module}' is a {type(net).__name__}, not a TauLDRUNet; "
                "use AdditiveInjection for other backbones."
            )
        e, t = latent_dim * self.embed_dim, net.time_embed_dim
        hidden = self.hidden or 4 * net.time_embed_dim
        self.tlam_mix = nn.Linear(e + t, self.embed_dim)
        self.lemb_modules = _mlp(self.embed_dim, hidden)
        self.h_t_lam_mix = nn.Linear(e + t + net.bottleneck_channels, self.embed_dim)
        self.hlemb_modules = _mlp(self.embed_dim, hidden)
        for lin in (self.tlam_mix, self.h_t_lam_mix):
            nn.init.zeros_(lin.bias)
        self.dense1 = nn.ModuleList(nn.Linear(hidden, block.out_ch) for block in net.resblocks())
        for lin in self.dense1:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        net.set_latent_path(self)

    def set_latent(self, lam: Tensor | None) -> None:
        self._lam = lam  # (B, k)

    def embed(self, time_features: Tensor, bottleneck: Tensor | None) -> Tensor | None:
        """The lambda embedding ``(B, hidden)`` of the down path, or of the middle and up path."""
        if self._lam is None:
            return None
        B = self._lam.shape[0]
        lam = tauldr_timestep_embedding(self._lam.reshape(-1) * self.scale, self.embed_dim).view(B, -1)
        if bottleneck is None:
            mix, mlp = self.tlam_mix(torch.cat([lam, time_features], 1)), self.lemb_modules
        else:
            pooled = bottleneck.mean(dim=(2, 3))  # (B, C)
            mix, mlp = self.h_t_lam_mix(torch.cat([lam, time_features, pooled], 1)), self.hlemb_modules
        return mlp[1](F.silu(mlp[0](F.silu(mix))))

    def block_offset(self, index: int, embedding: Tensor) -> Tensor:
        """``(B, out_ch)`` for ResBlock ``index``."""
        return self.dense1[index](F.silu(embedding))
