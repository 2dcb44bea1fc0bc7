"""How much a mixture student uses lambda: the spread of its product components at t = 1."""

from __future__ import annotations

import math

import torch


@torch.no_grad()
def lambda_use(
    student, latents: int = 16, batch: int = 16, seed: int = 0, t: float = 1.0, x0: torch.Tensor | None = None
) -> float:
    """Mean over lambdas of ``sum_d KL(p_lambda^d || pbar^d) / D`` at time ``t``, in nats per token.

    0 means every component equals the mixture marginal (a product denoiser). At ``t < 1`` the
    inputs are real examples ``x0`` ``(B, D)`` corrupted to ``t`` (their first ``batch`` rows).
    A class-conditional student gets uniformly drawn labels.
    """
    gen = torch.Generator().manual_seed(seed)
    if t < 1.0:
        if x0 is None:
            raise ValueError(f"lambda_use: t={t} < 1 needs real examples x0 to corrupt.")
        torch.manual_seed(seed)
        x = student.process.corrupt(x0[:batch], torch.full((min(batch, len(x0)),), t))
    else:
        x = student.process.prior((batch, student.num_dims))
    batch = x.shape[0]
    times = torch.full((batch,), t)
    cond = torch.randint(student.num_classes, (batch,), generator=gen) if student.num_classes else None
    lam = student.sample_latent(batch, latents)
    logp = student.denoise_latent(x, times, cond, lam).float().log_softmax(-1)  # (B, n, D, S)
    pbar = torch.logsumexp(logp, 1, keepdim=True) - math.log(latents)
    kl = (logp.exp() * (logp - pbar)).sum(-1)  # (B, n, D)
    return float(kl.mean())
