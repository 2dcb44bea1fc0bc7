"""Callbacks: student-only EMA, sample logging and training schedules."""

from mixdistill.callbacks.ema import StudentEMA
from mixdistill.callbacks.monitor import QualityMonitor
from mixdistill.callbacks.samples import SampleLogger
from mixdistill.callbacks.schedules import LossWeightSchedule, MultiRoundDistillation, TeacherStepSchedule

__all__ = [
    "LossWeightSchedule",
    "MultiRoundDistillation",
    "QualityMonitor",
    "SampleLogger",
    "StudentEMA",
    "TeacherStepSchedule",
]
