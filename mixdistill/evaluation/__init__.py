"""Evaluation: quality against steps, exact sampler distributions, reference caches, latency."""

from mixdistill.evaluation.quality import QualityEvaluation, format_table, write_quality
from mixdistill.evaluation.reference_cache import ReferenceCache

__all__ = ["QualityEvaluation", "ReferenceCache", "format_table", "write_quality"]
