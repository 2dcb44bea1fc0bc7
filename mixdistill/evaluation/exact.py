"""Exact evaluation on spaces small enough to enumerate.

The output distribution of an N-step sampler is computed by propagating a probability vector over
all ``K^D`` noisy states through each step's transition kernel. For a product sampler the kernel of
a step is ``prod_d P^d(x_s^d | x_t)``; for a mixture student it is ``E_lambda prod_d P^d_lambda``,
the expectation taken by midpoint quadrature on ``M`` nodes per lambda coordinate (its error is
estimated by comparing ``M`` with ``2M``; see ``docs/benchmarks.md``).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from mixdistill.sampling.grids import uniform_grid
from mixdistill.sampling.hybrid import HybridSampler
from mixdistill.tables import enumerate_states

if TYPE_CHECKING:
    from mixdistill.teachers.base import Teacher

#: Largest number of noisy states ``K^D`` that ``sampler_distribution`` enumerates.
MAX_EXACT_STATES = 1 << 15


def joint_from_factors(per_dim: Tensor) -> Tensor:
    """Product distribution ``(N, K^D)`` from per-dimension probabilities ``(N, D, K)`` (row-major)."""
    joint = per_dim[:, 0]
    for d in range(1, per_dim.shape[1]):  # D is tiny here; this loop builds the outer product
        joint = (joint.unsqueeze(-1) * per_dim[:, d].unsqueeze(1)).flatten(1)
    return joint


def latent_nodes(latent_dim: int, nodes: int) -> tuple[Tensor, Tensor]:
    """Midpoint-rule nodes ``(M^k, k)`` and equal weights ``(M^k,)`` on ``[0, 1]^k``."""
    mids = (torch.arange(nodes, dtype=torch.float64) + 0.5) / nodes
    pts = torch.tensor(list(itertools.product(mids.tolist(), repeat=latent_dim)))
    return pts.float(), torch.full((pts.shape[0],), 1.0 / pts.shape[0], dtype=torch.float64)


@torch.no_grad()
def step_factors(model: Teacher, x_t: Tensor, t: float, s: float, lam: Tensor | None = None) -> Tensor:
    """Per-dimension transition probabilities ``P^d(x_s^d | x_t)`` ``(N, D, K)`` in float64.

    ``lam`` ``(N, k)`` gives the student's lambda for each row; ``None`` means a product teacher.
    """
    n = x_t.shape[0]
    tt = torch.full((n,), t, device=x_t.device)
    ss = torch.full((n,), s, device=x_t.device)
    logits = model.denoise(x_t, tt, None) if lam is None else model.denoise(x_t, tt, None, lam.to(x_t.device))
    probs = torch.softmax(logits.double(), -1)
    return model.process.posterior_probs(x_t, probs, tt.double(), ss.double()).double()


@torch.no_grad()
def propagate(
    model: Teacher, dist: Tensor, states: Tensor, t: float, s: float, nodes: int = 1024, chunk: int = 64
) -> Tensor:
    """One step of the exact sampler: distribution over ``states`` at ``t`` -> at ``s``: ``(N,)``.

    Only states with positive probability are evaluated, which keeps absorbing processes cheap.
    Students are evaluated for ``chunk`` quadrature nodes per network call.
    """
    active = dist > 0
    x_t, mass = states[active], dist[active]  # (A, D), (A,)
    latent_dim = getattr(model, "latent_dim", None)
    if latent_dim is None:
        return mass @ joint_from_factors(step_factors(model, x_t, t, s))
    pts, weights = latent_nodes(latent_dim, nodes)
    out = torch.zeros_like(dist)
    A = x_t.shape[0]
    for start in range(0, pts.shape[0], chunk):  # bounds memory: (chunk * A, K^D) joints at a time
        lam, w = pts[start : start + chunk], weights[start : start + chunk]
        c = lam.shape[0]
        factors = step_factors(model, x_t.repeat(c, 1), t, s, lam.repeat_interleave(A, 0))  # (c A, D, K)
        joint = joint_from_factors(factors).view(c, A, -1)  # (c, A, K^D)
        out += torch.einsum("c,a,cak->k", w, mass, joint)
    return out


@torch.no_grad()
def sampler_distribution(
    model: Teacher | HybridSampler,
    steps: int,
    grid: Tensor | None = None,
    nodes: int = 1024,
    device: str | None = None,
) -> Tensor:
    """Exact distribution ``(S^D,)`` (row-major over data vectors) of the ``steps``-step sampler.

    Args:
        model: A teacher (product steps), a ``MixtureStudent`` (lambda by midpoint quadrature), or a
            ``HybridSampler`` (each step by its own model).
        steps: Number of sampling steps.
        grid: Custom decreasing times ``(steps + 1,)``; defaults to ``uniform_grid(steps)``.
        nodes: Quadrature nodes per lambda coordinate (students only).
        device: Device of the computation; defaults to the model's.
    """
    proc = model.process
    K, S, D = proc.num_states, proc.vocab_size, model.num_dims
    if K**D > MAX_EXACT_STATES:
        raise ValueError(
            f"exact evaluation enumerates K^D = {K}^{D} = {K**D} states, more than {MAX_EXACT_STATES}; "
            f"use a smaller synthetic problem."
        )
    dev = device or next((b.device for b in model.buffers()), torch.device("cpu"))
    states = enumerate_states(K, D).to(dev)
    prior = proc.prior_probs().double().to(dev)
    prior = prior / prior.sum()  # a float32 prior (e.g. 1/3 each) sums to 1 only to ~1e-7
    dist = joint_from_factors(prior.expand(1, D, K))[0]
    grid = uniform_grid(steps) if grid is None else grid
    models = model.step_models(steps) if isinstance(model, HybridSampler) else [model] * steps
    for step_model, t, s in zip(models, grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        dist = propagate(step_model, dist, states, t, s, nodes)
    is_data = (states < S).all(1)
    leftover = float(dist[~is_data].sum())
    if leftover > 1e-9:
        raise RuntimeError(
            f"the sampler ends with probability {leftover:.3g} on non-data states (t_min > 0?)."
        )
    return dist[is_data]


def total_variation(p: Tensor, q: Tensor) -> Tensor:
    """``TV(p, q) = 0.5 sum |p - q|`` of two distributions over the same enumeration."""
    return 0.5 * (p.double() - q.double()).abs().sum()


def kl_divergence(p: Tensor, q: Tensor) -> Tensor:
    """``KL(p || q)``; infinite where ``q`` is 0 and ``p`` is not."""
    p, q = p.double(), q.double()
    pos = p > 0
    return (p[pos] * (p[pos].log() - q[pos].log())).sum()
