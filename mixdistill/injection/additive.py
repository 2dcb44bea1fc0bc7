"""Lambda added to the output of one named layer through a forward hook."""

from __future__ import annotations

from torch import Tensor, nn

from mixdistill.injection.base import LatentEmbedding, LatentInjection, find_submodule

#: Attributes that give a layer's output width, in the order they are tried.
WIDTH_ATTRIBUTES = ("out_features", "embedding_dim", "out_channels", "num_features", "num_channels")


def output_width(module: nn.Module) -> int | None:
    """Output channel width of ``module``: from its own size attribute, or, for a ``Sequential``,
    from the last child that has one (activations and dropout keep the width); None if unknown.
    """
    for name in WIDTH_ATTRIBUTES:
        if isinstance(getattr(module, name, None), int):
            return getattr(module, name)
    if isinstance(module, nn.LayerNorm):
        return int(module.normalized_shape[-1])
    if isinstance(module, nn.Sequential):
        return next((w for w in map(output_width, reversed(module)) if w is not None), None)
    return None


class AdditiveInjection(LatentInjection):
    """Adds ``LatentEmbedding(lambda)`` to the output of one named submodule via a forward hook.

    Works with any backbone: name its time/conditioning embedding (``(B, H)``) or its token
    embedding (``(B, L, H)``). The output's batch axis must be the first one.

    Args:
        layer: Dotted name of the submodule inside the teacher, e.g. ``"net.time_embed"``.
        width: Size of the output's channel axis; inferred for linear, embedding, convolution and
            normalisation layers and for a ``Sequential`` ending in one (see ``output_width``).
        channel_dim: Axis of the output that the embedding is added along (``-1``, or ``1`` for
            ``(B, C, H, W)`` feature maps).
        freq_dim: Sinusoidal features per lambda coordinate.
        hidden: MLP width of the embedding; defaults to ``width``.
    """

    exact_at_init = True  # the embedding's last layer starts at zero: output + 0 is the output

    def __init__(
        self,
        layer: str,
        width: int | None = None,
        channel_dim: int = -1,
        freq_dim: int = 128,
        hidden: int | None = None,
    ) -> None:
        super().__init__()
        self.layer, self.width, self.channel_dim = layer, width, channel_dim
        self.freq_dim, self.hidden = freq_dim, hidden
        self.embedding: LatentEmbedding | None = None
        self._offset: Tensor | None = None

    def attach(self, model: nn.Module, latent_dim: int) -> None:
        target = find_submodule(model, self.layer, "AdditiveInjection: layer")
        width = self.width or output_width(target)
        if width is None:
            raise ValueError(
                f"AdditiveInjection: cannot infer the output width of layer='{self.layer}' "
                f"({type(target).__name__}); set width: N (its output size along channel_dim)."
            )
        self.embedding = LatentEmbedding(width, latent_dim, self.freq_dim, self.hidden)
        target.register_forward_hook(self._add)

    def set_latent(self, lam: Tensor | None) -> None:
        self._offset = None if lam is None else self.embedding(lam)  # (B, H)

    def _add(self, module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        if self._offset is None:
            return output
        if output.shape[0] != self._offset.shape[0]:
            raise RuntimeError(
                f"AdditiveInjection: layer '{self.layer}' produced batch {output.shape[0]} but lambda "
                f"has batch {self._offset.shape[0]}; the layer's first axis must be the batch."
            )
        view = [1] * output.dim()
        view[0] = output.shape[0]
        view[self.channel_dim] = output.shape[self.channel_dim]
        return output + self._offset.to(output.dtype).view(view)
