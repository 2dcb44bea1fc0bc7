"""The images <-> token grid command with a ``VQTokenizer``: IDX and folder input, exact tokens and
pixels, the grid PNG, and the errors for wrong combinations of settings."""

import gzip
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mixdistill.data import TokenGridData
from mixdistill.nets.vq_tokenizer import VQTokenizer, VQTokenizerSizes
from mixdistill.tokenize_images import main as tokenize
from mixdistill.vq_training import save_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY_VQGAN = {
    "ch": 32,
    "ch_mult": [1, 1, 2],
    "attn_resolutions": [8],
    "resolution": 32,
    "z_channels": 32,
    "embed_dim": 16,
    "n_embed": 64,
}


def write_idx(path, array, gz=False):
    """Write a uint8 array as an IDX file by hand: magic 0x0000 08 <ndim>, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    (gzip.open if gz else open)(path, "wb").write(header + array.astype(np.uint8).tobytes())
    return path


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A small untrained VQTokenizer (8 x 8 images, 2 x 2 grids of 16 codes) and its file.

    Its random codebook sends every image to one code, so that comparing tokens could not catch a
    wrong image; the entries are set to encoder vectors of random images so that codes vary.
    """
    torch.manual_seed(0)
    model = VQTokenizer(VQTokenizerSizes(image_size=8, codebook_size=16, width=4, embed_dim=4)).eval()
    with torch.no_grad():
        z = model.latents(torch.randint(0, 256, (4, 8, 8), generator=torch.Generator().manual_seed(5)))
        model.codebook.embed.copy_(z.permute(0, 2, 3, 1).reshape(16, 4))
    return model, save_tokenizer(model, tmp_path_factory.mktemp("vq") / "vq.safetensors")


@pytest.fixture
def idx_files(tmp_path):
    """Seven random 8 x 8 images (gzipped IDX) and their labels (plain IDX)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 8, 8), dtype=np.uint8)
    labels = np.array([3, 0, 1, 3, 2, 0, 1], dtype=np.uint8)
    return (
        images,
        labels,
        write_idx(tmp_path / "images-idx3-ubyte.gz", images, gz=True),
        write_idx(tmp_path / "labels-idx1-ubyte", labels),
    )


def test_idx_encode_gives_the_tokenizers_codes_and_the_files_labels(tmp_path, tokenizer, idx_files):
    """Invariant: encoding an IDX file with --tokenizer stores exactly model.encode(images) as int64,
    the labels file's labels, and the label numbers as class names; TokenGridData reads the file."""
    model, path = tokenizer
    images, labels, idx, idx_labels = idx_files
    args = ["--tokenizer", str(path), "--idx", str(idx), "--labels", str(idx_labels), "--batch-size", "3"]
    tokenize(["encode", *args, "--device", "cpu", "--out", str(tmp_path / "t.npz")])
    stored = np.load(tmp_path / "t.npz")
    expected = model.encode(torch.from_numpy(images)).numpy()
    assert stored["tokens"].dtype == np.int64 and stored["tokens"].shape == (7, 2, 2)
    np.testing.assert_array_equal(stored["tokens"], expected)
    assert len(np.unique(expected.reshape(7, -1), axis=0)) == 7  # the images' grids differ
    assert stored["labels"].dtype == np.int64 and stored["labels"].tolist() == labels.tolist()
    assert stored["classes"].tolist() == ["0", "1", "2", "3"]
    dm = TokenGridData(str(tmp_path / "t.npz"), vocab_size=16, val_fraction=0.2)
    assert dm.num_classes == 4 and dm.load_arrays().x0.shape == (7, 2, 2)


def test_idx_encode_without_labels_stores_no_labels(tmp_path, tokenizer, idx_files):
    """Invariant: without --labels the file has tokens, no labels entry and no class names."""
    _, path = tokenizer
    idx = idx_files[2]
    tokenize(["encode", "--tokenizer", str(path), "--idx", str(idx), "--out", str(tmp_path / "t.npz")])
    stored = np.load(tmp_path / "t.npz")
    assert set(stored.files) == {"tokens", "classes"} and stored["classes"].tolist() == []
    assert stored["tokens"].shape == (7, 2, 2)


def test_folder_encode_reads_grey_and_resizes_to_the_tokenizer(tmp_path, tokenizer):
    """Invariant: with --tokenizer, folder images (any size, RGB) are encoded as the tokenizer's codes
    of their grey version resized to image_size; an 8 x 8 grey image is encoded untouched."""
    model, path = tokenizer
    rng = np.random.default_rng(1)
    (tmp_path / "img").mkdir()
    exact = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(exact).save(tmp_path / "img" / "a.png")
    big = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    big.save(tmp_path / "img" / "b.png")
    tokenize(
        [
            "encode",
            "--tokenizer",
            str(path),
            "--images",
            str(tmp_path / "img"),
            "--out",
            str(tmp_path / "t.npz"),
        ]
    )
    resized = np.asarray(big.convert("L").resize((8, 8), Image.BILINEAR))
    expected = model.encode(torch.from_numpy(np.stack([exact, resized]))).numpy()
    assert not np.array_equal(expected[1], model.encode(torch.from_numpy(exact[None]))[0].numpy())
    np.testing.assert_array_equal(np.load(tmp_path / "t.npz")["tokens"], expected)


def test_decode_writes_the_tokenizers_grey_pixels_and_a_grid(tmp_path, tokenizer):
    """Invariant: decode with --tokenizer writes one mode-"L" PNG per grid whose pixels equal
    model.decode(tokens) exactly, and a grid PNG (default OUT_grid.png, or --grid) holding them."""
    model, path = tokenizer
    tokens = torch.randint(0, 16, (5, 2, 2), generator=torch.Generator().manual_seed(0))
    np.savez(tmp_path / "t.npz", tokens=tokens.numpy())
    common = ["decode", "--tokenizer", str(path), "--tokens", str(tmp_path / "t.npz"), "--batch-size", "2"]
    tokenize([*common, "--out", str(tmp_path / "png")])
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(5)]
    expected = model.decode(tokens).numpy()
    for png, want in zip(pngs, expected, strict=True):
        img = Image.open(png)
        assert img.mode == "L"
        np.testing.assert_array_equal(np.asarray(img), want)
    grid = np.asarray(Image.open(tmp_path / "png_grid.png"))
    # 5 images in one row, 2 pixels of padding: the third sits at columns 2 + 2 * 10.
    assert grid.shape == (12, 52)
    np.testing.assert_array_equal(grid[2:10, 22:30], expected[2])
    tokenize([*common, "--out", str(tmp_path / "png2"), "--grid", str(tmp_path / "g" / "grid.png")])
    assert (tmp_path / "g" / "grid.png").is_file()


def test_decode_with_the_vqgan_also_writes_a_grid(tmp_path):
    """Invariant: the VQGAN (random weights) decodes to RGB PNGs and writes the grid as well."""
    np.savez(tmp_path / "t.npz", tokens=np.random.default_rng(0).integers(0, 64, (2, 2, 2)))
    vq = ["--sizes", json.dumps(TINY_VQGAN), "--device", "cpu"]
    tokenize(["decode", *vq, "--tokens", str(tmp_path / "t.npz"), "--out", str(tmp_path / "png")])
    first = Image.open(tmp_path / "png" / "00000.png")
    side = first.size[0]  # 4 pixels a token for these sizes
    assert first.mode == "RGB" and first.size == (8, 8)
    assert Image.open(tmp_path / "png_grid.png").size == (2 + 2 * (side + 2), side + 4)


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "one of the arguments --images --idx is required"),
        (["--idx", "IDX", "--images", "IMG"], "not allowed with argument"),
        (["--idx", "IDX", "--checkpoint", "x.ckpt"], "not allowed with argument"),
        (["--images", "IMG", "--labels", "LAB"], "--labels"),
        (["--idx", "IDX", "--sizes", '{"ch": 64}'], "--sizes"),
    ],
)
def test_bad_combinations_of_settings_are_argparse_errors(
    tmp_path, tokenizer, idx_files, capsys, extra, message
):
    """Invariant: exactly one of --images/--idx and at most one of --checkpoint/--tokenizer are
    accepted, --labels only with --idx and --sizes not with --tokenizer; each is a usage error."""
    _, path = tokenizer
    names = {"IDX": str(idx_files[2]), "IMG": str(tmp_path), "LAB": str(idx_files[3])}
    extra = [names.get(a, a) for a in extra]
    with pytest.raises(SystemExit) as exit_info:
        tokenize(["encode", "--tokenizer", str(path), *extra, "--out", str(tmp_path / "t.npz")])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "t.npz").exists()


def test_idx_of_another_image_size_names_the_file_and_shapes(tmp_path, tokenizer):
    """Invariant: IDX images are not resized; a size other than the tokenizer's is an error naming
    the file, its image shape and the tokenizer's."""
    _, path = tokenizer
    idx = write_idx(tmp_path / "big-idx3-ubyte", np.zeros((2, 12, 12), dtype=np.uint8))
    with pytest.raises(ValueError) as error:
        tokenize(["encode", "--tokenizer", str(path), "--idx", str(idx), "--out", str(tmp_path / "t.npz")])
    text = str(error.value)
    assert str(idx) in text and "(12, 12)" in text and "(8, 8)" in text


def test_decode_rejects_tokens_outside_the_codebook(tmp_path, tokenizer):
    """Invariant: token ids >= codebook_size are an error naming the tokens file and the range."""
    _, path = tokenizer
    np.savez(tmp_path / "t.npz", tokens=np.full((1, 2, 2), 16))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        tokenize(
            ["decode", "--tokenizer", str(path), "--tokens", str(tmp_path / "t.npz"), "--out", str(tmp_path)]
        )
