"""The VQGAN behind MaskGIT's tokens: parameter count and taming key names, strict checkpoint loading,
encode/decode shapes, and the images <-> token grid command."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mixdistill.data import TokenGridData
from mixdistill.nets.vqgan import VQModel
from mixdistill.nets.vqgan_layers import VQGANSizes
from mixdistill.tokenize_images import main as tokenize

TINY_VQ = {"ch": 32, "ch_mult": [1, 1, 2], "attn_resolutions": [8], "resolution": 32, "z_channels": 32}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


TINY_VQ |= {"embed_dim": 16, "n_embed": 64}


def tiny_vqgan(**kwargs):
    sizes = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY_VQ.items()}
    return VQModel(VQGANSizes(**sizes), **kwargs).eval()


def test_vqgan_parameter_count_and_taming_key_names():
    """Invariant: the default VQModel has the published VQGAN's 72.142M parameters (72,141,699
    measured, no loss modules) under taming's key names."""
    with torch.device("meta"):
        model = VQModel()
    assert sum(p.numel() for p in model.parameters()) == 72_141_699
    keys = set(model.state_dict())
    for k in [
        "encoder.conv_in.weight",
        "encoder.down.2.block.0.nin_shortcut.weight",  # 128 -> 256 channels
        "encoder.down.3.downsample.conv.weight",
        "encoder.down.4.attn.1.proj_out.weight",  # attention at 16 x 16
        "encoder.mid.attn_1.q.weight",
        "decoder.up.0.block.2.conv2.weight",  # num_res_blocks + 1 blocks per decoder level
        "decoder.up.4.attn.2.norm.weight",
        "decoder.up.1.upsample.conv.weight",
        "quantize.embedding.weight",
        "quant_conv.weight",
        "post_quant_conv.bias",
    ]:
        assert k in keys, k
    assert (
        "encoder.down.4.downsample.conv.weight" not in keys
        and "decoder.up.0.upsample.conv.weight" not in keys
    )
    assert model.quantize.embedding.weight.shape == (1024, 256) and model.encoder.conv_out.out_channels == 256


class Opaque:
    """Not a tensor or container: weights_only loading must refuse it."""


def test_vqgan_checkpoint_loads_strictly_without_loss_entries(tmp_path):
    """Invariant: a Lightning checkpoint's state_dict loads with its loss.* entries set aside; any other
    missing or extra key is an error naming the file; a pickle with objects needs allow_pickle."""
    source = tiny_vqgan()
    state = source.state_dict() | {
        "loss.discriminator.main.0.weight": torch.zeros(2),
        "loss.logvar": torch.zeros(()),
    }
    torch.save({"epoch": 3, "global_step": 7, "state_dict": state}, tmp_path / "last.ckpt")
    loaded = tiny_vqgan(checkpoint=str(tmp_path / "last.ckpt"))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in source.state_dict().items())
    broken = dict(state)
    broken.pop("decoder.conv_out.bias")
    broken["encoder.extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": broken}, tmp_path / "broken.ckpt")
    with pytest.raises(ValueError, match=r"broken.ckpt.*decoder.conv_out.bias.*encoder.extra.weight"):
        tiny_vqgan(checkpoint=str(tmp_path / "broken.ckpt"))
    torch.save({"state_dict": state, "hyper_parameters": Opaque()}, tmp_path / "pickled.ckpt")
    with pytest.raises(ValueError, match="pickled.ckpt.*allow_pickle"):
        tiny_vqgan(checkpoint=str(tmp_path / "pickled.ckpt"))
    assert tiny_vqgan(checkpoint=str(tmp_path / "pickled.ckpt"), allow_pickle=True) is not None


def test_vqgan_round_trip_shapes_and_nearest_codes():
    """Invariant: encode maps (B, 3, R, R) to (B, R/f, R/f) codes in [0, n_embed) and decode maps them
    back to (B, 3, R, R); the code of a feature vector equal to a codebook entry is that entry."""
    torch.manual_seed(0)
    vq = tiny_vqgan()
    tokens = vq.encode(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert (
        tokens.shape == (2, 8, 8)
        and tokens.dtype == torch.long
        and 0 <= int(tokens.min()) <= int(tokens.max()) < 64
    )
    assert vq.decode(tokens).shape == (2, 3, 32, 32)
    codes = torch.randint(0, 64, (2, 8, 8))
    assert torch.equal(vq.quantize.indices(vq.quantize.vectors(codes)), codes)


def test_tokenize_images_command_writes_token_grid_data(tmp_path):
    """Invariant: `python -m mixdistill.tokenize_images encode` turns class folders of images into a
    TokenGridData file (tokens, labels by sorted class name) and `decode` writes one PNG per grid."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(["b_dog", "a_cat"]):
        (tmp_path / "img" / name).mkdir(parents=True)
        for i in range(2 + c):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
                tmp_path / "img" / name / f"{i}.png"
            )
    common = ["--sizes", json.dumps(TINY_VQ), "--device", "cpu"]
    tokenize(
        [
            "encode",
            *common,
            "--images",
            str(tmp_path / "img"),
            "--out",
            str(tmp_path / "t.npz"),
            "--size",
            "32",
        ]
    )
    stored = np.load(tmp_path / "t.npz")
    assert stored["tokens"].shape == (5, 8, 8) and stored["labels"].tolist() == [0, 0, 0, 1, 1]
    assert stored["classes"].tolist() == ["a_cat", "b_dog"]
    dm = TokenGridData(str(tmp_path / "t.npz"), vocab_size=64, val_fraction=0.2)
    assert dm.num_classes == 2 and dm.load_arrays().x0.shape == (5, 8, 8)
    tokenize(["decode", *common, "--tokens", str(tmp_path / "t.npz"), "--out", str(tmp_path / "png")])
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert len(pngs) == 5 and Image.open(pngs[0]).size == (32, 32)
