"""The headline figure (mixdistill/evaluation/headline.py) against closed forms."""

import math

import pytest

from mixdistill.evaluation.headline import equal_quality_steps, headline, headline_lines


def rows_for(teacher_steps, student):
    """Teacher with metric 100 / steps and 1000 / steps samples per second (both exact power laws)."""
    rows = [
        {"model": "teacher", "steps": n, "m": 100.0 / n, "samples_per_sec": 1000.0 / n} for n in teacher_steps
    ]
    rows += [{"model": "student", "steps": k, "m": v, "samples_per_sec": 900.0 / k} for k, v in student]
    return rows


def test_power_law_curve_is_interpolated_exactly():
    """Invariant: for metric = c / N the interpolation in (log2 N, log metric) is exact, so a student
    value c / 6 is worth 6 teacher steps, and the teacher's throughput there is 1000 / 6."""
    (h,) = headline(rows_for([2, 4, 8, 16], [(2, 100.0 / 6)]), "m", higher_is_better=False)
    assert h["relation"] == "="
    assert h["teacher_steps"] == pytest.approx(6.0, rel=1e-12)
    assert h["teacher_samples_per_sec"] == pytest.approx(1000.0 / 6, rel=1e-12)
    assert h["speedup"] == pytest.approx((900.0 / 2) / (1000.0 / 6), rel=1e-12)


def test_outside_the_teacher_range_is_a_bound_not_an_extrapolation():
    """Invariant: better than the teacher's largest step count gives '>' at N_max; worse than its
    smallest gives '<' at N_min; the table prints the bound."""
    out = headline(rows_for([2, 4, 8], [(1, 1.0), (4, 1000.0)]), "m", higher_is_better=False)
    assert [(h["relation"], h["teacher_steps"]) for h in out] == [(">", 8.0), ("<", 2.0)]
    table = "\n".join(headline_lines(rows_for([2, 4, 8], [(1, 1.0)]), "m", False))
    assert "| > 8.0 |" in table and "> 7.20x" in table  # 900 / (1000 / 8)


def test_higher_is_better_and_noisy_curves_use_the_running_best():
    """Invariant: for higher-is-better metrics the direction flips; a non-monotone teacher curve is
    read through its running best, so the crossing is unique."""
    teacher = {1: 0.5, 2: 0.7, 4: 0.65, 8: 0.9}
    n, rel = equal_quality_steps(teacher, 0.8, higher_is_better=True)
    # running best 0.5, 0.7, 0.7, 0.9: the crossing lies between 4 and 8 steps
    expect = 2 ** (2 + (math.log(0.8) - math.log(0.7)) / (math.log(0.9) - math.log(0.7)))
    assert rel == "=" and n == pytest.approx(expect, rel=1e-12)


def test_needs_two_teacher_rows():
    with pytest.raises(ValueError, match="two or more"):
        headline(rows_for([4], [(2, 1.0)]), "m", False)


def test_speedup_from_per_step_latency():
    """Invariant: with per-step latencies (t_teacher, t_student) the speed-up is N* t_teacher /
    (N t_student), whatever the rows' own (noisy) sampling times say."""
    rows = rows_for([2, 4, 8, 16], [(2, 100.0 / 6)])
    rows[-1]["samples_per_sec"] = 1.0  # a disturbed timing that must not matter
    (h,) = headline(rows, "m", False, step_ms=(10.0, 12.0))
    assert h["speedup"] == pytest.approx(6.0 * 10.0 / (2 * 12.0), rel=1e-12)
    assert h["student_samples_per_sec"] == pytest.approx(1000.0 / 24.0)
