"""``check_teacher``: run every check on a teacher and on the student copied from it."""

from __future__ import annotations

import math

import torch

from mixdistill.injection import AdditiveInjection, LatentInjection
from mixdistill.sampling.seeding import seeded
from mixdistill.student import MixtureStudent
from mixdistill.teachers.base import Teacher
from mixdistill.testing.checks import (
    Probe,
    count_parameters,
    eval_mode,
    make_probe,
    model_device,
    run_checks,
)
from mixdistill.testing.report import TeacherCheckError, TeacherReport


def default_injection(teacher: Teacher) -> LatentInjection | None:
    """The injection ``DistillModule`` uses when none is configured: lambda added at the teacher's
    ``latent_layer``; None when the teacher names none.
    """
    layer = getattr(teacher, "latent_layer", None)
    return None if layer is None else AdditiveInjection(layer)


def check_student_init(teacher: Teacher, student: MixtureStudent, probe: Probe, exact: bool) -> float:
    """Max ``|student - teacher|`` of ``denoise`` at init over two random lambdas per example.

    Raises unless it is finite, and unless it is exactly 0 when ``exact`` (zero-initialised injections).
    """
    want = teacher.denoise(probe.x_t, probe.t, probe.cond).double()
    worst = 0.0
    for _ in range(2):
        lam = student.sample_latent(probe.x_t.shape[0], device=probe.x_t.device)
        got = student.denoise(probe.x_t, probe.t, probe.cond, lam).double()
        worst = max(worst, float((got - want).abs().max()))
    if not math.isfinite(worst):
        raise TeacherCheckError("student_init", f"the student's logits differ by {worst} (not finite).")
    if exact and worst != 0.0:
        raise TeacherCheckError(
            "student_init",
            f"the injection promises an exact copy at init (exact_at_init), but the student's logits "
            f"differ from the teacher's by up to {worst:.3g}; is its last layer zero-initialised, and "
            "does the hooked layer sit on the path of every output?",
        )
    return worst


@torch.no_grad()
def check_teacher(
    teacher: Teacher,
    injection: LatentInjection | None = None,
    batch_size: int = 2,
    num_samples: int = 3,
    steps: int = 2,
    seed: int = 0,
    check_student: bool = True,
) -> TeacherReport:
    """Check that ``teacher`` meets the Teacher contract; raise ``TeacherCheckError`` naming the check.

    Checks, in order (each also on the student, prefixed ``student.``): ``logits`` (``network_logits``
    and ``denoise`` are finite ``(B, D, S)``), ``carry_over`` (absorbing processes: unmasked tokens
    get all the mass and survive every step), ``step`` (shapes ``(B, D)`` / ``(B, n, D)``, values in
    range, no mask left after a step to ``s = 0``), ``sample`` (``(B, *shape)`` data values) and
    ``student_init`` (the largest logit difference of ``MixtureStudent.from_teacher(teacher,
    injection)`` at init: exactly 0 for injections with ``exact_at_init``, else reported, finite).

    The teacher runs in eval mode (its flags are restored afterwards) under a fixed seed; the
    caller's random state is left untouched.

    Args:
        teacher: The teacher to check.
        injection: How lambda enters the student; defaults to ``AdditiveInjection`` at the teacher's
            ``latent_layer`` (as ``DistillModule`` does). Without either, no student is built.
        batch_size: Examples per probe (at least 2, so that one is not the prior).
        num_samples: ``n`` of the ``num_samples`` steps.
        steps: Steps of the ``sample()`` check.
        seed: Seed of the probe and of every draw.
        check_student: Build and check the student.

    Returns:
        The report (checks passed or skipped, parameter counts, the student's difference at init).
    """
    if batch_size < 2 or num_samples < 1 or steps < 1:
        raise ValueError(
            f"check_teacher: need batch_size >= 2 ({batch_size}), num_samples >= 1 ({num_samples}), "
            f"steps >= 1 ({steps})."
        )
    report = TeacherReport(
        type(teacher).__name__,
        teacher.shape,
        teacher.vocab_size,
        teacher.process.num_states,
        count_parameters(teacher),
    )
    device = model_device(teacher)
    with seeded(seed, device), eval_mode(teacher):
        probe = make_probe(teacher, batch_size)
        report.checks.update(run_checks(teacher, probe, num_samples, steps))
        injection = injection if injection is not None else default_injection(teacher)
        if not check_student or injection is None:
            why = "not asked" if not check_student else "no injection and the teacher names no latent_layer"
            report.checks["student_init"] = f"skipped: {why}"
            return report
        student = MixtureStudent.from_teacher(teacher, injection).to(device).eval()
        report.student_parameters = count_parameters(student)
        report.init_exact = bool(getattr(injection, "exact_at_init", False))
        report.init_max_abs_diff = check_student_init(teacher, student, probe, report.init_exact)
        report.checks["student_init"] = "ok"
        report.checks.update(run_checks(student, probe, num_samples, steps, prefix="student."))
    return report
