"""Quality against steps for teacher and student, side by side, with the same seeds and counts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from torchmetrics import Metric

from mixdistill.latency import mixture_overhead
from mixdistill.metrics.exact_tv import ExactDivergence
from mixdistill.sampling import seeded
from mixdistill.teachers.base import Teacher


class QualityEvaluation(torch.nn.Module):
    """Evaluates ``teacher`` at ``teacher_steps`` and ``student`` at ``student_steps``.

    Sample metrics (torchmetrics ``Metric`` with ``update(x, real: bool)``) see the reference data
    through ``update_real`` and ``num_samples`` generated samples per row; exact metrics compute the
    sampler's output distribution directly.

    Args:
        teacher_steps: Step counts for the teacher.
        student_steps: Step counts for the student.
        num_samples: Generated samples per row.
        batch_size: Generation batch size.
        seed: Seed of every row (the same for all rows, so rows differ only by model and steps).
        sample_metrics: Metrics on samples, e.g. ``FrechetDistance``.
        exact_metrics: Metrics on exact distributions, e.g. ``ExactDivergence``.
        primary_metric: Name of the metric that ranks models.
        latency_batch: Batch size of the per-step latency comparison reported in the meta (0: skip).
    """

    def __init__(
        self,
        teacher_steps: list[int] | None = None,
        student_steps: list[int] | None = None,
        num_samples: int = 1000,
        batch_size: int = 250,
        seed: int = 0,
        sample_metrics: list[Metric] | None = None,
        exact_metrics: list[ExactDivergence] | None = None,
        primary_metric: str | None = None,
        latency_batch: int = 0,
    ) -> None:
        super().__init__()
        self.teacher_steps = teacher_steps or [2, 4, 8, 16]
        self.student_steps = student_steps or [2, 4]
        for name, steps in (("teacher_steps", self.teacher_steps), ("student_steps", self.student_steps)):
            if any(int(s) < 1 for s in steps):
                raise ValueError(f"QualityEvaluation: {name}={steps} must be positive integers.")
        if num_samples < 1 or batch_size < 1:
            raise ValueError(
                f"QualityEvaluation: num_samples={num_samples}, batch_size={batch_size} must be >= 1."
            )
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.latency_batch = latency_batch
        self.latency: dict[str, float] = {}
        self.sample_metrics = torch.nn.ModuleList(sample_metrics or [])
        self.exact_metrics = exact_metrics or []
        if not self.sample_metrics and not self.exact_metrics:
            raise ValueError("QualityEvaluation: give at least one of sample_metrics or exact_metrics.")
        self.primary_metric = primary_metric or (
            metric_name(self.sample_metrics[0]) if self.sample_metrics else "TV"
        )

    def reset_reference(self) -> None:
        """Forget the reference data (and any generated samples) of every sample metric."""
        for m in self.sample_metrics:
            Metric.reset(m)

    def update_real(self, x0: Tensor) -> None:
        """Feed a batch of reference data ``(B, *shape)``."""
        for m in self.sample_metrics:
            m.update(x0, real=True)

    @torch.no_grad()
    def generate(self, model: Teacher, steps: int, cond_classes: int = 0) -> tuple[Tensor, float]:
        """``num_samples`` samples and the seconds spent, reproducibly seeded."""
        gen_device = next((p.device for p in model.parameters()), torch.device("cpu"))
        out, start = [], time.perf_counter()
        with seeded(self.seed, gen_device):
            for i in range(0, self.num_samples, self.batch_size):
                b = min(self.batch_size, self.num_samples - i)
                cond = torch.randint(cond_classes, (b,), device=gen_device) if cond_classes else None
                out.append(model.sample(b, steps, cond))
        return torch.cat(out), time.perf_counter() - start

    def row(self, name: str, model: Teacher, steps: int, teacher: Teacher) -> dict:
        """Evaluate one (model, steps) pair."""
        row: dict = {"model": name, "steps": steps}
        if self.sample_metrics:
            samples, secs = self.generate(model, steps, teacher.num_classes)
            for m in self.sample_metrics:
                m.reset()
                m.to(samples.device).update(samples, real=False)
                value = m.compute()  # a scalar, or a dict of them for multi-number metrics
                named = value if isinstance(value, dict) else {metric_name(m): value}
                row.update({k: float(v) for k, v in named.items()})
            row["sec_per_sample"] = secs / self.num_samples
            row["samples_per_sec"] = self.num_samples / max(secs, 1e-12)
        for em in self.exact_metrics:
            row.update(em(model, steps, teacher))
        return row

    def run(self, teacher: Teacher, student: Teacher) -> list[dict]:
        """All rows: the teacher's first, then the student's."""
        rows = [self.row("teacher", teacher, s, teacher) for s in self.teacher_steps]
        rows += [self.row("student", student, s, teacher) for s in self.student_steps]
        if self.latency_batch:
            self.latency = mixture_overhead(teacher, student, self.latency_batch)
        return rows

    def use_decoder(self, decode: Callable[[list[list[int]]], list[str]] | None) -> None:
        """Hand the data's ``decode`` to metrics that read text (e.g. generative perplexity)."""
        for m in self.sample_metrics:
            if hasattr(m, "decode") and m.decode is None:
                m.decode = decode

    def meta(self) -> dict:
        """Settings that a reader needs to compare tables."""
        primary = next((m for m in self.sample_metrics if metric_name(m) == self.primary_metric), None)
        return {
            "primary_metric": self.primary_metric,
            "higher_is_better": bool(getattr(primary, "higher_is_better", False)),
            "num_samples": self.num_samples,
            "seed": self.seed,
            "metrics": [metric_name(m) for m in self.sample_metrics]
            + [type(m).__name__ for m in self.exact_metrics],
            "evaluators": [m.meta for m in self.sample_metrics if hasattr(m, "meta")],
            "latency": self.latency | {"batch_size": self.latency_batch} if self.latency else {},
            "torch": torch.__version__,
        }


def metric_name(metric: Metric) -> str:
    """The name a metric reports under (its ``name`` attribute, else its class name)."""
    return getattr(metric, "name", None) or type(metric).__name__


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of evaluation rows."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    cells = [
        [f"{r.get(k, ''):.4g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys]
        for r in rows
    ]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    return "\n".join(lines)


def write_quality(rows: list[dict], meta: dict, directory: str | Path) -> Path:
    """Write ``quality.json`` (``{"rows": [...], "meta": {...}}``) into ``directory``."""
    path = Path(directory) / "quality.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rows": rows, "meta": meta}, indent=2))
    return path
