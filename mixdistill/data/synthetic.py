"""Synthetic data drawn from a probability table over ``S^D``, small enough for exact evaluation.

The table is a file (``.npy``/``.pt``, the format ``ExactTeacher`` reads) or a ``TableSpec`` that
builds it, such as ``PrototypeTable``: a mixture of noisy copies of a few random prototype vectors,
whose dimensions are correlated, so a product (one-step) sampler cannot match it but a mixture can.

Write a table for a config with ``python -m mixdistill.data.synthetic --num_dims 4 save --path table.npy``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mixdistill.data.base import Arrays, TensorDataModule
from mixdistill.tables import PrototypeTable, TableSpec, load_table, validate_table


class SyntheticData(TensorDataModule):
    """``num_samples`` vectors drawn i.i.d. from a probability table over ``S^D``; unlabelled.

    Args:
        table: The table: a ``.npy``/``.pt`` file of shape ``(S,) * D`` summing to 1, a ``TableSpec``
            (e.g. ``PrototypeTable``) that builds it, or the tensor itself.
        num_samples: Number of vectors drawn (before the train/val/test split).
        batch_size: Examples per batch.
        num_workers: DataLoader worker processes.
        seed: Seed of the draw and of the split.
        val_fraction: Fraction held out for validation.
        test_fraction: Fraction held out for testing; 0 makes test reuse val.
        max_states: Largest ``S^D`` accepted.
    """

    def __init__(
        self,
        table: str | TableSpec | Tensor,
        num_samples: int = 10000,
        batch_size: int = 256,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        max_states: int = 1 << 20,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, val_fraction, test_fraction)
        if num_samples < 1:
            raise ValueError(f"SyntheticData: num_samples={num_samples} must be >= 1.")
        self.table_source = table
        self.num_samples = num_samples
        self.max_states = max_states
        self._table: Tensor | None = None

    @property
    def source(self) -> str:
        if isinstance(self.table_source, str):
            return f"SyntheticData(table='{self.table_source}')"
        return f"SyntheticData(table={type(self.table_source).__name__})"

    @property
    def table(self) -> Tensor:
        """The checked probability table, float64 of shape ``(S,) * D`` (give it to ``ExactTeacher``)."""
        if self._table is None:
            src = self.table_source
            table = src.make() if isinstance(src, TableSpec) else load_table(src)
            if table.dim() < 1 or table.shape[0] < 1:
                raise ValueError(f"{self.source}: table shape {tuple(table.shape)}; expected (S,) * D.")
            validate_table(table, table.shape[0], self.max_states, self.source)
            self._table = table
        return self._table

    @property
    def vocab_size(self) -> int:
        return self.table.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.table.dim(),)

    def load_arrays(self) -> Arrays:
        flat = self.table.reshape(-1)
        g = torch.Generator().manual_seed(self.seed)
        index = torch.multinomial(flat, self.num_samples, replacement=True, generator=g)  # (N,)
        # Row-major, the order of mixdistill.evaluation.exact.enumerate_states (the table's flattening order).
        x0 = torch.stack(torch.unravel_index(index, self.table.shape), dim=1)  # (N, D)
        return Arrays(x0.long())


def main() -> None:
    """Write a table: ``python -m mixdistill.data.synthetic [--num_dims 4 ...] save --path t.npy``."""
    from jsonargparse import auto_cli

    print(auto_cli(PrototypeTable, as_positional=False))


if __name__ == "__main__":
    main()
