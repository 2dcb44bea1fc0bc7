import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mixdistill.data import TokenGridData

N, H, W, V = 30, 4, 4, 50


def codes(seed=0):
    return np.random.default_rng(seed).integers(0, V, (N, H, W)).astype(np.uint16)


def labels():
    return np.arange(N) % 7


def served(dm):
    splits = [dm.splits[k] for k in ("train", "val")]
    x = torch.cat([s.x0 for s in splits])
    cond = None if splits[0].cond is None else torch.cat([s.cond for s in splits])
    return x, cond


def assert_matches_file(dm, tokens, lab=None):
    """Every served example equals its row of the file (the split only reorders)."""
    x, cond = served(dm)
    assert x.dtype == torch.long and x.shape == (N, H, W)
    rows = {tuple(r): i for i, r in enumerate(tokens.reshape(N, -1).tolist())}
    order = [rows[tuple(r)] for r in x.reshape(N, -1).tolist()]
    assert sorted(order) == list(range(N))
    assert np.array_equal(x.numpy(), tokens[order].astype(np.int64))
    if lab is not None:
        assert np.array_equal(cond.numpy(), lab[order])


def test_npy_with_labels_file(tmp_path):
    tokens = codes()
    np.save(tmp_path / "codes.npy", tokens)
    np.save(tmp_path / "labels.npy", labels())
    dm = TokenGridData(str(tmp_path / "codes.npy"), V, labels_path=str(tmp_path / "labels.npy"), batch_size=5)
    assert dm.shape == (H, W) and dm.vocab_size == V and dm.num_classes == 7
    assert_matches_file(dm, tokens, labels())
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"x0", "cond"} and batch["x0"].shape == (5, H, W) and batch["cond"].shape == (5,)


def test_safetensors_dict_with_labels_key(tmp_path):
    tokens = codes(1)
    path = tmp_path / "codes.safetensors"
    save_file({"codes": torch.from_numpy(tokens.astype(np.int32)), "labels": torch.tensor(labels())}, path)
    dm = TokenGridData(str(path), V, key="codes", num_classes=10)
    assert dm.num_classes == 10
    assert_matches_file(dm, tokens, labels())


def test_pt_tensor_and_dict(tmp_path):
    tokens = codes(2)
    torch.save(torch.from_numpy(tokens.astype(np.int64)), tmp_path / "a.pt")
    dm = TokenGridData(str(tmp_path / "a.pt"), V)
    assert dm.num_classes == 0
    assert_matches_file(dm, tokens)
    assert set(next(iter(dm.val_dataloader()))) == {"x0"}
    torch.save({"tokens": torch.from_numpy(tokens).long()}, tmp_path / "b.pt")
    assert_matches_file(TokenGridData(str(tmp_path / "b.pt"), V), tokens)


def test_same_seed_same_split(tmp_path):
    np.save(tmp_path / "codes.npy", codes())
    a = TokenGridData(str(tmp_path / "codes.npy"), V, seed=9, val_fraction=0.2)
    b = TokenGridData(str(tmp_path / "codes.npy"), V, seed=9, val_fraction=0.2)
    assert torch.equal(a.splits["val"].x0, b.splits["val"].x0)
    train = {tuple(r) for r in a.splits["train"].x0.reshape(-1, H * W).tolist()}
    val = {tuple(r) for r in a.splits["val"].x0.reshape(-1, H * W).tolist()}
    assert len(val) == 6 and not train & val


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="path='.*nope.npy' does not exist"):
        TokenGridData(str(tmp_path / "nope.npy"), V).setup()
    np.save(tmp_path / "codes.npy", codes())
    with pytest.raises(ValueError, match=r"ids in \[0, 49\], outside \[0, vocab_size=10\)"):
        TokenGridData(str(tmp_path / "codes.npy"), 10).setup()
    np.save(tmp_path / "float.npy", codes().astype(np.float32))
    with pytest.raises(TypeError, match="float.npy' holds dtype float32"):
        TokenGridData(str(tmp_path / "float.npy"), V).setup()
    save_file({"x": torch.zeros(3, 2, dtype=torch.long)}, tmp_path / "c.safetensors")
    with pytest.raises(KeyError, match=r"no entry 'tokens'; its entries are \['x'\]"):
        TokenGridData(str(tmp_path / "c.safetensors"), V).setup()
    np.save(tmp_path / "short.npy", np.arange(N - 1))
    with pytest.raises(ValueError, match=r"labels have shape \(29,\)"):
        TokenGridData(str(tmp_path / "codes.npy"), V, labels_path=str(tmp_path / "short.npy")).setup()
    with pytest.raises(FileNotFoundError, match="labels_path='.*gone.npy' does not exist"):
        TokenGridData(str(tmp_path / "codes.npy"), V, labels_path=str(tmp_path / "gone.npy")).setup()
    np.save(tmp_path / "labels.npy", labels())
    with pytest.raises(ValueError, match=r"labels in \[0, 6\], outside \[0, num_classes=3\)"):
        labels_path = str(tmp_path / "labels.npy")
        TokenGridData(str(tmp_path / "codes.npy"), V, labels_path=labels_path, num_classes=3).setup()
    np.save(tmp_path / "empty.npy", np.zeros((0, 4, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="path='.*empty.npy'.*empty dataset"):
        TokenGridData(str(tmp_path / "empty.npy"), V).setup()
    with pytest.raises(ValueError, match="must end in one of"):
        (tmp_path / "codes.txt").write_text("1 2 3")
        TokenGridData(str(tmp_path / "codes.txt"), V).setup()
