"""Sampling: categorical draws, time grids, step rules and the sampling loop."""

from mixdistill.sampling.grids import uniform_grid
from mixdistill.sampling.seeding import seeded

__all__ = ["seeded", "uniform_grid"]
