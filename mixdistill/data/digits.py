"""scikit-learn's 8x8 handwritten digits as pixels with class labels (shipped with scikit-learn)."""

from __future__ import annotations

from mixdistill.data.base import Arrays, TensorDataModule, as_index_tensor
from mixdistill.data.quantise import check_levels, quantise

#: The digits' grey values are the integers 0..16.
DIGITS_MAX_VALUE = 16


class DigitsData(TensorDataModule):
    """The 1797 8x8 digits of ``sklearn.datasets.load_digits``: ``x0`` pixels ``(8, 8)``, ``cond`` 0..9.

    Pixels take the 17 grey values 0..16; ``levels < 17`` quantises them to ``round(v * (levels-1) / 16)``.

    Args:
        levels: Number of grey levels ``S`` (the vocabulary size), 2..17.
        batch_size: Examples per batch.
        num_workers: DataLoader worker processes.
        seed: Seed of the train/val/test split.
        val_fraction: Fraction held out for validation.
        test_fraction: Fraction held out for testing; 0 makes test reuse val.
    """

    def __init__(
        self,
        levels: int = 17,
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, val_fraction, test_fraction)
        check_levels(levels, DIGITS_MAX_VALUE + 1)
        self.levels = levels

    @property
    def source(self) -> str:
        return "DigitsData (sklearn.datasets.load_digits)"

    @property
    def vocab_size(self) -> int:
        return self.levels

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def shape(self) -> tuple[int, ...]:
        return (8, 8)

    def load_arrays(self) -> Arrays:
        from sklearn.datasets import load_digits  # imported here: scikit-learn is slow to import

        digits = load_digits()
        pixels = digits.images.astype("int64")  # (N, 8, 8), float 0.0..16.0 holding integers
        if (pixels != digits.images).any():
            raise ValueError(f"{self.source} returned non-integer pixels; this scikit-learn is unsupported.")
        x0 = quantise(pixels, DIGITS_MAX_VALUE, self.levels)
        return Arrays(as_index_tensor(x0, self.source), as_index_tensor(digits.target, self.source))
