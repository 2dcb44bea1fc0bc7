"""ClassifierFeatures: a digits classifier trained in seconds whose features drive FrechetDistance."""

import pytest
import torch

from mixdistill.data import DigitsData
from mixdistill.metrics import ClassifierFeatures, FrechetDistance, SmallImageClassifier, train_classifier


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A classifier trained on sklearn digits, its weights file and the DataModule."""
    torch.manual_seed(0)
    dm = DigitsData(levels=17, batch_size=64)
    path = str(tmp_path_factory.mktemp("clf") / "digits_classifier.safetensors")
    net, acc = train_classifier(dm, path=path, width=16, feature_dim=32, epochs=8)
    return net, acc, path, dm


def test_trained_classifier_is_accurate(trained):
    """Invariant: the features are useful: > 90% validation accuracy on sklearn digits."""
    _, acc, _, _ = trained
    assert acc > 0.9


def test_features_shape_determinism_and_checkpoint_round_trip(trained):
    """Invariant: features (B, feature_dim) are a deterministic function of the pixels and of the file,
    and the network's weights stay out of the metric's state_dict (never in student checkpoints)."""
    net, _, path, dm = trained
    x = dm.splits["val"].x0[:10]  # (10, 8, 8)
    a = ClassifierFeatures(SmallImageClassifier((8, 8), 17, 10, width=16, feature_dim=32), path)
    b = ClassifierFeatures(SmallImageClassifier((8, 8), 17, 10, width=16, feature_dim=32), path)
    fa = a(x)
    assert fa.shape == (10, 32)
    assert torch.equal(fa, a(x)) and torch.equal(fa, b(x)) and torch.allclose(fa, net.features(x))
    fd = FrechetDistance(features=a, vocab_size=17, name="FD-digits")
    assert not any("net" in k for k in fd.state_dict())


def test_fd_of_a_set_with_itself_is_zero_and_against_shuffled_pixels_is_large(trained):
    """Invariant: FD(X, X) = 0 up to round-off; pixel-shuffled digits (same pixel histogram) are far,
    much farther than held-out digits."""
    _, _, path, dm = trained
    x = dm.splits["train"].x0[:600]
    features = ClassifierFeatures(SmallImageClassifier((8, 8), 17, 10, width=16, feature_dim=32), path)
    fd = FrechetDistance(features=features, vocab_size=17, name="FD-digits")
    fd.update(x, real=True)
    fd.update(x, real=False)
    same = float(fd.compute())
    fd.reset()  # keeps the real statistics
    gen = torch.Generator().manual_seed(0)
    perm = torch.argsort(torch.rand(600, 64, generator=gen), dim=1)  # one pixel permutation per image
    fd.update(x.flatten(1).gather(1, perm).view(600, 8, 8), real=False)
    shuffled = float(fd.compute())
    fd.reset()
    fd.update(dm.splits["val"].x0, real=False)  # held-out digits: near, though finite-sample biased
    held_out = float(fd.compute())
    assert abs(same) < 1e-3 * shuffled and shuffled > 1.0 and held_out < 0.5 * shuffled


def test_missing_or_mismatched_checkpoint_is_a_clear_error(trained, tmp_path):
    """Invariant: no silent untrained features: a missing file or a wrong architecture raises."""
    _, _, path, _ = trained
    with pytest.raises(FileNotFoundError, match="train_classifier"):
        ClassifierFeatures(SmallImageClassifier(), str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="does not match"):
        ClassifierFeatures(SmallImageClassifier((8, 8), 17, 10, width=8, feature_dim=32), path)
