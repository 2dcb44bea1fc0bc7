"""The Di4C objective: losses, the fused loss, time gating presets and alpha(t) weights; the SDTT
baseline objective.
"""

from mixdistill.di4c.base import Objective
from mixdistill.di4c.latent_draws import IndependentDraw, LatentDraw, StratifiedDraw
from mixdistill.di4c.objective import Di4CObjective
from mixdistill.di4c.sdtt import SDTTObjective
from mixdistill.di4c.targets import ConsistencyTarget, StudentAtU, TeacherRollout
from mixdistill.di4c.times import MaskGITTimes, SDTTTimes, TauLDRTimes, TimeDraw, TimeSampler
from mixdistill.di4c.weights import CorrelationWeight, SigmoidWeight

__all__ = [
    "ConsistencyTarget",
    "CorrelationWeight",
    "Di4CObjective",
    "IndependentDraw",
    "LatentDraw",
    "MaskGITTimes",
    "Objective",
    "SDTTObjective",
    "SDTTTimes",
    "SigmoidWeight",
    "StratifiedDraw",
    "StudentAtU",
    "TauLDRTimes",
    "TeacherRollout",
    "TimeDraw",
    "TimeSampler",
]
