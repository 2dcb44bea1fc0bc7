"""FidelityMetrics: torch-fidelity's FID/KID/IS/PR from a local Inception file; image conversion; errors.

The published Inception-v3 weights cannot be downloaded here, so the end-to-end check runs on a file of
randomly initialised Inception weights of the right architecture and compares against torch-fidelity's
own ``calculate_metrics`` on the same images and file: it tests the wiring, not the published numbers.
"""

import math
from unittest import mock

import pytest
import torch
from fake_extractors import PixelFeatures
from torch.utils.data import Dataset

from mixdistill.metrics import FidelityMetrics, tokens_to_uint8
from mixdistill.metrics.fidelity import INCEPTION_URL, VGG16_URL


def test_missing_weights_files_name_the_setting_and_the_url(tmp_path):
    """Invariant: no download and no fallback: a missing or unset weights file raises naming the
    setting, the path and where to download the file."""
    missing = str(tmp_path / "pt_inception.pth")
    with pytest.raises(FileNotFoundError) as err:
        FidelityMetrics(feature_extractor_weights_path=missing)
    assert "feature_extractor_weights_path" in str(err.value) and missing in str(err.value)
    assert INCEPTION_URL in str(err.value) and "inception-2015-12-05" in INCEPTION_URL
    (tmp_path / "inception.pth").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="vgg16_weights_path.*unset") as err:
        FidelityMetrics(str(tmp_path / "inception.pth"), metrics=("fid", "prc"))
    assert VGG16_URL in str(err.value)


def test_urls_are_the_ones_torch_fidelity_uses():
    """Invariant: the URLs in the errors are the files this torch-fidelity version would download."""
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    from torchvision.models import VGG16_Weights

    assert INCEPTION_URL == URL_INCEPTION_V3 and VGG16_URL == VGG16_Weights.IMAGENET1K_V1.url


def test_unknown_metric_is_an_error(tmp_path):
    """Invariant: a misspelt metric name raises instead of being skipped."""
    (tmp_path / "w.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="metrics="):
        FidelityMetrics(str(tmp_path / "w.pth"), metrics=("fid", "fdi"))


def test_tokens_to_uint8_scales_levels_to_0_255_and_replicates_grey():
    """Invariant: value v of S levels -> round(v * 255 / (S-1)) in all three channels; RGB passes."""
    x = torch.tensor([[[0, 8], [16, 3]]])  # (1, 2, 2), 17 levels
    out = tokens_to_uint8(x, 17)
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 2, 2)
    expected = torch.tensor([[0, 128], [255, 48]], dtype=torch.uint8)  # 127.5 -> 128 (even), 47.8 -> 48
    assert all(torch.equal(out[0, c], expected) for c in range(3))
    assert torch.equal(tokens_to_uint8(x.unsqueeze(1), 17), out)
    rgb = torch.randint(256, (2, 3, 4, 4))
    assert torch.equal(tokens_to_uint8(rgb, 256), rgb.to(torch.uint8))
    with pytest.raises(ValueError, match="levels=17"):
        tokens_to_uint8(torch.tensor([[[17]]]), 17)
    with pytest.raises(ValueError, match="shape"):
        tokens_to_uint8(torch.zeros(2, 2, 4, 4, dtype=torch.long), 17)


TORCH_FIDELITY_KEYS = {
    "FID": "frechet_inception_distance",
    "KID": "kernel_inception_distance_mean",
    "KID_std": "kernel_inception_distance_std",
    "IS": "inception_score_mean",
    "IS_std": "inception_score_std",
}


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
    """A weights file for torch-fidelity's Inception-v3 architecture with random weights (not FID's)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    torch.manual_seed(0)
    with (
        mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None),
    ):
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return str(path)


class Images(Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


@pytest.mark.slow
def test_metrics_match_torch_fidelity_calculate_metrics(random_inception):
    """Invariant: FidelityMetrics gives what torch_fidelity.calculate_metrics gives on the same uint8
    images, weights file and settings (FID, KID, IS), and keeps the Inception weights out of its
    state_dict."""
    import torch_fidelity

    gen = torch.Generator().manual_seed(0)
    real, fake = (torch.randint(17, (4, 8, 8), generator=gen) for _ in range(2))
    settings = {"kid_subsets": 5, "kid_subset_size": 3, "isc_splits": 2}
    m = FidelityMetrics(random_inception, levels=17, batch_size=12, **settings)
    m.update(real, real=True)
    m.update(fake, real=False)
    ours = m.compute()
    ref = torch_fidelity.calculate_metrics(
        input1=Images(tokens_to_uint8(fake, 17)),
        input2=Images(tokens_to_uint8(real, 17)),
        cuda=False,
        batch_size=12,
        isc=True,
        fid=True,
        kid=True,
        feature_extractor_weights_path=random_inception,
        cache=False,
        save_cpu_ram=True,  # no DataLoader worker processes
        verbose=False,
        **settings,
    )
    assert set(ours) == set(TORCH_FIDELITY_KEYS) and m.name == "FID" and not m.higher_is_better
    for ours_key, ref_key in TORCH_FIDELITY_KEYS.items():
        assert float(ours[ours_key]) == pytest.approx(ref[ref_key], rel=1e-4, abs=1e-6), ours_key
    assert not any("Conv2d" in k for k in m.state_dict())
    m.reset()  # keeps the reference features
    assert (
        len(m.real_inception_2048) == 1
        and len(m.fake_inception_2048) == len(m.fake_inception_logits_unbiased) == 0
    )


def prc_by_hand(fake: list, real: list, k: int) -> tuple[float, float]:
    """Precision: share of fake points inside some real point's k-NN ball; recall: the converse."""

    def radius(points, p):
        return sorted(math.dist(p, q) for q in points)[k]  # index 0 is the point itself

    precision = sum(any(math.dist(f, r) <= radius(real, r) for r in real) for f in fake) / len(fake)
    recall = sum(any(math.dist(r, f) <= radius(fake, f) for f in fake) for r in real) / len(real)
    return precision, recall


def test_precision_recall_match_the_knn_definition(tmp_path, monkeypatch):
    """Invariant: precision/recall are Kynkaanniemi et al.'s k-NN coverage of generated by real samples
    and vice versa (torch-fidelity's argument order: generated first), on the extractor's features."""
    import torch_fidelity.utils

    (tmp_path / "vgg16.pth").write_bytes(b"")
    nets = []
    monkeypatch.setattr(
        torch_fidelity.utils,
        "create_feature_extractor",
        lambda name, layers, **kw: nets.append(PixelFeatures(layers)) or nets[-1],
    )
    real = [(60, 60), (70, 60), (60, 70), (70, 70), (65, 65), (10, 60)]  # pixel values: features
    fake = [(61, 61), (69, 69), (90, 90), (120, 120), (65, 64)]
    m = FidelityMetrics(metrics=("prc",), vgg16_weights_path=str(tmp_path / "vgg16.pth"), prc_neighborhood=2)
    m.update(torch.tensor(real).view(6, 1, 2), real=True)
    m.update(torch.tensor(fake).view(5, 1, 2), real=False)
    out = m.compute()
    precision, recall = prc_by_hand(fake, real, 2)
    assert 0 < precision < 1 and 0 < recall < 1 and m.name == "F_score" and m.higher_is_better
    assert float(out["precision"]) == pytest.approx(precision) and float(out["recall"]) == pytest.approx(
        recall
    )
    assert float(out["F_score"]) == pytest.approx(2 * precision * recall / (precision + recall))


def test_inception_score_alone_ignores_reference_images(tmp_path, monkeypatch):
    """Invariant: with metrics=("isc",) reference batches run no network and store nothing."""
    import torch_fidelity.utils

    (tmp_path / "inception.pth").write_bytes(b"")
    net = PixelFeatures(["logits_unbiased"])
    monkeypatch.setattr(torch_fidelity.utils, "create_feature_extractor", lambda name, layers, **kw: net)
    m = FidelityMetrics(str(tmp_path / "inception.pth"), metrics=("isc",), isc_splits=1)
    m.update(torch.zeros(4, 2, 2, dtype=torch.long), real=True)
    assert net.calls == 0 and not any(len(getattr(m, k)) for k in m._defaults)
    m.update(torch.randint(256, (4, 2, 2)), real=False)
    assert net.calls == 1 and float(m.compute()["IS"]) >= 1.0
