"""Per-step latency of teacher and student at equal batch: warm-up, then the median of repeats."""

from __future__ import annotations

import statistics
import time

import torch

from mixdistill.teachers.base import Teacher


@torch.no_grad()
def step_seconds(model: Teacher, batch_size: int, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of one sampling step (one network call and the posterior draw) from the prior.

    Args:
        model: A teacher or a mixture student (whose step also draws lambda).
        batch_size: Samples per step.
        repeats: Timed steps; the median is returned.
        warmup: Untimed steps first (allocator, lazy initialisation, kernel selection).
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = model.process.prior((batch_size, model.num_dims), device=device)
    t = torch.ones(batch_size, device=device)
    s = torch.full((batch_size,), 0.5, device=device)
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        model.step(x, t, s)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def mixture_overhead(
    teacher: Teacher, student: Teacher, batch_size: int, repeats: int = 20
) -> dict[str, float]:
    """``{"teacher_step_ms", "student_step_ms", "student_overhead"}``; the overhead is the ratio minus 1.

    The two models are timed alternately, so drifts of the machine's speed hit both alike.
    """
    teacher_t, student_t = [], []
    for _ in range(3):
        teacher_t.append(step_seconds(teacher, batch_size, repeats))
        student_t.append(step_seconds(student, batch_size, repeats))
    t_ms, s_ms = 1e3 * statistics.median(teacher_t), 1e3 * statistics.median(student_t)
    return {"teacher_step_ms": t_ms, "student_step_ms": s_ms, "student_overhead": s_ms / t_ms - 1.0}
