"""Quality metrics: Frechet distance on features, exact divergences on enumerable spaces."""

from mixdistill.metrics.exact_tv import ExactDivergence
from mixdistill.metrics.frechet import FrechetDistance, frechet_distance

__all__ = ["ExactDivergence", "FrechetDistance", "frechet_distance"]
