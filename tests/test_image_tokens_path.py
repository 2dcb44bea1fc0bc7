"""The image-token example end to end at tiny size: IDX images -> a trained VQTokenizer -> token grids
(tokenize_images encode) and a trained classifier -> configs/teacher_image_tokens.yaml fits a MaskGIT
teacher whose exported net loads back -> configs/image_tokens.yaml distils, tests (FD-fashion and
class accuracy on decoded images) and predicts samples that tokenize_images decode turns into images."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from mixdistill.assets.build import export
from mixdistill.cli import run as main
from mixdistill.data.idx_images import IdxImageData
from mixdistill.metrics.classifier import train_classifier
from mixdistill.nets.maskgit_vit import MaskGITSizes
from mixdistill.nets.vq_tokenizer import VQTokenizerSizes
from mixdistill.teachers.maskgit import MaskGITTeacher
from mixdistill.tokenize_images import main as tokenize
from mixdistill.vq_training import load_tokenizer, save_tokenizer, train_vq_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
CODES, CLASSES, SIDE = 16, 3, 8  # 8 x 8 images -> 2 x 2 grids of 16 codes
SIZES = {"codebook_size": CODES, "num_classes": CLASSES, "grid": SIDE // 4, "hidden": 16, "depth": 1}
SIZES |= {"heads": 2, "mlp_dim": 32, "dropout": 0.0}
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def write_idx(path: Path, array: np.ndarray) -> Path:
    """A uint8 array as an IDX file: magic 0x0000 08 <ndim>, big-endian dims, the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())
    return path


def class_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy 8 x 8 images whose bright half (top, left or bottom-right block) shows the class."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % CLASSES
    images = rng.integers(0, 60, (n, SIDE, SIDE))
    for image, label in zip(images, labels, strict=True):
        part = [np.s_[:4, :], np.s_[:, :4], np.s_[4:, 4:]][label]
        image[part] += 180
    return images.astype(np.uint8), labels.astype(np.uint8)


def classifier(**extra) -> dict:
    return {
        "class_path": "mixdistill.metrics.classifier.SmallImageClassifier",
        "init_args": {"shape": [SIDE, SIDE], "levels": 256, "num_classes": CLASSES, "width": 8}
        | {"feature_dim": 8}
        | extra,
    }


def distill_override(root: Path, files: dict[str, Path]) -> dict:
    """What configs/image_tokens.yaml needs replaced to run on the tiny files under ``root``."""
    decoder = {
        "class_path": "mixdistill.metrics.decoded.TokenImageDecoder",
        "init_args": {"tokenizer": str(files["vq"])},
    }
    net = {"checkpoint": str(files["classifier"]), "decoder": decoder}
    metrics = [
        {
            "class_path": "mixdistill.metrics.frechet.FrechetDistance",
            "init_args": {
                "name": "FD-fashion",
                "features": {
                    "class_path": "mixdistill.metrics.classifier.ClassifierFeatures",
                    "init_args": {"net": classifier()} | net,
                },
            },
        },
        {
            "class_path": "mixdistill.metrics.class_accuracy.ClassAccuracy",
            "init_args": {"classifier": classifier()} | net,
        },
    ]
    return {
        "trainer": {
            "max_steps": 2,
            "val_check_interval": 2,
            "limit_val_batches": 1,
            "num_sanity_val_steps": 0,
            "log_every_n_steps": 1,
            "default_root_dir": str(root),
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"save_last": True},
                }
            ],
        },
        "model": {
            "class_path": "mixdistill.module.DistillModule",
            "init_args": {
                "teacher": {
                    "class_path": "mixdistill.teachers.maskgit.MaskGITTeacher",
                    "init_args": {"checkpoint": str(files["teacher"]), "sizes": SIZES},
                },
                "injection": {
                    "class_path": "mixdistill.injection.ExtraTokenInjection",
                    "init_args": {"hidden": 16, "freq_dim": 8},
                },
                "objective": {
                    "class_path": "mixdistill.di4c.objective.Di4CObjective",
                    "init_args": {"latents": 2},
                },
                "evaluation": {
                    "class_path": "mixdistill.evaluation.QualityEvaluation",
                    "init_args": {
                        "teacher_steps": [2],
                        "student_steps": [2],
                        "num_samples": 12,
                        "batch_size": 6,
                        "sample_metrics": metrics,
                        "primary_metric": "FD-fashion",
                        "latency_batch": 0,
                        "reference_cache": {
                            "class_path": "mixdistill.evaluation.reference_cache.ReferenceCache",
                            "init_args": {"directory": str(root / "cache")},
                        },
                    },
                },
            },
        },
        "data": {
            "class_path": "mixdistill.data.TokenGridData",
            "init_args": {
                "path": str(files["tokens"]),
                "vocab_size": CODES,
                "num_classes": CLASSES,
                "batch_size": 4,
                "eval_batch_size": 16,
                "val_fraction": 0.25,
                "test_fraction": 0.25,
                "image_decoder": decoder,
            },
        },
    }


def test_image_tokens_path_from_idx_files_to_decoded_samples(tmp_path):
    """Invariants, step by step on files made here:
    (1-3) a VQTokenizer trained on IDX images saves and loads back, and tokenize_images encode stores
    exactly its codes of the images (codes that vary) with the IDX labels;
    (4) train_classifier on IdxImageData of the folder learns the classes (val accuracy >= 0.9);
    (5) configs/teacher_image_tokens.yaml fits (tiny sizes) on the tokens; its exported net loads into
    MaskGITTeacher(checkpoint=) with logits identical to the Lightning checkpoint's weights and to
    the fitted model's;
    (6-7) configs/image_tokens.yaml distils that teacher for 2 steps and its test writes quality.json
    with teacher and student rows, finite FD-fashion and class-acc in [0, 1];
    (8) its predict writes samples.npy/.png, and tokenize_images decode of samples.npy writes PNGs equal
    to tokenizer.decode(samples)."""
    # (1) IDX files: 64 training and 12 test images of 3 classes.
    data = tmp_path / "idx"
    data.mkdir()
    images, labels = class_images(64, seed=0)
    write_idx(data / "train-images-idx3-ubyte", images)
    write_idx(data / "train-labels-idx1-ubyte", labels)
    test_images, test_labels = class_images(12, seed=1)
    write_idx(data / "t10k-images-idx3-ubyte", test_images)
    write_idx(data / "t10k-labels-idx1-ubyte", test_labels)

    # (2) the tokenizer, trained a few steps, saved and loaded back.
    vq_sizes = VQTokenizerSizes(image_size=SIDE, codebook_size=CODES, embed_dim=4, width=4, dead_after=1.0)
    vq = train_vq_tokenizer(torch.from_numpy(images), vq_sizes, steps=20, batch_size=32, log_every=0)
    vq_path = save_tokenizer(vq, tmp_path / "vq.safetensors")
    tokenizer = load_tokenizer(vq_path)
    expected = tokenizer.encode(torch.from_numpy(images))
    assert torch.equal(expected, vq.encode(torch.from_numpy(images)))

    # (3) encode the IDX files into the teacher's data.
    tokens_path = tmp_path / "tokens.npz"
    idx_args = [
        "--idx",
        str(data / "train-images-idx3-ubyte"),
        "--labels",
        str(data / "train-labels-idx1-ubyte"),
    ]
    tokenize(["encode", "--tokenizer", str(vq_path), *idx_args, "--device", "cpu", "--out", str(tokens_path)])
    stored = np.load(tokens_path)
    assert stored["tokens"].shape == (64, 2, 2)
    np.testing.assert_array_equal(stored["tokens"], expected.numpy())
    np.testing.assert_array_equal(stored["labels"], labels)
    assert len(np.unique(stored["tokens"])) > 1, "a collapsed tokenizer would hide wrong images"

    # (4) the classifier of the metrics.
    classifier_path = tmp_path / "classifier.safetensors"
    idx_data = IdxImageData(root=str(data), levels=256, num_classes=CLASSES, batch_size=16, val_fraction=0.25)
    _, accuracy = train_classifier(
        idx_data, path=str(classifier_path), width=8, feature_dim=8, epochs=15, lr=1e-2
    )
    assert accuracy >= 0.9  # chance: 1/3

    # (5) the teacher: fit, export, load back.
    teacher_root = tmp_path / "teacher"
    cli = main(
        [
            "fit",
            "--config",
            str(CONFIG_DIR / "teacher_image_tokens.yaml"),
            f"--trainer.default_root_dir={teacher_root}",
            "--trainer.max_steps=3",
            "--trainer.val_check_interval=3",
            "--trainer.limit_val_batches=1",
            "--trainer.log_every_n_steps=1",
            *QUIET,
            f"--model.init_args.model.init_args.sizes={json.dumps(SIZES)}",
            "--model.init_args.lr_scheduler.init_args.total_steps=3",
            f"--data.init_args.path={tokens_path}",
            f"--data.init_args.vocab_size={CODES}",
            f"--data.init_args.num_classes={CLASSES}",
            "--data.init_args.batch_size=8",
            "--data.init_args.val_fraction=0.25",
        ]
    )
    assert cli.trainer.global_step == 3
    callback = cli.trainer.checkpoint_callback
    checkpoint = callback.best_model_path or callback.last_model_path
    teacher_path = export(checkpoint, "model.net.", tmp_path / "teacher.safetensors")
    sizes = MaskGITSizes(**SIZES)
    loaded = MaskGITTeacher(checkpoint=str(teacher_path), sizes=sizes).eval()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    fresh = MaskGITTeacher(checkpoint=None, sizes=sizes).eval()
    fresh.net.load_state_dict(
        {k[len("model.net.") :]: v for k, v in state.items() if k.startswith("model.net.")}
    )
    trained = cli.model.model.eval()  # the fitted weights in memory: the step-3 checkpoint's
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, CODES + 1, (5, 4), generator=g)
    y = torch.randint(0, CLASSES, (5,), generator=g)
    with torch.no_grad():
        got = loaded.network_logits(x, torch.ones(5), y)
        want = fresh.network_logits(x, torch.ones(5), y)
        in_memory = trained.network_logits(x, torch.ones(5), y)
    assert got.shape == (5, 4, CODES) and torch.equal(got, want)
    assert torch.equal(got, in_memory)

    # (6) distil with configs/image_tokens.yaml and an override of the tiny pieces.
    root = tmp_path / "distill"
    files = {"vq": vq_path, "classifier": classifier_path, "teacher": teacher_path, "tokens": tokens_path}
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump(distill_override(root, files)))
    args = ["--config", str(CONFIG_DIR / "image_tokens.yaml"), "--config", str(override), *QUIET]
    cli = main(["fit", *args])
    assert cli.trainer.global_step == 2
    last = root / "checkpoints" / "last.ckpt"
    assert last.is_file()

    # (7) test: the quality table on decoded images.
    main(["test", *args, f"--ckpt_path={last}"])
    rows = json.loads(next(root.rglob("quality.json")).read_text())["rows"]
    assert [(r["model"], r["steps"]) for r in rows] == [("teacher", 2), ("student", 2)]
    for row in rows:
        assert np.isfinite(row["FD-fashion"]) and row["FD-fashion"] >= 0, row
        assert 0.0 <= row["class-acc"] <= 1.0, row

    # (8) predict, then decode the written samples with tokenize_images.
    out = tmp_path / "samples"
    generation = [
        "--model.init_args.generation=mixdistill.generation.Generation",
        "--model.init_args.generation.init_args.steps=2",
        "--model.init_args.generation.init_args.num_samples=5",
        f"--model.init_args.generation.init_args.output_dir={out}",
    ]
    main(["predict", *args, *generation, f"--ckpt_path={last}"])
    written = out / "student_2steps"
    assert (written / "samples.png").is_file()
    samples = torch.from_numpy(np.load(written / "samples.npy"))
    assert samples.shape == (5, 2, 2) and 0 <= int(samples.min()) and int(samples.max()) < CODES
    assert torch.equal(torch.load(written / "samples.pt", weights_only=True), samples)
    decoded = tmp_path / "decoded"
    tokenize(
        [
            "decode",
            "--tokenizer",
            str(vq_path),
            "--tokens",
            str(written / "samples.npy"),
            "--device",
            "cpu",
            "--out",
            str(decoded),
        ]
    )
    pngs = sorted(decoded.glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(5)]
    for png, want in zip(pngs, tokenizer.decode(samples).numpy(), strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(png)), want)
