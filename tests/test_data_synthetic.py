import numpy as np
import pytest
import torch

from mixdistill.data import PrototypeTable, SyntheticData
from mixdistill.evaluation.exact import joint_from_factors
from mixdistill.tables import enumerate_states


def all_samples(dm):
    return torch.cat([dm.splits["train"].x0, dm.splits["val"].x0])


def test_prototype_table_formula():
    spec = PrototypeTable(vocab_size=3, num_dims=4, num_prototypes=2, temperature=0.7, seed=5)
    table = spec.make()
    assert table.shape == (3, 3, 3, 3) and table.dtype == torch.float64
    assert float(table.sum()) == pytest.approx(1.0, abs=1e-12)
    protos, weights = spec.prototypes()
    states = enumerate_states(3, 4)
    ham = (states[:, None] != protos[None]).sum(-1).double()  # (N, K)
    ref = ((-ham / 0.7).exp() * weights).sum(1)
    assert torch.allclose(table.reshape(-1), ref / ref.sum(), atol=1e-12)
    # Correlated: far from the product of its own marginals.
    marg = torch.stack([table.sum(dim=[j for j in range(4) if j != d]) for d in range(4)])  # (D, S)
    product = joint_from_factors(marg[None])[0]
    assert 0.5 * (table.reshape(-1) - product).abs().sum() > 0.05


def test_prototype_table_seeded_and_saved(tmp_path):
    a, b = PrototypeTable(seed=1).make(), PrototypeTable(seed=1).make()
    assert torch.equal(a, b) and not torch.equal(a, PrototypeTable(seed=2).make())
    path = PrototypeTable(seed=1).save(str(tmp_path / "t.npy"))
    assert np.array_equal(np.load(path), a.numpy())
    with pytest.raises(ValueError, match="must end in .npy or .pt"):
        PrototypeTable().save(str(tmp_path / "t.txt"))


@pytest.mark.parametrize("suffix", [".npy", ".pt", "spec"])
def test_samples_follow_the_table(tmp_path, suffix):
    spec = PrototypeTable(vocab_size=3, num_dims=3, num_prototypes=2, temperature=0.6, seed=0)
    table = spec.make()
    if suffix == "spec":
        source = spec
    else:
        source = str(spec.save(str(tmp_path / f"t{suffix}")))
    n = 30000
    dm = SyntheticData(source, num_samples=n, batch_size=16, seed=3)
    assert dm.shape == (3,) and dm.vocab_size == 3 and dm.num_classes == 0
    x = all_samples(dm)
    assert x.shape == (n, 3) and x.dtype == torch.long
    # Index of each sample in the row-major enumeration of mixdistill.evaluation.exact.enumerate_states.
    states = enumerate_states(3, 3)
    idx = (x[:, None] == states[None]).all(-1).float().argmax(1)
    counts = torch.bincount(idx, minlength=27).double()
    p = table.reshape(-1)
    sigma = (n * p * (1 - p)).sqrt()
    assert ((counts - n * p).abs() <= 5 * sigma + 1).all()
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"x0"} and batch["x0"].shape == (16, 3)


def test_tensor_table_and_determinism():
    table = torch.tensor([[0.5, 0.0], [0.0, 0.5]], dtype=torch.float64)
    a = SyntheticData(table, num_samples=200, seed=4)
    b = SyntheticData(table, num_samples=200, seed=4)
    assert torch.equal(a.splits["train"].x0, b.splits["train"].x0)
    x = all_samples(a)
    assert (x[:, 0] == x[:, 1]).all()  # only (0, 0) and (1, 1) have mass


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="table='.*missing.npy' does not exist"):
        SyntheticData(str(tmp_path / "missing.npy")).setup()
    np.save(tmp_path / "bad.npy", np.full((2, 2), 0.3))
    with pytest.raises(ValueError, match="sums to 1.2"):
        SyntheticData(str(tmp_path / "bad.npy")).setup()
    np.save(tmp_path / "ragged.npy", np.full((2, 3), 1 / 6))
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        SyntheticData(str(tmp_path / "ragged.npy")).setup()
    with pytest.raises(ValueError, match="num_samples=0"):
        SyntheticData(PrototypeTable(), num_samples=0)
    with pytest.raises(ValueError, match="temperature=0"):
        PrototypeTable(temperature=0)
    with pytest.raises(ValueError, match="max_states=100"):
        PrototypeTable(vocab_size=4, num_dims=4, max_states=100)


@pytest.mark.parametrize(
    "base", [None, PrototypeTable(vocab_size=3, num_dims=2, seed=1)], ids=["uniform", "proto"]
)
def test_checksum_table_formula(base):
    """Invariant: ChecksumTable puts base(x^1..x^{D-1}) on x^D = sum mod S and 0 elsewhere."""
    from mixdistill.tables import ChecksumTable

    table = ChecksumTable(vocab_size=3, num_dims=3, base=base).make()
    assert table.shape == (3, 3, 3) and float(table.sum()) == pytest.approx(1.0, abs=1e-12)
    ref = torch.full((3, 3), 1 / 9, dtype=torch.float64) if base is None else base.make()
    for a, b, c in enumerate_states(3, 3).tolist():
        assert float(table[a, b, c]) == pytest.approx(float(ref[a, b]) if c == (a + b) % 3 else 0.0)
    # Function-like: every pair of tokens is independent under the uniform base, yet x^3 is determined.
    if base is None:
        assert torch.allclose(table.sum(0), torch.full((3, 3), 1 / 9, dtype=torch.float64))


def test_checksum_table_errors():
    from mixdistill.tables import ChecksumTable

    with pytest.raises(ValueError, match=r"base has shape \(3, 3\); it must be .* \(3, 3, 3\)"):
        ChecksumTable(vocab_size=3, num_dims=4, base=PrototypeTable(vocab_size=3, num_dims=2)).make()
    with pytest.raises(ValueError, match="num_dims=1 must be >= 2"):
        ChecksumTable(num_dims=1)


def test_table_errors_name_the_setting_and_the_value():
    from mixdistill.tables import validate_table

    bad = torch.full((2, 2), 0.25, dtype=torch.float64)
    bad[1, 0] = float("nan")
    with pytest.raises(
        ValueError, match=r"^t.npy has 1 NaN or infinite entries \(the first at index \(1, 0\)\)"
    ):
        validate_table(bad, 2, 100, "t.npy")
    bad[1, 0] = -0.5
    with pytest.raises(ValueError, match=r"1 negative entries \(the smallest, -0.5, at index \(1, 0\)\)"):
        validate_table(bad, 2, 100, "t.npy")
    with pytest.raises(ValueError, match=r"S\^D = 2\^2 = 4 states, more than max_states=3"):
        validate_table(bad, 2, 3, "t.npy")
