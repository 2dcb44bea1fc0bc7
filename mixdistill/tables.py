"""Probability tables over ``S^D``: loading, validation, and generators of correlated examples."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch
from torch import Tensor


def enumerate_states(num_values: int, num_dims: int) -> Tensor:
    """All ``num_values^num_dims`` vectors, row-major (the first dimension varies slowest): ``(N, D)``."""
    grids = torch.meshgrid(*[torch.arange(num_values)] * num_dims, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=1)


class TableSpec(ABC):
    """A recipe for a probability table; ``make()`` returns it with shape ``(S,) * D``, summing to 1."""

    @abstractmethod
    def make(self) -> Tensor:
        """The table, float64 of shape ``(S,) * D``."""

    def save(self, path: str) -> Path:
        """Write ``make()`` to ``path`` (``.npy`` or ``.pt``, as ``load_table`` reads) and return it."""
        out = Path(path)
        table = self.make()
        if out.suffix == ".npy":
            np.save(out, table.numpy())
        elif out.suffix == ".pt":
            torch.save(table, out)
        else:
            raise ValueError(f"path='{out}' must end in .npy or .pt; got '{out.suffix}'.")
        return out


class PrototypeTable(TableSpec):
    """A mixture of ``num_prototypes`` random prototype vectors, each corrupted by Hamming noise.

    ``p(x) = sum_k w_k prod_d q(x_d | c_kd)`` with ``q(v | c) ∝ exp(-[v != c] / temperature)``, i.e.
    ``p(x) ∝ sum_k w_k exp(-hamming(x, c_k) / temperature)``. Prototypes ``c_k`` are uniform in ``S^D``,
    weights ``w_k`` uniform on the simplex (a flat Dirichlet), both from ``seed``.

    Args:
        vocab_size: Number of values per dimension ``S``.
        num_dims: Number of dimensions ``D``.
        num_prototypes: Number of mixture components.
        temperature: Noise level: small values concentrate mass on the prototypes, large ones
            approach the uniform distribution.
        seed: Seed of the prototypes and weights.
        max_states: Largest ``S^D`` built.
    """

    def __init__(
        self,
        vocab_size: int = 4,
        num_dims: int = 4,
        num_prototypes: int = 3,
        temperature: float = 0.5,
        seed: int = 0,
        max_states: int = 1 << 20,
    ) -> None:
        for name, value in (("vocab_size", vocab_size), ("num_dims", num_dims)):
            if value < 1:
                raise ValueError(f"PrototypeTable: {name}={value} must be >= 1.")
        if num_prototypes < 1:
            raise ValueError(f"PrototypeTable: num_prototypes={num_prototypes} must be >= 1.")
        if not temperature > 0:
            raise ValueError(f"PrototypeTable: temperature={temperature} must be > 0.")
        if vocab_size**num_dims > max_states:
            raise ValueError(
                f"PrototypeTable: S^D = {vocab_size}^{num_dims} = {vocab_size**num_dims} states exceed "
                f"max_states={max_states}; lower vocab_size or num_dims, or raise max_states."
            )
        self.vocab_size = vocab_size
        self.num_dims = num_dims
        self.num_prototypes = num_prototypes
        self.temperature = temperature
        self.seed = seed

    def prototypes(self) -> tuple[Tensor, Tensor]:
        """Prototype vectors ``(K, D)`` and mixture weights ``(K,)`` drawn from ``seed``."""
        g = torch.Generator().manual_seed(self.seed)
        protos = torch.randint(self.vocab_size, (self.num_prototypes, self.num_dims), generator=g)
        weights = -torch.rand(self.num_prototypes, generator=g, dtype=torch.float64).log()
        return protos, weights / weights.sum()  # normalised exponentials = flat Dirichlet

    def make(self) -> Tensor:
        protos, weights = self.prototypes()
        states = enumerate_states(self.vocab_size, self.num_dims)  # (N, D), row-major
        hamming = (states.unsqueeze(1) != protos.unsqueeze(0)).sum(-1).double()  # (N, K)
        # Each component is a product of per-dimension factors, normalised over the S values.
        log_norm = self.num_dims * math.log1p((self.vocab_size - 1) * math.exp(-1.0 / self.temperature))
        log_comp = -hamming / self.temperature - log_norm  # (N, K)
        table = (log_comp.exp() * weights).sum(1)
        table = table / table.sum()  # removes float rounding only; it already sums to 1
        return table.reshape((self.vocab_size,) * self.num_dims)


class ChecksumTable(TableSpec):
    """Tokens ``x^1..x^{D-1}`` from a base table, and a checksum ``x^D = (x^1 + ... + x^{D-1}) mod S``.

    The last token is a deterministic function of all the others, so every lower-order statistic of
    the table (each token alone, any ``D - 1`` tokens with a uniform base) is uninformative about it:
    the hardest kind of correlation for a product sampler, and a parity-like target for a network.

    Args:
        vocab_size: Number of values per dimension ``S``.
        num_dims: Number of dimensions ``D`` (at least 2), the checksum included.
        base: Distribution of the first ``D - 1`` tokens, of shape ``(S,) * (D - 1)`` (e.g. a
            ``PrototypeTable``); uniform when None.
        max_states: Largest ``S^D`` built.
    """

    def __init__(
        self,
        vocab_size: int = 3,
        num_dims: int = 4,
        base: TableSpec | None = None,
        max_states: int = 1 << 20,
    ) -> None:
        if vocab_size < 2:
            raise ValueError(f"ChecksumTable: vocab_size={vocab_size} must be >= 2.")
        if num_dims < 2:
            raise ValueError(f"ChecksumTable: num_dims={num_dims} must be >= 2 (data tokens + checksum).")
        if vocab_size**num_dims > max_states:
            raise ValueError(
                f"ChecksumTable: S^D = {vocab_size}^{num_dims} = {vocab_size**num_dims} states exceed "
                f"max_states={max_states}; lower vocab_size or num_dims, or raise max_states."
            )
        self.vocab_size, self.num_dims, self.base = vocab_size, num_dims, base

    def make(self) -> Tensor:
        S, D = self.vocab_size, self.num_dims
        if self.base is None:
            base = torch.full((S,) * (D - 1), float(S) ** (1 - D), dtype=torch.float64)
        else:
            base = self.base.make()
            if tuple(base.shape) != (S,) * (D - 1):
                raise ValueError(
                    f"ChecksumTable: base has shape {tuple(base.shape)}; it must be (vocab_size,) * "
                    f"(num_dims - 1) = {(S,) * (D - 1)}, one axis per token before the checksum."
                )
        states = enumerate_states(S, D - 1)  # (S^(D-1), D-1), row-major like base.reshape(-1)
        check = states.sum(1) % S  # (S^(D-1),)
        table = torch.zeros(S ** (D - 1), S, dtype=torch.float64)
        table[torch.arange(S ** (D - 1)), check] = base.reshape(-1)
        return table.reshape((S,) * D)


def load_table(table: str | Path | Tensor | np.ndarray | TableSpec) -> Tensor:
    """A probability table from a tensor, a ``TableSpec`` or a ``.npy``/``.pt`` file, as float64."""
    if isinstance(table, TableSpec):
        table = table.make()
    if isinstance(table, str) and "\n" in table:
        raise ValueError(
            f"table must be a path to a .npy/.pt file; got the contents of a file ({table[:40]!r}): the "
            "config parser reads a path to another existing file (.txt, .yaml) as its contents. Save the "
            "table with numpy.save (or torch.save) and give that path."
        )
    if isinstance(table, (str, Path)):
        path = Path(table)
        if not path.is_file():
            raise FileNotFoundError(f"table='{path}' does not exist; give a .npy or .pt probability table.")
        if path.suffix == ".npy":
            table = np.load(path)
        elif path.suffix == ".pt":
            table = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise ValueError(f"table='{path}' must end in .npy or .pt; got '{path.suffix}'.")
    return torch.as_tensor(table).double()


def validate_table(table: Tensor, vocab_size: int, max_states: int, name: str = "table") -> None:
    """Raise a clear error unless ``table`` is a probability table over ``S^D``.

    Args:
        table: The candidate table.
        vocab_size: The ``S`` every axis must have.
        max_states: Largest ``S^D`` accepted.
        name: The setting the table came from, named in the errors (e.g. ``"table='my.npy'"``).
    """
    if table.dim() < 1 or any(n != vocab_size for n in table.shape):
        raise ValueError(
            f"{name} has shape {tuple(table.shape)}; every axis must have the process's "
            f"vocab_size={vocab_size} entries (one axis per dimension)."
        )
    if table.numel() > max_states:
        raise ValueError(
            f"{name} has S^D = {vocab_size}^{table.dim()} = {table.numel()} states, more than "
            f"max_states={max_states} that can be enumerated; use a smaller S or D, or raise max_states."
        )
    flat = table.reshape(-1)
    bad = ~torch.isfinite(flat)
    if bool(bad.any()):
        first = tuple(int(i) for i in torch.unravel_index(bad.nonzero()[0, 0], table.shape))
        raise ValueError(
            f"{name} has {int(bad.sum())} NaN or infinite entries (the first at index {first}); "
            f"a probability table must be finite: fix those entries and renormalise."
        )
    if bool((flat < 0).any()):
        low = int(flat.argmin())
        first = tuple(int(i) for i in torch.unravel_index(torch.tensor(low), table.shape))
        raise ValueError(
            f"{name} has {int((flat < 0).sum())} negative entries (the smallest, {float(flat[low]):.3g}, "
            f"at index {first}); probabilities must be >= 0: clip them (table.clip(min=0)) and renormalise."
        )
    total = float(flat.sum())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"{name} sums to {total:.8f}, not 1; normalise it (table / table.sum()).")
