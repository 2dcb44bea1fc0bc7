"""Tests of the objective's lambda draws (mixdistill/di4c/latent_draws.py): every lambda marginally
uniform (so the mixture estimate stays a lower bound), the stratified draw one lambda per slice, and
the mixture estimate it gives against its closed form."""

from __future__ import annotations

import math

import torch

from mixdistill.di4c.latent_draws import IndependentDraw, StratifiedDraw
from mixdistill.di4c.losses import mixture_log_prob
from mixdistill.di4c.objective import Di4CObjective
from mixdistill.injection import AdditiveInjection
from mixdistill.nets.mlp import MLPDenoiserNet
from mixdistill.processes.masking import MaskingProcess
from mixdistill.student import MixtureStudent
from mixdistill.teachers.network import NetworkTeacher


def test_stratified_draw_puts_one_lambda_in_each_slice_of_every_coordinate():
    """For every example and coordinate, floor(n lambda) over the n lambdas is a permutation of 0..n-1."""
    torch.manual_seed(0)
    lam = StratifiedDraw()(64, 8, 3)
    assert lam.shape == (64, 8, 3)
    assert ((lam >= 0) & (lam < 1)).all()
    slots = (lam * 8).floor().long().sort(dim=1).values
    assert torch.equal(slots, torch.arange(8).view(1, 8, 1).expand(64, 8, 3))
    # the slice orders differ between coordinates and examples (a fixed order would correlate them)
    order = (lam * 8).floor().long()
    assert not torch.equal(order[:, :, 0], order[:, :, 1])
    assert not torch.equal(order[0], order[1])


def test_every_draw_is_marginally_uniform():
    """Each lambda_j's histogram over 10 bins is flat within 5 standard errors (the bound needs it)."""
    torch.manual_seed(1)
    for draw in (IndependentDraw(), StratifiedDraw()):
        lam = draw(20000, 4, 1)[..., 0]  # (B, n)
        for j in range(4):
            counts = torch.histc(lam[:, j], bins=10, min=0.0, max=1.0)
            assert (counts - 2000).abs().max() < 5 * math.sqrt(2000 * 0.9), (type(draw).__name__, j)


def test_stratified_estimate_is_exact_for_slice_aligned_components():
    """A mixture of n deterministic components, component i on lambda in [i/n, (i+1)/n): p(y) = 1/n
    for each y = i. The stratified estimate logsumexp_j log p(y | lambda_j) - log n equals log(1/n)
    on every draw; the independent one falls below it whenever a slice gets no lambda, and its mean is
    E log(max(c, eps)/n) with c ~ Binomial(n, 1/n).
    """
    torch.manual_seed(2)
    n, batch, eps = 8, 4000, 1e-12
    y = torch.randint(0, n, (batch, 1, 1))  # (B, m=1, D=1)
    results = {}
    for draw in (StratifiedDraw(), IndependentDraw()):
        comp = (draw(batch, n, 1) * n).floor().long()[..., 0]  # (B, n): the component of each lambda
        probs = torch.nn.functional.one_hot(comp, n).double() * (1 - n * eps) + eps  # (B, n, S=n)
        results[type(draw).__name__] = mixture_log_prob(probs.log().unsqueeze(2), y)[:, 0]  # (B,)
    assert torch.allclose(results["StratifiedDraw"], torch.full((batch,), -math.log(n), dtype=torch.float64))
    p = 1.0 / n
    expected = sum(
        math.comb(n, c) * p**c * (1 - p) ** (n - c) * math.log(max(c * (1 - n * eps) + n * eps, n * eps) / n)
        for c in range(n + 1)
    )
    assert abs(results["IndependentDraw"].mean().item() - expected) < 0.05 * abs(expected)


def test_objective_feeds_its_draw_to_the_student():
    """Di4CObjective(latent_draw=StratifiedDraw()) gives the student lambdas with one per slice."""
    torch.manual_seed(3)
    net = MLPDenoiserNet(3, 4, 3, hidden=16, depth=1, time_features=8)
    student = MixtureStudent.from_teacher(
        NetworkTeacher(MaskingProcess(3), (3,), net), AdditiveInjection("net.time_embed", freq_dim=8)
    )
    seen = []
    original = student.denoise_latent
    student.denoise_latent = lambda x_t, t, cond, lam: seen.append(lam) or original(x_t, t, cond, lam)
    objective = Di4CObjective(latents=4, latent_draw=StratifiedDraw())
    x_t = torch.full((5, 3), 3)
    logits = objective.student_logits(student, x_t, torch.ones(5), None)
    assert logits.shape == (5, 4, 3, 3)
    slots = (seen[0] * 4).floor().long().sort(dim=1).values
    assert torch.equal(slots, torch.arange(4).view(1, 4, 1).expand(5, 4, 1))
