"""Tests of the consistency targets (mixdistill/di4c/targets.py): the teacher rollout draws exactly
the joint of the teacher's many-step chain, keeps what ``x_t`` fixes, and trains through the objective.
"""

from __future__ import annotations

import pytest
import torch

from mixdistill.di4c.objective import Di4CObjective
from mixdistill.di4c.targets import StudentAtU, TeacherRollout
from mixdistill.di4c.times import SDTTTimes, TimeDraw
from mixdistill.evaluation.exact import sampler_distribution, total_variation
from mixdistill.injection import AdditiveInjection
from mixdistill.nets.mlp import MLPDenoiserNet
from mixdistill.processes.masking import MaskingProcess
from mixdistill.student import MixtureStudent
from mixdistill.teachers.exact import ExactTeacher
from mixdistill.teachers.network import NetworkTeacher

DIAGONAL = torch.tensor([[0.5, 0.0], [0.0, 0.5]], dtype=torch.float64)
# Correlated, unequal mass, with zeros: not a product.
TABLE_33 = torch.tensor([[0.30, 0.05, 0.0], [0.0, 0.20, 0.05], [0.10, 0.0, 0.30]], dtype=torch.float64)


def rollout(teacher: ExactTeacher, x_t: torch.Tensor, t: float, steps: int, n: int):
    """``TeacherRollout(steps)`` targets and marginal of ``x_t`` ``(b, D)`` at time ``t``; the
    rollout uses no student, so none is given.
    """
    b = x_t.shape[0]
    times = torch.full((b,), t)
    draw = TimeDraw(times, 0.5 * times, torch.zeros(b), torch.ones(b), torch.ones(b))
    logp = teacher.log_marginal(x_t, times)
    return TeacherRollout(steps)(teacher, None, x_t, draw, None, logp, n, None)


def histogram(targets: torch.Tensor, S: int) -> torch.Tensor:
    """Empirical distribution ``(S^D,)``, row-major like ``sampler_distribution``, of ``(b, n, D)``."""
    flat = targets.reshape(-1, targets.shape[-1])
    index = (flat * S ** torch.arange(flat.shape[1] - 1, -1, -1)).sum(1)
    return torch.bincount(index, minlength=S ** flat.shape[1]).double() / flat.shape[0]


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_rollout_from_noise_has_the_product_sampler_error_of_its_steps(steps):
    """On {00, 11} with equal mass, a K-step masking product chain from all-masked gives unequal
    pairs exactly when both tokens are revealed in the same step: probability 1 / (2K) (Theorem 1).
    The rollout's joint samples show that rate, so they carry the K-step teacher's correlations."""
    torch.manual_seed(0)
    teacher = ExactTeacher(MaskingProcess(2), DIAGONAL)
    x_t = torch.full((400, 2), teacher.process.mask_id)
    targets, _ = rollout(teacher, x_t, 1.0, steps, 50)
    unequal = (targets[..., 0] != targets[..., 1]).double().mean()
    assert abs(float(unequal) - 1 / (2 * steps)) < 0.015, (steps, float(unequal))


@pytest.mark.parametrize("steps", [2, 3])
def test_rollout_from_noise_matches_the_exact_k_step_sampler(steps):
    """From all-masked at t = 1 the rollout's samples follow the exact distribution of the
    teacher's ``steps``-step sampler (enumerated): TV of 20 000 samples below sampling noise."""
    torch.manual_seed(1)
    teacher = ExactTeacher(MaskingProcess(3), TABLE_33)
    x_t = torch.full((500, 2), teacher.process.mask_id)
    targets, _ = rollout(teacher, x_t, 1.0, steps, 40)
    exact = sampler_distribution(teacher, steps)
    assert float(total_variation(histogram(targets, 3), exact)) < 0.02
    product = sampler_distribution(teacher, 1)  # the one-step sampler is measurably different
    assert float(total_variation(exact, product)) > 0.05


def test_rollout_keeps_revealed_tokens_and_completes_them_exactly():
    """A token revealed in ``x_t`` stays, and on {00, 11} the exact teacher completes its partner
    to the same value on every sample; the marginal target puts all mass there too."""
    teacher = ExactTeacher(MaskingProcess(2), DIAGONAL)
    m = teacher.process.mask_id
    x_t = torch.tensor([[0, m], [m, 1]])
    targets, target_lm = rollout(teacher, x_t, 0.5, 4, 30)
    assert torch.equal(targets, torch.tensor([[0, 0], [1, 1]]).unsqueeze(1).expand(2, 30, 2))
    torch.testing.assert_close(target_lm.exp(), torch.tensor([[[1.0, 0], [1, 0]], [[0, 1], [0, 1.0]]]))


def test_one_step_rollout_marginal_is_the_teachers():
    """With one step the rollout is the teacher's product step to data: its marginal target is
    the teacher's log-marginal at ``x_t``, and each dimension's targets follow that marginal."""
    torch.manual_seed(2)
    teacher = ExactTeacher(MaskingProcess(3), TABLE_33)
    x_t = torch.full((300, 2), teacher.process.mask_id)
    targets, target_lm = rollout(teacher, x_t, 1.0, 1, 40)
    logp = teacher.log_marginal(x_t, torch.ones(300))
    torch.testing.assert_close(target_lm, logp)
    freq = torch.nn.functional.one_hot(targets, 3).double().mean((0, 1))  # (D, S)
    torch.testing.assert_close(freq, logp[0].exp().double(), atol=0.015, rtol=0)


def test_objective_trains_with_the_rollout_target():
    """Di4CObjective with TeacherRollout gives a finite loss whose consistency part is non-zero and
    whose gradient reaches the student; the paper's target stays the default."""
    torch.manual_seed(3)
    teacher = ExactTeacher(MaskingProcess(3), TABLE_33)
    net = MLPDenoiserNet(2, 4, 3, hidden=16, depth=1, time_features=8)
    base = NetworkTeacher(MaskingProcess(3), (2,), net)
    student = MixtureStudent.from_teacher(base, AdditiveInjection("net.time_embed", freq_dim=8))
    x0 = torch.tensor([[0, 0], [1, 1], [2, 2], [2, 0]]).repeat(4, 1)
    obj = Di4CObjective(SDTTTimes(p_distil=0.0), latents=4, target=TeacherRollout(3))
    out = obj(teacher, student, x0)
    assert torch.isfinite(out["loss"]) and float(out["consis"].detach()) > 0
    out["loss"].backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    assert isinstance(Di4CObjective().target, StudentAtU)


def test_rollout_steps_must_be_positive():
    """A rollout of no steps is refused with the setting and the value."""
    with pytest.raises(ValueError, match="steps=0"):
        TeacherRollout(0)
