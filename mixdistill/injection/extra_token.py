"""Lambda as one extra token of a transformer backbone (the paper's MaskGIT and SDTT students)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from mixdistill.injection.base import LatentEmbedding, LatentInjection, find_submodule


@runtime_checkable
class LatentTokenBackbone(Protocol):
    """A backbone that appends ``latent_token`` ``(B, H)``, when set, as one extra token after its own
    tokens (without position or rotary embedding) and drops it from its output.
    """

    latent_token: Tensor | None
    latent_width: int


class ExtraTokenInjection(LatentInjection):
    """Feeds ``LatentEmbedding(lambda)`` to a ``LatentTokenBackbone`` as one extra token.

    Unlike the additive hook, a student built this way does not compute exactly its teacher's
    function at initialisation: even a zero token takes part of every query's attention mass. The
    difference is measured by ``mixdistill.testing.check_teacher`` and is small for long sequences.

    Args:
        module: Dotted name of the backbone inside the teacher (``"net"`` for a ``NetworkTeacher``).
        hidden: MLP width of the latent embedding (the authors: 512).
        freq_dim: Sinusoidal features per lambda coordinate (the authors: 128).
        zero_init: Start the embedding at exactly zero (the token is then the same for every lambda
            until training moves it); the authors' projection starts at random.
    """

    def __init__(
        self, module: str = "net", hidden: int = 512, freq_dim: int = 128, zero_init: bool = False
    ) -> None:
        super().__init__()
        self.module, self.hidden, self.freq_dim, self.zero_init = module, hidden, freq_dim, zero_init
        self.embedding: LatentEmbedding | None = None
        # The backbone is a part of the student already: kept outside nn.Module's registry, else
        # every checkpoint would hold its weights twice (once more under "injection._target.").
        self.__dict__["_target"] = None
        self._register_load_state_dict_pre_hook(_drop_duplicated_backbone)

    def attach(self, model: nn.Module, latent_dim: int) -> None:
        target = find_submodule(model, self.module, "ExtraTokenInjection: module")
        if not isinstance(target, LatentTokenBackbone):
            raise ValueError(
                f"ExtraTokenInjection: module='{self.module}' ({type(target).__name__}) does not take a "
                "latent token (it needs latent_token and latent_width attributes); use AdditiveInjection."
            )
        self.embedding = LatentEmbedding(target.latent_width, latent_dim, self.freq_dim, self.hidden)
        if not self.zero_init:
            last = self.embedding.mlp[-1]
            nn.init.normal_(last.weight, std=last.in_features**-0.5)
        self.__dict__["_target"] = target

    def set_latent(self, lam: Tensor | None) -> None:
        self._target.latent_token = None if lam is None else self.embedding(lam)  # (B, H)


def _drop_duplicated_backbone(state: dict, prefix: str, *args) -> None:
    """Checkpoints written before the backbone was unregistered hold a second copy of its weights
    under ``<prefix>_target.``; the backbone is loaded from its own keys, so that copy is dropped.
    """
    for key in [k for k in state if k.startswith(prefix + "_target.")]:
        del state[key]
