"""A small MLP denoiser for enumerable synthetic problems and quick tests."""

from __future__ import annotations

from torch import Tensor, nn

from mixdistill.nets.embeddings import sinusoidal_embedding


class MLPDenoiserNet(nn.Module):
    """``x_t`` one-hot (flattened) + time embedding -> residual MLP -> logits ``(B, D, S)``.

    The time embedding is the module ``time_embed`` (a Linear of width ``hidden``), the natural
    place for ``AdditiveInjection`` to add lambda.

    The input layer ``inp`` sees a one-hot vector, so it is a table of one embedding per
    (dimension, state), summed over the dimensions. ``nn.Linear``'s own init (the default, kept so
    that the shipped configs reproduce) draws them from ``U(+-1/sqrt(D K))``, which is meant for dense
    unit-variance inputs: the token part of the first hidden state is then smaller than the time
    embedding's, the network is nearly linear in the tokens at initialisation, and a target that
    depends on several tokens jointly (a checksum, a parity) gets almost no gradient, so training
    stalls on a plateau. ``token_init_std=1`` initialises them as embeddings are, ``N(0, 1)``, which
    removes the plateau (docs/benchmarks.md, synthetic section).

    Args:
        num_dims: ``D``.
        num_states: ``K``, the number of noisy states (``S + 1`` for masking processes).
        vocab_size: ``S``, the number of data values.
        hidden: Width.
        depth: Number of residual blocks.
        time_features: Sinusoidal features of ``1000 t``.
        dropout: Dropout on each residual block's output (active in training mode only).
        token_init_std: Standard deviation of the initial token embeddings (``inp``'s weights);
            ``None`` keeps ``nn.Linear``'s default init.
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
        token_init_std: float | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLPDenoiserNet: dropout={dropout} must lie in [0, 1).")
        self.num_dims, self.num_states, self.vocab_size = num_dims, num_states, vocab_size
        self.time_features = time_features
        self.inp = nn.Linear(num_dims * num_states, hidden)
        if token_init_std is not None:
            nn.init.normal_(self.inp.weight, std=token_init_std)
        self.time_embed = nn.Linear(time_features, hidden)
        # Dropout last (on the block's output) keeps the parameter names of the shipped checkpoints.
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(hidden),
                nn.Linear(hidden, hidden),
                nn.SiLU(),
                nn.Linear(hidden, hidden),
                nn.Dropout(dropout),
            )
            for _ in range(depth)
        )
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, num_dims * vocab_size))

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        onehot = nn.functional.one_hot(x_t, self.num_states).float().flatten(1)  # (B, D K)
        time = sinusoidal_embedding(1000.0 * t, self.time_features)  # (B, F)
        h = self.inp(onehot) + self.time_embed(time)  # (B, H)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h).view(-1, self.num_dims, self.vocab_size)  # (B, D, S)
