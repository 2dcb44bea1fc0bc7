"""How much a mixture student uses lambda: the spread of its product components at t = 1."""

from __future__ import annotations

import math

import torch


@torch.no_grad()
def lambda_use(student, latents: int = 16, batch: int = 16, seed: int = 0) -> float:
    """Mean over lambdas of ``sum_d KL(p_lambda^d || pbar^d) / D`` at t = 1, in nats per token.

    0 means every component equals the mixture marginal (a product denoiser). A class-conditional
    student gets uniformly drawn labels.
    """
    gen = torch.Generator().manual_seed(seed)
    x = student.process.prior((batch, student.num_dims))
    t = torch.ones(batch)
    cond = torch.randint(student.num_classes, (batch,), generator=gen) if student.num_classes else None
    lam = student.sample_latent(batch, latents)
    logp = student.denoise_latent(x, t, cond, lam).float().log_softmax(-1)  # (B, n, D, S)
    pbar = torch.logsumexp(logp, 1, keepdim=True) - math.log(latents)
    kl = (logp.exp() * (logp - pbar)).sum(-1)  # (B, n, D)
    return float(kl.mean())
