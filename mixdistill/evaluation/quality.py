"""Quality against steps for teacher and student, side by side, with the same seeds and counts."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import torch
from torch import Tensor
from torchmetrics import Metric

from mixdistill.evaluation.latency import mixture_overhead
from mixdistill.evaluation.reference_cache import ReferenceCache, ReferenceStatistics, ReferenceStream
from mixdistill.metrics.exact_tv import ExactDivergence
from mixdistill.sampling import seeded
from mixdistill.sampling.hybrid import HybridSampler
from mixdistill.teachers.base import Teacher


class QualityEvaluation(torch.nn.Module):
    """Evaluates ``teacher`` at ``teacher_steps`` and ``student`` at ``student_steps``.

    Sample metrics (torchmetrics ``Metric`` with ``update(x, real: bool)``) see the reference data
    through ``update_real`` and ``num_samples`` generated samples per row; a metric whose class sets
    ``takes_labels = True`` (e.g. ``ClassAccuracy``) also gets the samples' class labels as
    ``update(x, real=False, cond=labels)``. Exact metrics compute the sampler's output distribution
    directly.

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
        reference_cache: Where to cache the real-side statistics of the metrics that support it
            (``FrechetDistance``, ``FidelityMetrics``), keyed by a hash of the reference data and the
            feature network; ``None`` computes them on every run.
        hybrid_steps: ``[steps, k]`` pairs of hybrid rows (model ``"hybrid_k<k>"``): a ``steps``-step
            chain whose first ``k`` steps are the student's and the rest the teacher's (a baseline).
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
        reference_cache: ReferenceCache | None = None,
        hybrid_steps: list[tuple[int, int]] | None = None,
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
        self.hybrid_steps = [(int(n), int(k)) for n, k in hybrid_steps or []]
        if any(not 0 <= k <= n or n < 1 for n, k in self.hybrid_steps):
            raise ValueError(
                f"QualityEvaluation: hybrid_steps={hybrid_steps} needs [steps, k], 0 <= k <= steps."
            )
        self.latency_batch = latency_batch
        self.latency: dict[str, float] = {}
        self.sample_metrics = torch.nn.ModuleList(sample_metrics or [])
        for m in self.sample_metrics:
            # Under DDP every rank reads the whole reference split and draws the same seeded samples,
            # so each rank already holds what one process would: torchmetrics' merge of the ranks'
            # states at compute() would count every sample and reference example once per rank.
            m.sync_on_compute = m._to_sync = False
        self.exact_metrics = exact_metrics or []
        if not self.sample_metrics and not self.exact_metrics:
            raise ValueError("QualityEvaluation: give at least one of sample_metrics or exact_metrics.")
        self.primary_metric = primary_metric or (
            metric_name(self.sample_metrics[0]) if self.sample_metrics else "TV"
        )
        self.reference_cache = reference_cache
        self.sampling_context: Callable[[], AbstractContextManager] = contextlib.nullcontext
        self.reference = ReferenceStream()
        self.reference_files: dict[str, dict[str, str]] = {}

    def reset_reference(self, split: str = "reference") -> None:
        """Forget the reference data (and any generated samples) of every sample metric; the next
        reference batches come from ``split`` (a name, part of the cache key).
        """
        for m in self.sample_metrics:
            Metric.reset(m)
        self.reference, self.reference_files = ReferenceStream(split), {}

    def cached(self, metric: Metric) -> bool:
        """Whether ``metric``'s real side goes through the reference cache (else it is fed directly)."""
        return self.reference_cache is not None and isinstance(metric, ReferenceStatistics)

    def update_real(self, x0: Tensor) -> None:
        """Feed a batch of reference data ``(B, *shape)``.

        Metrics served by the cache only see the data in ``finish_reference`` (and only on a miss): the
        batch is hashed and kept until then. The others are fed at once.
        """
        deferred = [self.cached(m) for m in self.sample_metrics]
        if any(deferred) and self.reference.settled:
            raise RuntimeError(
                "QualityEvaluation: update_real after the reference was finished (rows were computed); "
                "call reset_reference() before feeding a new reference."
            )
        self.reference.add(x0, keep=any(deferred))
        for m, later in zip(self.sample_metrics, deferred, strict=True):
            if not later:
                m.update(x0, real=True)

    def finish_reference(self) -> None:
        """Complete the reference side once all reference batches were fed: load each cached metric's
        statistics (hit) or compute and write them (miss). Called by ``row``; idempotent.
        """
        if self.reference.settled:
            return
        if self.reference_cache is not None and self.reference.examples > 0:
            for m in self.sample_metrics:
                if self.cached(m):
                    self.reference_files[metric_name(m)] = self.reference_cache.provide(
                        metric_name(m), m, self.reference
                    )
        self.reference.settle()

    @torch.no_grad()
    def generate(
        self, model: Teacher | HybridSampler, steps: int, cond_classes: int = 0, seed: int | None = None
    ) -> tuple[Tensor, Tensor | None, float]:
        """``num_samples`` samples ``(N, *shape)``, the class labels ``(N,)`` drawn for them (``None``
        when ``cond_classes`` is 0) and the seconds spent, seeded by ``seed`` (default: ``self.seed``).
        """
        gen_device = next((p.device for p in model.parameters()), torch.device("cpu"))
        out, labels, start = [], [], time.perf_counter()
        with seeded(self.seed if seed is None else seed, gen_device), self.sampling_context():
            for i in range(0, self.num_samples, self.batch_size):
                b = min(self.batch_size, self.num_samples - i)
                cond = torch.randint(cond_classes, (b,), device=gen_device) if cond_classes else None
                out.append(model.sample(b, steps, cond))
                labels += [cond] if cond is not None else []
        cond = torch.cat(labels) if labels else None
        return torch.cat(out), cond, time.perf_counter() - start

    def row(
        self, name: str, model: Teacher | HybridSampler, steps: int, teacher: Teacher, seed: int | None = None
    ) -> dict:
        """Evaluate one (model, steps) pair; ``seed`` overrides ``self.seed`` for its samples."""
        row: dict = {"model": name, "steps": steps}
        self.finish_reference()
        if self.sample_metrics:
            samples, cond, secs = self.generate(model, steps, teacher.num_classes, seed)
            row.update(self.score(samples, cond))
            row["sec_per_sample"] = secs / self.num_samples
            row["samples_per_sec"] = self.num_samples / max(secs, 1e-12)
        for em in self.exact_metrics:
            row.update(em(model, steps, teacher))
        return row

    def score(self, samples: Tensor, cond: Tensor | None = None) -> dict[str, float]:
        """Every sample metric on ``samples`` ``(N, *shape)`` against the reference, by name; those that
        take labels also get ``cond`` ``(N,)``, the classes the samples were generated for.
        """
        scores: dict[str, float] = {}
        for m in self.sample_metrics:
            m.reset()
            if getattr(m, "takes_labels", False):
                m.to(samples.device).update(samples, real=False, cond=cond)
            else:
                m.to(samples.device).update(samples, real=False)
            value = m.compute()  # a scalar, or a dict of them for multi-number metrics
            named = value if isinstance(value, dict) else {metric_name(m): value}
            scores.update({k: float(v) for k, v in named.items()})
        return scores

    def run(self, teacher: Teacher, student: Teacher) -> list[dict]:
        """All rows: the teacher's first, then the student's, then the hybrid ones."""
        rows = [self.row("teacher", teacher, s, teacher) for s in self.teacher_steps]
        rows += [self.row("student", student, s, teacher) for s in self.student_steps]
        for steps, k in self.hybrid_steps:  # one model name per k: one curve, distinct logged keys
            name = f"hybrid_k{k}"
            row = self.row(name, HybridSampler(student, teacher, k), steps, teacher)
            rows.append({"model": name, "steps": steps, "student_steps": k} | row)
        if self.latency_batch:
            with self.sampling_context():
                self.latency = mixture_overhead(teacher, student, self.latency_batch)
        return rows

    def use_sampling_context(self, factory: Callable[[], AbstractContextManager]) -> None:
        """Run sampling and the latency measurement inside ``factory()``: the trainer's precision
        context (``precision_plugin.forward_context``, autocast under ``bf16-mixed``), which Lightning
        itself applies only around the ``*_step`` hooks, not the epoch-end hook the rows come from.
        The metrics and their feature networks stay outside it, in their own precision.
        """
        self.sampling_context = factory

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
            "reference": self.reference_meta(),
            "torch": torch.__version__,
        }

    def reference_meta(self) -> dict:
        """The reference data (split, count, digest) and whether its statistics came from the cache:
        ``"off"``, ``"hit"``, ``"written"``, ``"partial"`` (some of each) or ``"pending"``.
        """
        statuses = {f["cache"] for f in self.reference_files.values()}
        if not any(self.cached(m) for m in self.sample_metrics) or (self.reference.settled and not statuses):
            cache = "off"
        elif not self.reference.settled:
            cache = "pending"
        else:
            cache = statuses.pop() if len(statuses) == 1 else "partial"
        return {
            "split": self.reference.split,
            "examples": self.reference.examples,
            "sha256": self.reference.sha256(),
            "cache": cache,
            "files": self.reference_files,
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
