"""Images <-> VQGAN token grids, for ``TokenGridData`` (MaskGIT's data on disk).

Encode a folder of images (``DIR/<class>/*.png|jpg`` gives labels by sorted class name, as
torchvision's ``ImageFolder``; images directly in ``DIR`` give none) into an ``.npz`` with entries
``tokens`` ``(N, R/16, R/16)``, ``labels`` ``(N,)`` and ``classes``; decode token grids back to PNGs::

    python -m mixdistill.tokenize_images encode --checkpoint vqgan/last.ckpt --images DIR --out tokens.npz
    python -m mixdistill.tokenize_images decode --checkpoint vqgan/last.ckpt --tokens tokens.npz --out DIR

Images are resized (bilinear) so that the shorter side is ``--size`` and centre-cropped, as
MaskGIT-pytorch's ImageNet evaluation transform does, then scaled to ``[-1, 1]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mixdistill.data.token_grid import pick, read_tensors
from mixdistill.nets.vqgan import VQModel
from mixdistill.nets.vqgan_layers import VQGANSizes

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def find_images(root: Path) -> tuple[list[Path], list[int] | None, list[str]]:
    """Image files under ``root``, their labels (class subfolders, sorted) or None, and class names."""
    if not root.is_dir():
        raise FileNotFoundError(f"--images '{root}' is not a folder.")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if classes:
        pairs = [(f, c) for c, name in enumerate(classes) for f in sorted((root / name).iterdir())]
        pairs = [(f, c) for f, c in pairs if f.suffix.lower() in SUFFIXES]
        files, labels = [f for f, _ in pairs], [c for _, c in pairs]
    else:
        files, labels = sorted(f for f in root.iterdir() if f.suffix.lower() in SUFFIXES), None
    if not files:
        raise FileNotFoundError(f"--images '{root}' holds no images ({', '.join(sorted(SUFFIXES))}).")
    return files, labels, classes


def load_image(path: Path, size: int) -> np.ndarray:
    """RGB image ``(3, size, size)`` float32 in ``[-1, 1]``: shorter side resized to ``size``, centre crop."""
    img = Image.open(path).convert("RGB")
    scale = size / min(img.size)
    w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
    img = img.resize((w, h), Image.BILINEAR)
    left, top = (w - size) // 2, (h - size) // 2
    arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    return arr.transpose(2, 0, 1) * 2.0 - 1.0


def encode_folder(model: VQModel, root: Path, out: Path, size: int, batch_size: int) -> np.ndarray:
    """Encode every image under ``root`` and write ``out`` (``.npz``); returns the tokens."""
    files, labels, classes = find_images(root)
    device = next(model.parameters()).device
    grids = []
    for i in range(0, len(files), batch_size):
        batch = np.stack([load_image(f, size) for f in files[i : i + batch_size]])
        grids.append(model.encode(torch.from_numpy(batch).to(device)).cpu().numpy())
    tokens = np.concatenate(grids).astype(np.int64)  # (N, h, w)
    entries = {"tokens": tokens, "classes": np.array(classes, dtype=str)}
    if labels is not None:
        entries["labels"] = np.array(labels, dtype=np.int64)
    np.savez(out, **entries)
    return tokens


def decode_file(model: VQModel, tokens_path: Path, out: Path, key: str, batch_size: int) -> int:
    """Decode the token grids of ``tokens_path`` (any ``TokenGridData`` format) to ``out/00000.png``...

    Returns the number of images written.
    """
    setting = f"--tokens '{tokens_path}'"
    tokens = torch.as_tensor(np.asarray(pick(read_tensors(tokens_path), key, setting)), dtype=torch.long)
    if tokens.dim() != 3 or int(tokens.min()) < 0 or int(tokens.max()) >= model.sizes.n_embed:
        raise ValueError(
            f"{setting}: expected token grids (N, h, w) in [0, {model.sizes.n_embed}); got shape "
            f"{tuple(tokens.shape)}, values [{int(tokens.min())}, {int(tokens.max())}]."
        )
    out.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    for i in range(0, len(tokens), batch_size):
        images = model.decode(tokens[i : i + batch_size].to(device)).cpu()  # (b, 3, R, R)
        pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for j, img in enumerate(pixels):
            Image.fromarray(img).save(out / f"{i + j:05d}.png")
    return len(tokens)


def parser() -> argparse.ArgumentParser:
    """The ``encode``/``decode`` command line."""
    p = argparse.ArgumentParser(
        prog="python -m mixdistill.tokenize_images", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("encode", "decode"):
        s = sub.add_parser(name)
        s.add_argument("--checkpoint", help="taming VQGAN checkpoint (last.ckpt); omitted: random weights")
        s.add_argument("--allow-pickle", action="store_true", help="read pickles inertly (no code runs)")
        s.add_argument("--sizes", default="{}", help="VQGANSizes overrides as JSON, e.g. '{\"ch\": 64}'")
        s.add_argument("--batch-size", type=int, default=32)
        s.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        s.add_argument("--out", required=True, type=Path, help="tokens .npz (encode) or PNG folder (decode)")
    sub.choices["encode"].add_argument("--images", required=True, type=Path, help="folder of images")
    sub.choices["encode"].add_argument("--size", type=int, default=256, help="image side (256)")
    sub.choices["decode"].add_argument("--tokens", required=True, type=Path, help="token grid file")
    sub.choices["decode"].add_argument("--key", default="tokens", help="entry of the tokens in the file")
    return p


def main(argv: list[str] | None = None) -> None:
    """Run ``encode`` or ``decode`` (see the module docstring)."""
    args = parser().parse_args(argv)
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(args.sizes).items()}
    model = VQModel(VQGANSizes(**overrides), args.checkpoint, args.allow_pickle).to(args.device).eval()
    if args.command == "encode":
        tokens = encode_folder(model, args.images, args.out, args.size, args.batch_size)
        print(f"wrote {len(tokens)} token grids of shape {tokens.shape[1:]} to {args.out}")
    else:
        n = decode_file(model, args.tokens, args.out, args.key, args.batch_size)
        print(f"wrote {n} images to {args.out}")


if __name__ == "__main__":
    main()
