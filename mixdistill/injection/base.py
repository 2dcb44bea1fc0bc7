"""Where lambda enters a backbone: the latent embedding and the injection contract."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn

from mixdistill.nets.embeddings import sinusoidal_embedding


class LatentEmbedding(nn.Module):
    """lambda ``(B, k)`` -> sinusoidal features of ``scale * lambda`` -> MLP -> ``(B, out_dim)``.

    The last layer starts at zero, so the embedding is exactly 0 at initialisation.

    Args:
        out_dim: Width of the vector added to the backbone.
        latent_dim: ``k``, the dimension of lambda (1 in every experiment of the paper).
        freq_dim: Sinusoidal features per lambda coordinate (the paper: 128).
        hidden: MLP width; defaults to ``out_dim``.
        scale: Multiplier of lambda before the sinusoidal features (the paper: 1000).
    """

    def __init__(
        self,
        out_dim: int,
        latent_dim: int = 1,
        freq_dim: int = 128,
        hidden: int | None = None,
        scale: float = 1000.0,
    ) -> None:
        super().__init__()
        hidden = hidden or out_dim
        self.freq_dim, self.scale = freq_dim, scale
        self.mlp = nn.Sequential(
            nn.Linear(latent_dim * freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, out_dim)
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, lam: Tensor) -> Tensor:
        feats = sinusoidal_embedding(self.scale * lam, self.freq_dim)  # (B, k, freq_dim)
        return self.mlp(feats.flatten(1))


class LatentInjection(nn.Module, ABC):
    """Where and how lambda enters a backbone."""

    #: Whether a student built with this injection computes exactly its teacher's function at
    #: initialisation (``mixdistill.testing.check_teacher`` then requires a zero difference).
    exact_at_init: bool = False

    @abstractmethod
    def attach(self, model: nn.Module, latent_dim: int) -> None:
        """Install the injection into ``model`` (called once, on the student's own copy)."""

    @abstractmethod
    def set_latent(self, lam: Tensor | None) -> None:
        """Use ``lam`` ``(B, k)`` for the next forward passes; ``None`` switches the injection off."""


def find_submodule(model: nn.Module, path: str, setting: str) -> nn.Module:
    """``model.get_submodule(path)``, or a ValueError naming ``setting`` (e.g. ``"AdditiveInjection:
    layer"``), the value and some of the names that do exist.
    """
    try:
        return model.get_submodule(path)
    except AttributeError as err:
        names = [n for n, _ in model.named_modules() if n][:20]
        raise ValueError(
            f"{setting}='{path}' is not a submodule of {type(model).__name__}; some available names: {names}"
        ) from err
