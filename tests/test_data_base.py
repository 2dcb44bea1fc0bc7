import numpy as np
import pytest
import torch

from mixdistill.data.base import Arrays, TensorDataModule, as_index_tensor, split_indices


class ToyData(TensorDataModule):
    """A minimal subclass: examples given as tensors."""

    def __init__(self, x0, cond=None, vocab_size=5, num_classes=0, **kwargs):
        super().__init__(**kwargs)
        self.x0, self.cond, self._vocab, self._classes = x0, cond, vocab_size, num_classes

    @property
    def vocab_size(self):
        return self._vocab

    @property
    def num_classes(self):
        return self._classes

    def load_arrays(self):
        return Arrays(self.x0, self.cond)


def toy(n=50, **kwargs):
    x0 = torch.arange(n * 3).reshape(n, 3)  # row i is (3i, 3i+1, 3i+2): all rows distinct
    cond = torch.arange(n) % 4
    return ToyData(x0, cond, vocab_size=3 * n, num_classes=4, **kwargs)


def test_split_is_deterministic_disjoint_and_complete():
    a = split_indices(100, 0.1, 0.2, seed=3, what="100 examples")
    b = split_indices(100, 0.1, 0.2, seed=3, what="100 examples")
    c = split_indices(100, 0.1, 0.2, seed=4, what="100 examples")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["val"], c["val"])
    assert [a[k].numel() for k in ("train", "val", "test")] == [70, 10, 20]
    assert torch.equal(torch.cat([a["train"], a["val"], a["test"]]).sort().values, torch.arange(100))


def test_batches_and_splits():
    dm = toy(val_fraction=0.2, test_fraction=0.1, batch_size=8, seed=1)
    dm.setup("fit")
    assert dm.shape == (3,) and dm.vocab_size == 150 and dm.num_classes == 4
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"x0", "cond"}
    assert batch["x0"].shape == (8, 3) and batch["x0"].dtype == torch.long
    assert batch["cond"].shape == (8,) and batch["cond"].dtype == torch.long
    rows = {tuple(r) for k in ("train", "val", "test") for r in dm.splits[k].x0.tolist()}
    assert len(rows) == 50  # every example exactly once
    train = {tuple(r) for r in dm.splits["train"].x0.tolist()}
    val = {tuple(r) for r in dm.splits["val"].x0.tolist()}
    assert not train & val and len(val) == 10
    # Labels stay attached to their examples: row i has label i % 4.
    for k in ("train", "val", "test"):
        assert torch.equal(dm.splits[k].cond, dm.splits[k].x0[:, 0] // 3 % 4)


def test_same_seed_same_split_and_test_reuses_val():
    a, b = toy(seed=7), toy(seed=7)
    assert torch.equal(a.splits["val"].x0, b.splits["val"].x0)
    assert a.splits["test"] is a.splits["val"]
    assert len(a.test_dataloader().dataset) == 5


def test_unlabelled_batches_have_no_cond():
    dm = ToyData(torch.zeros(20, 2, dtype=torch.long), batch_size=4)
    assert set(next(iter(dm.val_dataloader()))) == {"x0"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"num_workers": -1}, "num_workers=-1"),
        ({"val_fraction": 0.0}, "val_fraction=0.0"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "test_fraction=0.5"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        toy(**kwargs)


def test_data_errors():
    with pytest.raises(ValueError, match="empty dataset"):
        ToyData(torch.zeros(0, 3, dtype=torch.long)).setup()
    with pytest.raises(ValueError, match=r"ids in \[7, 7\], outside \[0, vocab_size=5\)"):
        ToyData(torch.full((10, 2), 7)).setup()
    with pytest.raises(ValueError, match=r"ids in \[-1, 0\]"):
        ToyData(-torch.eye(10, dtype=torch.long)).setup()
    with pytest.raises(ValueError, match=r"labels in \[0, 9\], outside \[0, num_classes=4\)"):
        ToyData(torch.zeros(10, 2, dtype=torch.long), torch.arange(10), num_classes=4).setup()
    with pytest.raises(ValueError, match="no labels but num_classes=3"):
        ToyData(torch.zeros(10, 2, dtype=torch.long), num_classes=3).setup()
    with pytest.raises(ValueError, match="val_fraction=0.01 of 10 examples"):
        ToyData(torch.zeros(10, 2, dtype=torch.long), val_fraction=0.01).setup()
    with pytest.raises(ValueError, match=r"shape \(10,\); expected \(N, \*shape\)"):
        ToyData(torch.zeros(10, dtype=torch.long)).setup()


def test_as_index_tensor():
    assert as_index_tensor(np.arange(3, dtype=np.uint16), "x").dtype == torch.long
    with pytest.raises(TypeError, match="path='a.npy' holds dtype float32"):
        as_index_tensor(np.zeros(3, dtype=np.float32), "path='a.npy'")
    with pytest.raises(TypeError, match="dtype torch.bool"):
        as_index_tensor(torch.zeros(3, dtype=torch.bool), "x")


def test_eval_batch_size_sets_val_and_test_batches_only():
    """Train batches keep batch_size, val/test batches have eval_batch_size examples (the last one
    the remainder), so each split is still covered exactly once."""
    dm = toy(n=100, batch_size=4, eval_batch_size=7, val_fraction=0.1, test_fraction=0.2)
    loaders = {"train": dm.train_dataloader(), "val": dm.val_dataloader(), "test": dm.test_dataloader()}
    for split, loader in loaders.items():
        sizes, size = [len(b["x0"]) for b in loader], 4 if split == "train" else 7
        n = dm.splits[split].x0.shape[0]
        assert sizes == [size] * (n // size) + ([n % size] if n % size else [])
    with pytest.raises(ValueError, match="eval_batch_size=0 must be >= 1"):
        toy(eval_batch_size=0)
