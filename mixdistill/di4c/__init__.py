"""The Di4C objective: losses, the fused loss, time gating presets and alpha(t) weights."""

from mixdistill.di4c.objective import Di4CObjective
from mixdistill.di4c.times import MaskGITTimes, SDTTTimes, TauLDRTimes, TimeDraw, TimeSampler
from mixdistill.di4c.weights import CorrelationWeight, SigmoidWeight

__all__ = [
    "CorrelationWeight",
    "Di4CObjective",
    "MaskGITTimes",
    "SDTTTimes",
    "SigmoidWeight",
    "TauLDRTimes",
    "TimeDraw",
    "TimeSampler",
]
