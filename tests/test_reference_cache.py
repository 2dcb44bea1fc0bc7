"""Reference statistics cached per (reference data, split, metric, feature network): a warm cache gives
the same numbers as no cache, skips the feature network on the reference data, misses whenever the data,
the split or the network changes, and refuses unreadable files."""

import pytest
import torch
from fake_extractors import PixelFeatures
from safetensors.torch import load_file
from torch import nn

from mixdistill.evaluation.quality import QualityEvaluation
from mixdistill.evaluation.reference_cache import ReferenceCache, ReferenceCacheError
from mixdistill.metrics import FidelityMetrics, FrechetDistance, UnigramEntropy, frechet_distance

TIMINGS = {"sec_per_sample", "samples_per_sec"}


class CountingFeatures(nn.Module):
    """A linear feature network that records the batch size of every call (in a list: a mutable counter
    attribute would count as a setting of the network and change its fingerprint)."""

    def __init__(self, seed: int = 0, dims: int = 6, width: int = 4) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.linear = nn.Linear(dims, width)
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(x.shape[0])
        return torch.tanh(self.linear(x.float()))  # (B, width)


class RandomTokens(nn.Module):
    """A stand-in model whose samples are uniform token ids of shape (6,) (the seed fixes them)."""

    num_classes = 0

    def sample(self, n, steps, cond=None):
        return torch.randint(3, (n, 6))


def data(seed: int = 0, n: int = 40) -> torch.Tensor:
    # values 0..1 while RandomTokens draws 0..2: a clearly positive distance
    return torch.randint(2, (n, 6), generator=torch.Generator().manual_seed(seed))  # (n, 6)


def evaluation(metrics, cache: ReferenceCache | None) -> QualityEvaluation:
    return QualityEvaluation(
        [1, 2], [1], num_samples=30, batch_size=16, sample_metrics=metrics, reference_cache=cache
    )


def feed(ev: QualityEvaluation, x: torch.Tensor, split: str = "test", batch: int = 16) -> None:
    ev.reset_reference(split)
    for chunk in x.split(batch):
        ev.update_real(chunk)
    ev.finish_reference()


def fd64(metric: FrechetDistance) -> float:
    """The distance in float64 (``compute()`` rounds to float32)."""
    return float(frechet_distance(*metric._moments("real"), *metric._moments("fake")))


def fd_after_row(features: nn.Module | None, cache: ReferenceCache | None, x: torch.Tensor) -> tuple:
    fd = FrechetDistance(features, vocab_size=3, name="FD")
    ev = evaluation([fd], cache)
    feed(ev, x)
    ev.row("teacher", RandomTokens(), 1, RandomTokens())
    return fd64(fd), fd.reference_state(), ev.meta()["reference"]


def test_warm_cache_gives_the_distance_of_no_cache_in_float64(tmp_path):
    """Invariant: the real-side state read back from the cache is the computed one bit for bit, so FD
    with a warm cache equals FD without a cache to 1e-12 (raw values and network features)."""
    x = data()
    for features in (None, CountingFeatures()):
        cache = ReferenceCache(str(tmp_path / ("raw" if features is None else "net")))
        plain, plain_state, off = fd_after_row(features, None, x)
        cold, _, written = fd_after_row(features, cache, x)
        warm, warm_state, hit = fd_after_row(features, cache, x)
        assert (off["cache"], written["cache"], hit["cache"]) == ("off", "written", "hit")
        assert plain > 0.01 and abs(warm - plain) < 1e-12 and abs(cold - plain) < 1e-12
        assert all(torch.equal(warm_state[k], plain_state[k]) for k in plain_state)
        assert warm_state["real_sum"].dtype == torch.float64 and float(warm_state["real_n"]) == 40
        assert off["sha256"] == hit["sha256"] and hit["examples"] == 40 and hit["split"] == "test"


def test_hit_runs_no_feature_extraction_on_reference_data(tmp_path):
    """Invariant: on a hit the feature network sees only generated samples; on a miss it saw the 40
    reference examples once (in finish_reference, after all batches were hashed)."""
    cache, x = ReferenceCache(str(tmp_path)), data()
    cold_net = CountingFeatures()
    cold = evaluation([FrechetDistance(cold_net, name="FD")], cache)
    cold.reset_reference("test")
    for chunk in x.split(16):
        cold.update_real(chunk)
    assert cold_net.calls == [], "reference features wait until the cache has decided"
    cold.finish_reference()
    assert cold_net.calls == [16, 16, 8]
    warm_net = CountingFeatures()
    warm = evaluation([FrechetDistance(warm_net, name="FD")], cache)
    feed(warm, x)
    assert warm_net.calls == [] and warm.meta()["reference"]["cache"] == "hit"
    warm.row("teacher", RandomTokens(), 1, RandomTokens())
    assert warm_net.calls == [30], "only the 30 generated samples"


def status(ev: QualityEvaluation) -> tuple[str, str]:
    ref = ev.meta()["reference"]
    return ref["cache"], ref["files"]["FD"]["file"]


def test_key_changes_with_data_split_and_network_weights(tmp_path):
    """Invariant: one changed reference example, another split name or other feature weights each miss
    (a new file), while the same data in other batch sizes hits the same file."""
    cache, x = ReferenceCache(str(tmp_path)), data()

    def run(x, split="test", seed=0, batch=16):
        ev = evaluation([FrechetDistance(CountingFeatures(seed), name="FD")], cache)
        feed(ev, x, split, batch)
        return status(ev)

    first = run(x)
    assert first[0] == "written" and run(x, batch=7) == ("hit", first[1])
    one_changed = x.clone()
    one_changed[17, 3] = (one_changed[17, 3] + 1) % 3
    files = {first[1]}
    for changed in (run(one_changed), run(x, split="val"), run(x, seed=1)):
        assert changed[0] == "written" and changed[1] not in files
        files.add(changed[1])
    assert len(list(tmp_path.glob("*.safetensors"))) == 4


def test_quality_rows_are_identical_with_cache_off_cold_and_warm(tmp_path):
    """Invariant: QualityEvaluation.run gives the same rows (timings aside) without a cache, with a cold
    one and with a warm one; metrics without cache support (entropy) are fed as before."""
    cache, x = ReferenceCache(str(tmp_path)), data()

    def rows(cache):
        metrics = [
            FrechetDistance(vocab_size=3),
            FrechetDistance(CountingFeatures(), name="FD"),
            UnigramEntropy(),
        ]
        ev = evaluation(metrics, cache)
        ev.reset_reference("test")
        for chunk in x.split(16):
            ev.update_real(chunk)
        out = ev.run(RandomTokens(), RandomTokens())
        return [{k: v for k, v in r.items() if k not in TIMINGS} for r in out], ev.meta()["reference"]

    off, cold, warm = rows(None), rows(cache), rows(cache)
    assert off[0] == cold[0] == warm[0] and len(off[0]) == 3
    assert all(r["FD-pixels"] > 0 and r["FD"] > 0 and r["entropy"] > 0 for r in off[0])
    assert (off[1]["cache"], cold[1]["cache"], warm[1]["cache"]) == ("off", "written", "hit")
    assert set(warm[1]["files"]) == {"FD-pixels", "FD"}, "one file per cached metric, none for entropy"


def test_corrupt_or_foreign_cache_file_is_an_error_naming_it(tmp_path):
    """Invariant: an unreadable cache file, or one whose stored key fields differ, raises naming the file
    and saying to delete it; nothing is silently recomputed over it (the file is left as it was)."""
    cache, x = ReferenceCache(str(tmp_path)), data()

    def warm() -> None:
        feed(evaluation([FrechetDistance(vocab_size=3, name="FD")], cache), x)

    ev = evaluation([FrechetDistance(vocab_size=3, name="FD")], cache)
    feed(ev, x)
    path = status(ev)[1]
    good = open(path, "rb").read()
    for content in (good[: len(good) // 2], b"not a safetensors file"):  # truncated (a full disk), junk
        open(path, "wb").write(content)
        with pytest.raises(ReferenceCacheError, match="delete it") as err:
            warm()
        assert path in str(err.value) and open(path, "rb").read() == content
    foreign = evaluation([FrechetDistance(vocab_size=3, name="FD")], ReferenceCache(str(tmp_path / "o")))
    feed(foreign, data(1))
    open(path, "wb").write(open(status(foreign)[1], "rb").read())  # a valid file under the wrong name
    with pytest.raises(ReferenceCacheError, match="written for other data") as err:
        warm()
    assert path in str(err.value)


def test_uncreatable_directory_names_the_setting(tmp_path):
    """Invariant: a cache directory that cannot be created raises naming the setting and the folder."""
    (tmp_path / "file").write_text("")
    ev = evaluation([FrechetDistance(vocab_size=3)], ReferenceCache(str(tmp_path / "file" / "cache")))
    with pytest.raises(ReferenceCacheError, match="reference_cache.init_args.directory") as err:
        feed(ev, data())
    assert str(tmp_path / "file" / "cache") in str(err.value)


def test_fit_with_monitor_then_test_twice_caches_val_and_test_splits(tmp_path):
    """Invariant: through Lightning, QualityMonitor caches the validation split's statistics and
    mixdistill test (DistillModule's test hooks) the test split's; the second test reads them back and
    writes the same quality rows (timings aside)."""
    import json

    import lightning as L

    from mixdistill.callbacks import QualityMonitor
    from mixdistill.data import SyntheticData
    from mixdistill.di4c.objective import Di4CObjective
    from mixdistill.di4c.times import MaskGITTimes
    from mixdistill.module import DistillModule
    from mixdistill.nets.mlp import MLPDenoiserNet
    from mixdistill.processes import MaskingProcess
    from mixdistill.tables import PrototypeTable
    from mixdistill.teachers.network import NetworkTeacher

    torch.manual_seed(0)
    teacher = NetworkTeacher(MaskingProcess(3), (4,), MLPDenoiserNet(4, 4, 3, 32, 1))
    m = DistillModule(teacher, Di4CObjective(MaskGITTimes(step=0.1), latents=2))
    features = CountingFeatures(dims=4)
    m.evaluation = QualityEvaluation(
        [2],
        [2],
        num_samples=32,
        batch_size=32,
        sample_metrics=[FrechetDistance(features, name="FD")],
        reference_cache=ReferenceCache(str(tmp_path / "cache")),
    )
    spec = PrototypeTable(vocab_size=3, num_dims=4, num_prototypes=2, temperature=0.3, seed=0)
    dm = SyntheticData(spec, num_samples=256, batch_size=16)
    quiet = {"enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}
    trainer = L.Trainer(max_steps=2, val_check_interval=2, callbacks=[QualityMonitor()], **quiet)
    trainer.fit(m, dm)
    assert m.evaluation.meta()["reference"]["split"] == "val"
    assert m.evaluation.meta()["reference"]["cache"] == "written"
    tables = []
    for expected in ("written", "hit"):
        trainer = L.Trainer(default_root_dir=tmp_path / expected, logger=False, **quiet)
        features.calls.clear()
        trainer.test(m, dm)
        written = json.loads((tmp_path / expected / "quality.json").read_text())
        ref = written["meta"]["reference"]
        assert (ref["split"], ref["cache"], ref["examples"]) == ("test", expected, len(dm.splits["test"].x0))
        assert sum(features.calls) == 2 * 32 + (ref["examples"] if expected == "written" else 0)
        tables.append([{k: v for k, v in r.items() if k not in TIMINGS} for r in written["rows"]])
    assert tables[0] == tables[1] and len(list((tmp_path / "cache").glob("*.safetensors"))) == 2


def test_fidelity_metrics_reference_features_are_cached_by_weights_file(tmp_path, monkeypatch):
    """Invariant: FidelityMetrics' reference features come back from the cache without running the
    extractor on reference images, give the same FID, and a changed weights file misses."""
    import torch_fidelity.utils

    nets: list[PixelFeatures] = []
    monkeypatch.setattr(
        torch_fidelity.utils,
        "create_feature_extractor",
        lambda name, layers, **kw: nets.append(PixelFeatures(layers)) or nets[-1],
    )
    weights, cache = tmp_path / "inception.pth", ReferenceCache(str(tmp_path / "cache"))
    weights.write_bytes(b"weights v1")
    x = torch.randint(256, (12, 1, 2, 2), generator=torch.Generator().manual_seed(0))  # (12, 1, 2, 2)

    def fid() -> tuple[float, str, int]:
        m = FidelityMetrics(str(weights), metrics=("fid",), batch_size=5)
        ev = QualityEvaluation(
            [1], [1], num_samples=8, batch_size=8, sample_metrics=[m], reference_cache=cache
        )
        before = sum(n.calls for n in nets)
        feed(ev, x, batch=5)
        calls = sum(n.calls for n in nets) - before  # extractor calls on the 12 reference images
        m.update(torch.randint(256, (8, 1, 2, 2), generator=torch.Generator().manual_seed(1)), real=False)
        return float(m.compute()["FID"]), ev.meta()["reference"]["cache"], calls

    cold, warm = fid(), fid()
    assert cold[1:] == ("written", 3) and warm[1:] == ("hit", 0), "no extractor call on a hit"
    assert cold[0] > 0 and warm[0] == pytest.approx(cold[0], abs=1e-12)
    stored = load_file(next((tmp_path / "cache").glob("*.safetensors")))
    assert stored["real_inception_2048"].shape == (12, 2)
    weights.write_bytes(b"weights v2")
    assert fid()[1] == "written"
