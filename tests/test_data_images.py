import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from mixdistill.data import DigitsData, IdxImageData
from mixdistill.data.quantise import quantise

FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_quantise_rounds_half_up_and_keeps_full_range():
    v = np.arange(256)
    assert np.array_equal(quantise(v, 255, 256), v)
    assert np.array_equal(quantise(v, 255, 2), (v >= 128).astype(np.int64))  # 127.5 / 255 -> 0.498..
    ref = np.floor(v * 3 / 255 + 0.5).astype(np.int64)
    assert np.array_equal(quantise(v, 255, 4), ref)
    assert np.array_equal(quantise(np.array([0, 1, 8, 16]), 16, 3), [0, 0, 1, 2])  # 1 * 2 / 16 = 0.125


def test_digits_values_labels_and_levels():
    from sklearn.datasets import load_digits

    ref = load_digits()
    dm = DigitsData(levels=17, batch_size=32, seed=0)
    assert dm.shape == (8, 8) and dm.vocab_size == 17 and dm.num_classes == 10
    parts = [dm.splits[k] for k in ("train", "val")]
    x = torch.cat([p.x0 for p in parts])
    cond = torch.cat([p.cond for p in parts])
    assert x.shape == (1797, 8, 8)
    # Every served image with its label is one of the source images with that label.
    src = {(tuple(img.astype(int).ravel()), int(t)) for img, t in zip(ref.images, ref.target, strict=True)}
    assert all((tuple(a.ravel().tolist()), int(c)) in src for a, c in zip(x, cond, strict=True))
    assert sorted(map(tuple, x.reshape(1797, -1).tolist())) == sorted(
        map(tuple, ref.images.reshape(1797, -1).astype(int).tolist())
    )
    batch = next(iter(dm.train_dataloader()))
    assert batch["x0"].shape == (32, 8, 8) and batch["cond"].shape == (32,)
    assert batch["x0"].dtype == batch["cond"].dtype == torch.long
    q = DigitsData(levels=4, seed=0)
    assert torch.equal(q.splits["val"].x0, torch.from_numpy(quantise(dm.splits["val"].x0.numpy(), 16, 4)))
    assert int(q.splits["train"].x0.max()) == 3


@pytest.mark.parametrize("levels", [1, 18])
def test_digits_levels_error(levels):
    with pytest.raises(ValueError, match=f"levels={levels} must lie in \\[2, 17\\]"):
        DigitsData(levels=levels)


def write_idx(path, array, gz=True):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def make_idx(root, n_train=40, n_test=12, rows=5, cols=3, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, rows, cols)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, rows, cols)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    for name, a in arrays.items():
        write_idx(root / name, a, gz=gz)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_values_round_trip(tmp_path, gz):
    arrays = make_idx(tmp_path, gz=gz)
    dm = IdxImageData(root=str(tmp_path), levels=256, val_fraction=0.25, batch_size=4)
    assert dm.shape == (5, 3) and dm.vocab_size == 256 and dm.num_classes == 10
    test = dm.splits["test"]
    assert torch.equal(test.x0, torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))
    assert torch.equal(test.cond, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]))
    train, val = dm.splits["train"], dm.splits["val"]
    assert (len(train.x0), len(val.x0)) == (30, 10)
    both = torch.cat([train.x0, val.x0]).reshape(40, -1).tolist()
    assert sorted(both) == sorted(arrays["train-images-idx3-ubyte"].reshape(40, -1).tolist())
    batch = next(iter(dm.test_dataloader()))
    assert batch["x0"].shape == (4, 5, 3) and batch["cond"].dtype == torch.long


def test_idx_quantised_against_numpy(tmp_path):
    arrays = make_idx(tmp_path)
    dm = IdxImageData(root=str(tmp_path), levels=4)
    ref = np.floor(arrays["t10k-images-idx3-ubyte"] * 3 / 255 + 0.5).astype(np.int64)
    assert np.array_equal(dm.splits["test"].x0.numpy(), ref)
    assert dm.vocab_size == 4


def test_idx_same_seed_same_split(tmp_path):
    make_idx(tmp_path)
    a, b = IdxImageData(root=str(tmp_path), seed=2), IdxImageData(root=str(tmp_path), seed=2)
    assert torch.equal(a.splits["val"].x0, b.splits["val"].x0)


def test_idx_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.*apt-get install dataset-fashion"):
        IdxImageData(root=str(tmp_path)).setup()
    make_idx(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros((12, 2)), gz=False)  # 2-D labels: bad magic
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte' does not start with the IDX magic number"):
        IdxImageData(root=str(tmp_path)).setup()
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(11), gz=False)
    with pytest.raises(ValueError, match="holds 12 images but .* 11 labels"):
        IdxImageData(root=str(tmp_path)).setup()
    raw = (tmp_path / "t10k-labels-idx1-ubyte").read_bytes()
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(raw[:-3])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        IdxImageData(root=str(tmp_path)).setup()
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(12, 10), gz=False)
    with pytest.raises(ValueError, match=r"labels in \[10, 10\], outside \[0, num_classes=10\)"):
        IdxImageData(root=str(tmp_path)).setup()
    with pytest.raises(ValueError, match="levels=257"):
        IdxImageData(root=str(tmp_path), levels=257)


@pytest.mark.skipif(not FASHION.is_dir(), reason=f"{FASHION} absent (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist():
    dm = IdxImageData(levels=16, batch_size=8)
    assert dm.shape == (28, 28) and dm.num_classes == 10
    assert len(dm.splits["test"].x0) == 10000
    assert len(dm.splits["train"].x0) + len(dm.splits["val"].x0) == 60000
    assert int(dm.splits["train"].x0.max()) <= 15
