r"""Images <-> token grids, for ``TokenGridData`` (MaskGIT's data on disk).

Two tokenizers: the taming VQGAN (``--checkpoint``; RGB, ``R x R`` images to ``R/16 x R/16``
grids; without a checkpoint, random weights) or a ``VQTokenizer`` written by ``save_tokenizer``
(``--tokenizer``, e.g. ``asset:fashion_vq.safetensors``; grey images to ``side/4 x side/4`` grids).
Encode a folder of images (``DIR/<class>/*.png|jpg`` gives labels by sorted class name; see
``mixdistill.image_files``) or an IDX images file (``--idx``, with ``--labels``) into an ``.npz``
with entries ``tokens`` ``(N, h, w)``, ``labels`` ``(N,)`` (when known) and ``classes``; decode
token grids back to PNGs ``OUT/00000.png``... and a grid of the first 64 (``OUT_grid.png``)::

    python -m mixdistill.tokenize_images encode --checkpoint vqgan/last.ckpt --images DIR --out tokens.npz
    python -m mixdistill.tokenize_images encode --tokenizer asset:fashion_vq.safetensors \
        --idx train-images-idx3-ubyte.gz --labels train-labels-idx1-ubyte.gz --out tokens.npz
    python -m mixdistill.tokenize_images decode --checkpoint vqgan/last.ckpt --tokens tokens.npz --out DIR

For the VQGAN, images are resized (bilinear) so that the shorter side is ``--size`` and
centre-cropped, as MaskGIT-pytorch's ImageNet evaluation transform does, then scaled to
``[-1, 1]``. For a ``VQTokenizer``, folder images are read as grey and fitted the same way to its
``image_size``; IDX images are used as they are and must already have that size.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, Protocol

import numpy as np
import torch
from PIL import Image

from mixdistill.data.token_grid import pick, read_tensors
from mixdistill.image_files import (
    GRID_IMAGES,
    ImageSource,
    fit_square,
    folder_source,
    idx_source,
    write_grid,
    write_pngs,
)
from mixdistill.nets.vq_tokenizer import VQTokenizer
from mixdistill.nets.vqgan import VQModel
from mixdistill.nets.vqgan_layers import VQGANSizes
from mixdistill.vq_training import load_tokenizer


class Codec(Protocol):
    """What the command needs of a tokenizer: image preparation, batch encode and decode."""

    vocab_size: int

    def check_source(self, source: ImageSource) -> None:
        """Raise naming the source when its images cannot be encoded."""

    def prepare(self, img: Image.Image) -> np.ndarray:
        """The model input of one image read from disk."""

    def encode_batch(self, images: np.ndarray) -> np.ndarray:
        """Token grids ``(b, h, w)`` of stacked ``prepare`` outputs."""

    def decode_batch(self, tokens: torch.Tensor) -> np.ndarray:
        """Images ``(b, H, W)`` (grey) or ``(b, H, W, 3)`` (RGB) uint8 of token grids ``(b, h, w)``."""


class VQGANCodec:
    """The taming VQGAN on RGB images fitted to ``size x size`` and scaled to ``[-1, 1]``."""

    def __init__(self, model: VQModel, size: int, device: str) -> None:
        self.model, self.size, self.device = model.to(device).eval(), size, device
        self.vocab_size = model.sizes.n_embed

    def check_source(self, source: ImageSource) -> None:
        pass  # any image is fitted to --size

    def prepare(self, img: Image.Image) -> np.ndarray:
        arr = np.asarray(fit_square(img.convert("RGB"), self.size), dtype=np.float32) / 255.0
        return arr.transpose(2, 0, 1) * 2.0 - 1.0  # (3, R, R)

    def encode_batch(self, images: np.ndarray) -> np.ndarray:
        return self.model.encode(torch.from_numpy(images).to(self.device)).cpu().numpy()

    def decode_batch(self, tokens: torch.Tensor) -> np.ndarray:
        images = self.model.decode(tokens.to(self.device)).cpu()  # (b, 3, R, R) in [-1, 1]
        return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


class VQTokenizerCodec:
    """A ``VQTokenizer`` on grey uint8 images of its ``image_size``."""

    def __init__(self, model: VQTokenizer, path: str, device: str) -> None:
        self.model, self.path, self.device = model.to(device).eval(), path, device
        self.vocab_size = model.codebook_size
        self.side = model.sizes.image_size

    def check_source(self, source: ImageSource) -> None:
        # IDX images are taken as they are: resizing a dataset silently would change what is modelled.
        if source.shape is not None and source.shape != (self.side, self.side):
            raise ValueError(
                f"{source.setting} holds images of shape {source.shape} but --tokenizer '{self.path}' "
                f"takes ({self.side}, {self.side}); give a tokenizer trained on this image size, or a "
                f"folder of images (--images), which is resized."
            )

    def prepare(self, img: Image.Image) -> np.ndarray:
        return np.asarray(fit_square(img.convert("L"), self.side), dtype=np.uint8)

    def encode_batch(self, images: np.ndarray) -> np.ndarray:
        return self.model.encode(torch.from_numpy(images).to(self.device)).cpu().numpy()

    def decode_batch(self, tokens: torch.Tensor) -> np.ndarray:
        g = self.model.sizes.grid
        if tuple(tokens.shape[1:]) != (g, g):
            raise ValueError(
                f"--tokenizer '{self.path}' decodes ({g}, {g}) token grids; got grids of shape "
                f"{tuple(tokens.shape[1:])}. Give the tokens of this tokenizer."
            )
        return self.model.decode(tokens.to(self.device)).cpu().numpy()  # (b, H, W)


def encode_source(codec: Codec, source: ImageSource, out: Path, batch_size: int) -> np.ndarray:
    """Encode every image of ``source`` and write ``out`` (``.npz``); returns the tokens."""
    codec.check_source(source)
    grids = []
    for i in range(0, source.count, batch_size):
        batch = np.stack([codec.prepare(source.read(j)) for j in range(i, min(i + batch_size, source.count))])
        grids.append(codec.encode_batch(batch))
    tokens = np.concatenate(grids).astype(np.int64)  # (N, h, w)
    entries = {"tokens": tokens, "classes": np.array(source.classes, dtype=str)}
    if source.labels is not None:
        entries["labels"] = source.labels.astype(np.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **entries)
    return tokens


def decode_file(codec: Codec, tokens_path: Path, out: Path, grid: Path, key: str, batch_size: int) -> int:
    """Decode the token grids of ``tokens_path`` (any ``TokenGridData`` format) to ``out/00000.png``...

    Also writes ``grid``, a PNG of the first ``GRID_IMAGES`` decoded images. Returns the number of
    images written.
    """
    setting = f"--tokens '{tokens_path}'"
    tokens = torch.as_tensor(np.asarray(pick(read_tensors(tokens_path), key, setting)), dtype=torch.long)
    if tokens.dim() != 3 or tokens.shape[0] == 0:
        raise ValueError(
            f"{setting}: expected token grids (N, h, w) with N >= 1; got shape {tuple(tokens.shape)}."
        )
    if int(tokens.min()) < 0 or int(tokens.max()) >= codec.vocab_size:
        raise ValueError(
            f"{setting}: expected token ids in [0, {codec.vocab_size}) (the tokenizer's codebook); got "
            f"values [{int(tokens.min())}, {int(tokens.max())}]."
        )
    out.mkdir(parents=True, exist_ok=True)
    shown = []
    for i in range(0, len(tokens), batch_size):
        pixels = codec.decode_batch(tokens[i : i + batch_size])
        write_pngs(pixels, out, i)
        if i < GRID_IMAGES:
            shown.append(pixels[: GRID_IMAGES - i])
    grid.parent.mkdir(parents=True, exist_ok=True)
    write_grid(np.concatenate(shown), grid)
    return len(tokens)


def parser() -> argparse.ArgumentParser:
    """The ``encode``/``decode`` command line."""
    p = argparse.ArgumentParser(
        prog="python -m mixdistill.tokenize_images", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("encode", "decode"):
        s = sub.add_parser(name)
        model = s.add_mutually_exclusive_group()
        model.add_argument("--checkpoint", help="taming VQGAN checkpoint (last.ckpt); neither: random VQGAN")
        model.add_argument("--tokenizer", help="VQTokenizer safetensors (save_tokenizer) or asset:NAME")
        s.add_argument("--allow-pickle", action="store_true", help="read pickles inertly (no code runs)")
        s.add_argument("--sizes", default="{}", help="VQGANSizes overrides as JSON, e.g. '{\"ch\": 64}'")
        s.add_argument("--batch-size", type=int, default=32)
        s.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        s.add_argument("--out", required=True, type=Path, help="tokens .npz (encode) or PNG folder (decode)")
    enc, dec = sub.choices["encode"], sub.choices["decode"]
    source = enc.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, help="folder of images")
    source.add_argument("--idx", type=Path, help="IDX images file (e.g. train-images-idx3-ubyte.gz)")
    enc.add_argument("--labels", type=Path, help="IDX labels file of the --idx images")
    enc.add_argument("--size", type=int, default=256, help="image side for the VQGAN (256)")
    dec.add_argument("--tokens", required=True, type=Path, help="token grid file")
    dec.add_argument("--key", default="tokens", help="entry of the tokens in the file")
    dec.add_argument("--grid", type=Path, help="grid PNG of the first 64 images (default: OUT_grid.png)")
    return p


def build_codec(args: argparse.Namespace, error: Callable[[str], NoReturn]) -> Codec:
    """The VQGAN (``--checkpoint`` or random) or the ``VQTokenizer`` (``--tokenizer``) of ``args``.

    ``error`` reports a bad combination of settings (the parser's ``error``).
    """
    if args.tokenizer is not None:
        if args.sizes != "{}":
            error(
                f"--sizes {args.sizes} sets VQGAN sizes; a --tokenizer file carries its own, so drop --sizes."
            )
        return VQTokenizerCodec(load_tokenizer(args.tokenizer), args.tokenizer, args.device)
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(args.sizes).items()}
    model = VQModel(VQGANSizes(**overrides), args.checkpoint, args.allow_pickle)
    return VQGANCodec(model, getattr(args, "size", 256), args.device)


def main(argv: list[str] | None = None) -> None:
    """Run ``encode`` or ``decode`` (see the module docstring)."""
    cli = parser()
    args = cli.parse_args(argv)
    if args.command == "encode" and args.labels is not None and args.idx is None:
        cli.error(f"--labels '{args.labels}' labels --idx images; --images folders label by subfolder.")
    codec = build_codec(args, cli.error)
    if args.command == "encode":
        source = idx_source(args.idx, args.labels) if args.idx is not None else folder_source(args.images)
        tokens = encode_source(codec, source, args.out, args.batch_size)
        print(f"wrote {len(tokens)} token grids of shape {tokens.shape[1:]} to {args.out}")
    else:
        grid = args.grid if args.grid is not None else args.out.parent / f"{args.out.name}_grid.png"
        n = decode_file(codec, args.tokens, args.out, grid, args.key, args.batch_size)
        print(f"wrote {n} images to {args.out} and a grid of the first {min(n, GRID_IMAGES)} to {grid}")


if __name__ == "__main__":
    main()
