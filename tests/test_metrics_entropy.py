"""UnigramEntropy: the mean over samples of each sample's own token-histogram entropy."""

import math

import pytest
import torch

from mixdistill.metrics import UnigramEntropy, unigram_entropy


def entropy_by_hand(counts: list[int]) -> float:
    n = sum(counts)
    return -sum(c / n * math.log(c / n) for c in counts)


def test_entropy_equals_the_hand_computation_and_ignores_real_batches():
    """Invariant: H = mean_b -sum_v p_b(v) log p_b(v), p_b the histogram of sample b; real data is unused."""
    x = torch.tensor([[0, 0, 1, 2], [3, 3, 3, 3], [5, 9, 7, 1000]])  # ids far apart: vocab-size free
    expected = [entropy_by_hand([2, 1, 1]), 0.0, math.log(4)]
    assert torch.allclose(unigram_entropy(x), torch.tensor(expected, dtype=torch.float64), atol=1e-12)

    m = UnigramEntropy()
    m.update(torch.zeros(2, 4, dtype=torch.long), real=True)  # ignored: would pull the mean down
    m.update(x[:2], real=False)
    m.update(x[2:], real=False)
    assert m.name == "entropy" and m.higher_is_better
    assert abs(float(m.compute()) - sum(expected) / 3) < 1e-6
    assert m.entropy_sum.dtype == torch.float64


def test_entropy_of_image_grids_flattens_each_sample():
    """Invariant: a (B, H, W) grid is one histogram per sample over its H * W values."""
    x = torch.tensor([[[0, 1], [1, 1]]])  # counts 1 and 3
    assert abs(float(unigram_entropy(x)[0]) - entropy_by_hand([1, 3])) < 1e-12


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_entropy_without_samples_is_an_error():
    """Invariant: compute() before any generated batch raises instead of returning 0 or NaN."""
    m = UnigramEntropy()
    m.update(torch.zeros(2, 4, dtype=torch.long), real=True)
    with pytest.raises(RuntimeError, match="update"):
        m.compute()
