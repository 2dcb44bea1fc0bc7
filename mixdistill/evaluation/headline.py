"""The headline figure: how many teacher steps a student's quality is worth, and the speed-up.

For a student row at ``k`` steps, the teacher's quality curve (metric against steps) is interpolated
linearly in ``(log2 steps, log metric)`` to find the steps ``N*`` at which the teacher reaches the
student's quality; the teacher's throughput is interpolated the same way, so the speed-up is the
student's samples per second over the teacher's at ``N*``. Outside the measured teacher range the
figure is a bound (``N* > N_max`` or ``N* < N_min``), never an extrapolation.
"""

from __future__ import annotations

import math


def _interp(x: float, xs: list[float], ys: list[float]) -> float:
    """Piecewise-linear ``y(x)`` through ``(xs, ys)``, ``xs`` increasing, ``x`` inside their range."""
    for (x0, y0), (x1, y1) in zip(zip(xs, ys, strict=True), zip(xs[1:], ys[1:], strict=True), strict=False):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    raise ValueError(f"{x} lies outside [{xs[0]}, {xs[-1]}].")


def equal_quality_steps(teacher: dict[int, float], value: float, higher_is_better: bool) -> tuple[float, str]:
    """Teacher steps ``N*`` at which the teacher's metric equals ``value``, and how exact that is.

    Args:
        teacher: The teacher's metric by number of steps (at least two step counts).
        value: The student's metric.
        higher_is_better: Direction of the metric.

    Returns:
        ``(N*, relation)`` with relation ``"="`` (interpolated), ``">"`` (the student beats the
        teacher's largest step count ``N*``) or ``"<"`` (it is worse than the smallest).
    """
    steps = sorted(teacher)
    sign = 1.0 if higher_is_better else -1.0
    # Work on the running best so that a noisy, non-monotone curve still gives one crossing.
    best, score = [], -math.inf
    for n in steps:
        score = max(score, sign * math.log(teacher[n]))
        best.append(score)
    target = sign * math.log(value)
    if target > best[-1]:
        return float(steps[-1]), ">"
    if target < best[0]:
        return float(steps[0]), "<"
    i = next(j for j, b in enumerate(best) if b >= target)
    if i == 0 or best[i] == best[i - 1]:
        return float(steps[i]), "="
    logs = [math.log2(steps[i - 1]), math.log2(steps[i])]
    return 2.0 ** _interp(target, best[i - 1 : i + 1], logs), "="


def can_headline(rows: list[dict]) -> bool:
    """Whether ``rows`` have what ``headline`` needs: two teacher step counts and throughputs."""
    teacher = {r["steps"] for r in rows if r["model"] == "teacher"}
    return len(teacher) >= 2 and all("samples_per_sec" in r for r in rows)


def headline(
    rows: list[dict], metric: str, higher_is_better: bool, step_ms: tuple[float, float] | None = None
) -> list[dict]:
    """For every student row of ``quality.json``: the equal-quality teacher steps and the speed-up.

    Args:
        rows: ``quality.json`` rows.
        metric: The metric that ranks them.
        higher_is_better: Its direction.
        step_ms: Per-step latency per sample ``(teacher, student)`` in ms (medians of alternated
            batched runs, as in ``quality.json``'s meta, divided by their batch size): when given,
            the speed-up is ``N* t_teacher / (N t_student)``, which a shared machine disturbs less
            than the rows' own sampling times.

    Returns dicts with ``steps``, ``metric`` (the student's), ``teacher_steps`` (``N*``),
    ``relation``, ``student_samples_per_sec``, ``teacher_samples_per_sec`` (at ``N*``) and
    ``speedup``.
    """
    t_rows = sorted((r for r in rows if r["model"] == "teacher"), key=lambda r: r["steps"])
    if len(t_rows) < 2:
        raise ValueError("headline: needs teacher rows at two or more step counts.")
    quality = {r["steps"]: r[metric] for r in t_rows}
    log_steps = [math.log2(r["steps"]) for r in t_rows]
    log_speed = [math.log(r["samples_per_sec"]) for r in t_rows]
    out = []
    for r in (r for r in rows if r["model"] == "student"):
        n_star, rel = equal_quality_steps(quality, r[metric], higher_is_better)
        student_speed = r["samples_per_sec"]
        teacher_speed = math.exp(_interp(math.log2(n_star), log_steps, log_speed))
        if step_ms is not None:  # throughput from per-step latency: 1000 / (steps * ms)
            student_speed = 1000.0 / (r["steps"] * step_ms[1])
            teacher_speed = 1000.0 / (n_star * step_ms[0])
        out.append(
            {
                "steps": r["steps"],
                "metric": r[metric],
                "teacher_steps": n_star,
                "relation": rel,
                "student_samples_per_sec": student_speed,
                "teacher_samples_per_sec": teacher_speed,
                "speedup": student_speed / teacher_speed,
            }
        )
    return out


def headline_lines(
    rows: list[dict], metric: str, higher_is_better: bool, step_ms: tuple[float, float] | None = None
) -> list[str]:
    """A markdown table of ``headline``: the student at N steps against the teacher at equal quality
    (per-batch-element throughput from ``step_ms`` when given, see ``headline``).
    """
    lines = [
        f"| student steps | student {metric} | teacher steps of equal {metric} | student samples/s "
        "| teacher samples/s there | speed-up |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for h in headline(rows, metric, higher_is_better, step_ms):
        bound = {"=": "", ">": "> ", "<": "< "}[h["relation"]]
        speed = f"{bound}{h['speedup']:.2f}x"  # a bound on N* bounds the speed-up the same way
        lines.append(
            f"| {h['steps']} | {h['metric']:.4g} | {bound}{h['teacher_steps']:.1f} | "
            f"{h['student_samples_per_sec']:.1f} | {h['teacher_samples_per_sec']:.1f} | {speed} |"
        )
    return lines
