"""Metrics and pictures of VQ token grids read through the tokenizer's decoder (the image-token example)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from jsonargparse import ArgumentParser
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from torchvision.utils import make_grid

from mixdistill.callbacks.samples import SampleLogger
from mixdistill.data.token_grid import TokenGridData
from mixdistill.evaluation.fingerprint import module_fingerprint
from mixdistill.evaluation.quality import QualityEvaluation
from mixdistill.evaluation.reference_cache import ReferenceCache
from mixdistill.generation import Generation, SampleWriter
from mixdistill.metrics import ClassifierFeatures, FrechetDistance, SmallImageClassifier
from mixdistill.metrics.class_accuracy import ClassAccuracy
from mixdistill.metrics.decoded import TokenImageDecoder
from mixdistill.nets.vq_tokenizer import VQTokenizer, VQTokenizerSizes
from mixdistill.vq_training import load_tokenizer, save_tokenizer

SIZES = VQTokenizerSizes(image_size=8, codebook_size=16, width=4, embed_dim=4)  # 8 x 8 <-> 2 x 2 codes
CLASSES = 3


def classifier() -> SmallImageClassifier:
    return SmallImageClassifier((8, 8), 256, CLASSES, width=4, feature_dim=8)


@pytest.fixture
def files(tmp_path):
    """An untrained tokenizer and classifier, saved: ``(tokenizer path, classifier path)``."""
    torch.manual_seed(0)
    tokenizer = save_tokenizer(VQTokenizer(SIZES), tmp_path / "vq.safetensors")
    net = classifier()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "clf.safetensors"))
    return str(tokenizer), str(tmp_path / "clf.safetensors")


def tokens(n: int, seed: int = 1) -> torch.Tensor:
    """Random token grids ``(n, 2, 2)``."""
    return torch.randint(SIZES.codebook_size, (n, 2, 2), generator=torch.Generator().manual_seed(seed))


def test_decoded_features_are_the_classifier_features_of_the_decoded_images(files):
    """Invariant: ClassifierFeatures(decoder=...) on token grids (either layout) is exactly
    classifier.features(tokenizer.decode(tokens)), and no tokenizer or classifier weight enters its
    state dict."""
    vq_path, clf_path = files
    features = ClassifierFeatures(classifier(), clf_path, decoder=TokenImageDecoder(vq_path))
    x = tokens(10)
    net, vq = features.net, load_tokenizer(vq_path)
    expected = net.features(vq.decode(x))  # (10, 8)
    assert torch.equal(features(x), expected) and torch.equal(features(x.flatten(1)), expected)
    images = features.decoder(x)
    assert (
        images.dtype == torch.long and images.shape == (10, 8, 8) and 0 <= images.min() <= images.max() <= 255
    )
    assert list(features.state_dict()) == []
    with pytest.raises(ValueError, match="token grids must be"):
        features.decoder(torch.zeros(2, 3, dtype=torch.long))


def test_fingerprint_follows_the_tokenizer_weights(files, tmp_path):
    """Invariant: the feature fingerprint (the reference-cache key) is the same for the same tokenizer
    weights, whatever the file, and changes when one codebook entry changes."""
    vq_path, clf_path = files
    vq = load_tokenizer(vq_path)
    same = save_tokenizer(vq, tmp_path / "copy.safetensors")
    vq.codebook.embed[3] += 0.5
    other = save_tokenizer(vq, tmp_path / "other.safetensors")

    def fingerprint(path) -> str:
        decoder = TokenImageDecoder(str(path))
        return FrechetDistance(ClassifierFeatures(classifier(), clf_path, decoder)).feature_fingerprint()

    assert fingerprint(vq_path) == fingerprint(same) != fingerprint(other)
    assert module_fingerprint(ClassifierFeatures(classifier(), clf_path)) != fingerprint(vq_path)


def test_class_accuracy_counts_samples_classified_as_their_label(files):
    """Invariant: with labels equal to the classifier's predictions on the first 6 of 12 samples and
    different on the other 6, ClassAccuracy is exactly 0.5; real data changes nothing."""
    vq_path, clf_path = files
    metric = ClassAccuracy(classifier(), clf_path, decoder=TokenImageDecoder(vq_path))
    x = tokens(12)
    predicted = metric.net(load_tokenizer(vq_path).decode(x)).argmax(-1)  # (12,)
    cond = torch.cat([predicted[:6], (predicted[6:] + 1) % CLASSES])
    metric.update(x, real=True)
    assert float(metric.total) == 0
    metric.update(x[:5], real=False, cond=cond[:5])
    metric.update(x[5:], real=False, cond=cond[5:])
    assert float(metric.compute()) == 0.5 and metric.higher_is_better
    assert list(metric.state_dict()) == []
    with pytest.raises(ValueError, match="class-conditional"):
        metric.update(x, real=False)


class RandomGrids(nn.Module):
    """A class-conditional stand-in teacher whose samples are uniform token grids (the seed fixes them)."""

    num_classes = CLASSES

    def sample(self, n, steps, cond=None):
        assert cond is None or cond.shape == (n,)
        return torch.randint(SIZES.codebook_size, (n, 2, 2))


class RandomShades(nn.Module):
    """A class-conditional stand-in teacher whose samples are 8 x 8 images of one random grey level."""

    num_classes = CLASSES

    def sample(self, n, steps, cond=None):
        assert cond.shape == (n,)
        return torch.randint(256, (n, 1, 1)).expand(n, 8, 8).clone()  # (n, 8, 8)


def brightness_classifier(path) -> str:
    """A classifier whose class is the brightness band of the mean pixel: < 0.3, < 0.7, else (saved)."""
    net = classifier()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.body[0].weight[0, 0, 1, 1] = 1.0  # channel 0 passes the pixels through both convolutions
        net.body[2].weight[0, 0, 1, 1] = 1.0
        net.body[6].weight[0, :16] = 1 / 16  # feature 0: the mean of the pooled channel 0
        net.head.weight[:, 0] = torch.tensor([0.0, 10.0, 20.0])
        net.head.bias.copy_(torch.tensor([0.0, -3.0, -10.0]))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return str(path)


def test_quality_rows_score_class_accuracy_with_the_labels_generate_drew(tmp_path):
    """Invariant: a row's class-acc is the accuracy on the samples generate() draws with the row's
    seed against the labels it drew (other labels give another value); a cached Frechet distance next
    to it still goes through the cache."""
    clf_path = brightness_classifier(tmp_path / "bright.safetensors")
    accuracy = ClassAccuracy(classifier(), clf_path)
    fd = FrechetDistance(ClassifierFeatures(classifier(), clf_path), name="FD-shades")
    ev = QualityEvaluation(
        [2],
        [2],
        num_samples=60,
        batch_size=16,
        sample_metrics=[fd, accuracy],
        primary_metric="class-acc",
        reference_cache=ReferenceCache(str(tmp_path / "cache")),
    )
    ev.update_real(torch.randint(256, (30, 8, 8), generator=torch.Generator().manual_seed(2)))
    model = RandomShades()
    row = ev.row("teacher", model, 2, model)
    samples, cond, _ = ev.generate(model, 2, CLASSES)
    predicted = accuracy.net(samples).argmax(-1)  # (60,)
    mean = samples.float().mean((1, 2)) / 255
    assert torch.equal(predicted, (mean >= 0.3).long() + (mean >= 0.7).long())  # the bands, as designed
    assert cond.shape == (60,) and len(cond.unique()) == len(predicted.unique()) == CLASSES
    expected = float((predicted == cond).double().mean())
    assert row["class-acc"] == pytest.approx(expected, abs=1e-7) and "FD-shades" in row
    assert expected != float((predicted == cond.roll(1)).double().mean())
    meta = ev.meta()
    assert meta["higher_is_better"] and meta["reference"]["cache"] == "written"
    assert list(meta["reference"]["files"]) == ["FD-shades"]


def test_generate_draws_no_labels_for_an_unconditional_model():
    """Invariant: without classes generate() draws no labels: it returns cond=None."""
    ev = QualityEvaluation(
        [2], [2], num_samples=6, batch_size=4, sample_metrics=[FrechetDistance(vocab_size=16)]
    )
    samples, cond, _ = ev.generate(RandomGrids(), 2)
    assert cond is None and samples.shape == (6, 2, 2)


def grid_data(tmp_path, decoder: TokenImageDecoder | None) -> TokenGridData:
    np.save(tmp_path / "codes.npy", tokens(20).numpy())
    return TokenGridData(str(tmp_path / "codes.npy"), SIZES.codebook_size, image_decoder=decoder)


def test_token_grid_images_are_the_decoded_pixels_over_255(files, tmp_path):
    """Invariant: TokenGridData.to_images is tokenizer.decode / 255 as (B, 1, H, W) float; without an
    image decoder it says which setting to give."""
    vq_path, _ = files
    x = tokens(7)
    images = grid_data(tmp_path, TokenImageDecoder(vq_path)).to_images(x)
    expected = load_tokenizer(vq_path).decode(x).float().unsqueeze(1) / 255.0
    assert images.shape == (7, 1, 8, 8) and torch.equal(images, expected)
    with pytest.raises(ValueError, match="image_decoder"):
        grid_data(tmp_path, None).to_images(x)


def test_sample_writer_and_logger_show_the_decoded_image_grid(files, tmp_path):
    """Invariant: samples.png is the grid of the decoded images (3 x 2 tiles of 8 x 8 with 2-pixel
    padding: 32 x 22 pixels, the same values), and SampleLogger logs the same grid."""
    vq_path, _ = files
    dm = grid_data(tmp_path, TokenImageDecoder(vq_path))
    x = tokens(5)
    expected = make_grid(dm.to_images(x), nrow=3, pad_value=1.0)  # (3, 22, 32)
    trainer = SimpleNamespace(world_size=1, global_rank=0, datamodule=dm, log_dir=None)
    writer = SampleWriter(Generation(model="teacher", steps=2, output_dir=str(tmp_path / "out")))
    writer.write_on_epoch_end(trainer, None, [x[:3], x[3:]])
    png = np.asarray(Image.open(tmp_path / "out" / "teacher_2steps" / "samples.png"))
    assert png.shape == (22, 32, 3)
    as_saved = expected.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(png, as_saved)
    logged = []
    logger = SimpleNamespace(experiment=SimpleNamespace(add_image=lambda *a: logged.append(a)))
    SampleLogger(num_samples=5).log_samples(logger, trainer, "samples/teacher_2steps", x, 7)
    assert logged[0][0] == "samples/teacher_2steps" and torch.equal(logged[0][1], expected)


YAML = """
data:
  class_path: mixdistill.data.TokenGridData
  init_args:
    path: {codes}
    vocab_size: 16
    image_decoder: {decoder}
evaluation:
  num_samples: 8
  sample_metrics:
    - class_path: mixdistill.metrics.class_accuracy.ClassAccuracy
      init_args:
        checkpoint: {clf}
        classifier: {net}
        decoder: {decoder}
    - class_path: mixdistill.metrics.FrechetDistance
      init_args:
        features:
          class_path: mixdistill.metrics.ClassifierFeatures
          init_args:
            checkpoint: {clf}
            net: {net}
            decoder: {decoder}
"""
NET = (
    "{class_path: mixdistill.metrics.SmallImageClassifier, "
    "init_args: {shape: [8, 8], levels: 256, num_classes: 3, width: 4, feature_dim: 8}}"
)
DECODER = "{{class_path: mixdistill.metrics.decoded.TokenImageDecoder, init_args: {{tokenizer: {vq}}}}}"


def test_yaml_builds_decoded_metrics_and_data_without_weights_in_the_state_dict(files, tmp_path):
    """Invariant: the decoder, ClassAccuracy and TokenGridData(image_decoder=) are configurable from
    YAML, and neither tokenizer nor classifier weights enter the evaluation's state dict."""
    vq_path, clf_path = files
    np.save(tmp_path / "codes.npy", tokens(4).numpy())
    parser = ArgumentParser()
    parser.add_argument("--data", type=TokenGridData)
    parser.add_argument("--evaluation", type=QualityEvaluation)
    decoder = DECODER.format(vq=vq_path)
    text = YAML.format(codes=tmp_path / "codes.npy", decoder=decoder, clf=clf_path, net=NET)
    built = parser.instantiate(parser.parse_string(text))
    assert isinstance(built.data.image_decoder, TokenImageDecoder)
    assert [m.name for m in built.evaluation.sample_metrics] == ["class-acc", "FD-pixels"]
    assert list(built.evaluation.state_dict()) == []
