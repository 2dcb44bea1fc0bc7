"""Train, measure, save and load the ``VQTokenizer`` (the image-token example's tokenizer).

The weights file is self-describing: the tokenizer's sizes travel in the safetensors metadata, so
``load_tokenizer(path)`` needs nothing else.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from mixdistill.assets import resolve_asset
from mixdistill.nets.vq_tokenizer import VQTokenizer, VQTokenizerSizes
from mixdistill.safe_load import read_safetensors

#: Metadata entry holding the sizes as JSON.
SIZES_KEY = "vq_tokenizer_sizes"


def train_vq_tokenizer(
    images: Tensor,
    sizes: VQTokenizerSizes | None = None,
    steps: int = 4000,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    log_every: int = 500,
) -> VQTokenizer:
    """Fit a ``VQTokenizer`` on ``images`` ``(N, H, W)`` (values 0..255) with Adam and a cosine schedule.

    Args:
        images: Training images.
        sizes: The tokenizer's sizes.
        steps: Optimiser steps.
        batch_size: Images per step, drawn with replacement.
        lr: Peak Adam learning rate (cosine decay to 0).
        seed: Seed of the initialisation and the batches.
        log_every: Print the running loss every this many steps (0: silent).
    """
    if steps < 1 or batch_size < 1 or images.shape[0] < 1:
        raise ValueError(
            f"train_vq_tokenizer: steps={steps}, batch_size={batch_size} and images must be >= 1."
        )
    torch.manual_seed(seed)
    model = VQTokenizer(sizes)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    start, running = time.perf_counter(), 0.0
    for step in range(1, steps + 1):
        batch = images[torch.randint(images.shape[0], (batch_size,), generator=gen)]
        loss, _ = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += float(loss.detach())
        if log_every and step % log_every == 0:
            secs = time.perf_counter() - start
            print(f"vq step {step}/{steps}: loss {running / log_every:.4f} ({secs:.0f} s)", flush=True)
            running = 0.0
    return model.eval()


@torch.no_grad()
def reconstruction_report(model: VQTokenizer, images: Tensor, batch_size: int = 1000) -> dict[str, float]:
    """Reconstruction error and codebook use of ``model`` on ``images`` ``(N, H, W)`` uint8.

    Returns ``mse`` (in ``[0, 1]`` intensity units), ``psnr`` (dB), ``codes_used`` (entries used at
    least once), ``codebook_use`` (their fraction) and ``perplexity`` (``exp`` of the code entropy).
    """
    model.eval()
    sq, counts = 0.0, torch.zeros(model.codebook_size, dtype=torch.float64)
    for batch in images.split(batch_size):
        codes = model.encode(batch)
        recon = model.decode(codes)
        sq += float(((recon.double() - batch.double()) / 255.0).square().sum())
        counts += torch.bincount(codes.flatten(), minlength=model.codebook_size).double()
    mse = sq / images.numel()
    p = counts / counts.sum()
    entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
    used = int((counts > 0).sum())
    return {
        "mse": mse,
        "psnr": 10 * math.log10(1.0 / max(mse, 1e-12)),
        "codes_used": used,
        "codebook_use": used / model.codebook_size,
        "perplexity": math.exp(entropy),
    }


def save_tokenizer(model: VQTokenizer, path: str | Path) -> Path:
    """Write the weights and codebook buffers with the sizes in the metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={SIZES_KEY: json.dumps(asdict(model.sizes))})
    return path


def load_tokenizer(path: str | Path) -> VQTokenizer:
    """The ``VQTokenizer`` saved by ``save_tokenizer`` at ``path`` (or ``asset:NAME``), in eval mode."""
    file = resolve_asset(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"VQ tokenizer '{path}' does not exist; train one with `python -m mixdistill.assets.build "
            f"fashion_vq.safetensors` or give the right path."
        )
    with safe_open(str(file), framework="pt") as f:
        meta = f.metadata() or {}
    if SIZES_KEY not in meta:
        raise ValueError(
            f"VQ tokenizer '{file}' has no '{SIZES_KEY}' metadata; it was not written by save_tokenizer."
        )
    model = VQTokenizer(VQTokenizerSizes(**json.loads(meta[SIZES_KEY])))
    model.load_state_dict(read_safetensors(file), strict=True)
    return model.eval()
