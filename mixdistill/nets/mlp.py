"""A small MLP denoiser for enumerable synthetic problems and quick tests."""

from __future__ import annotations

from torch import Tensor, nn

from mixdistill.nets.embeddings import sinusoidal_embedding


class MLPDenoiserNet(nn.Module):
    """``x_t`` one-hot (flattened) + time embedding -> residual MLP -> logits ``(B, D, S)``.

    The time embedding is the module ``time_embed`` (a Linear of width ``hidden``), the natural
    place for ``AdditiveInjection`` to add lambda.

    Args:
        num_dims: ``D``.
        num_states: ``K``, the number of noisy states (``S + 1`` for masking processes).
        vocab_size: ``S``, the number of data values.
        hidden: Width.
        depth: Number of residual blocks.
        time_features: Sinusoidal features of ``1000 t``.
        dropout: Dropout inside each residual block.
    """

    def __init__(
        self,
        num_dims: int,
        num_states: int,
        vocab_size: int,
        hidden: int = 256,
        depth: int = 3,
        time_features: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_dims, self.num_states, self.vocab_size = num_dims, num_states, vocab_size
        self.time_features = time_features
        self.inp = nn.Linear(num_dims * num_states, hidden)
        self.time_embed = nn.Linear(time_features, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
            )
            for _ in range(depth)
        )
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, num_dims * vocab_size))

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        onehot = nn.functional.one_hot(x_t, self.num_states).float().flatten(1)  # (B, D K)
        h = self.inp(onehot) + self.time_embed(sinusoidal_embedding(1000.0 * t, self.time_features))
        for block in self.blocks:
            h = h + block(h)
        return self.out(h).view(-1, self.num_dims, self.vocab_size)
