"""Callbacks: activation checkpointing, student-only EMA, sample logging, training schedules and the
saved random state.
"""

from mixdistill.callbacks.activation_checkpointing import ActivationCheckpointing
from mixdistill.callbacks.ema import StudentEMA
from mixdistill.callbacks.monitor import QualityMonitor
from mixdistill.callbacks.random_state import RandomStateCheckpoint
from mixdistill.callbacks.samples import SampleLogger
from mixdistill.callbacks.schedules import LossWeightSchedule, MultiRoundDistillation, TeacherStepSchedule

__all__ = [
    "ActivationCheckpointing",
    "LossWeightSchedule",
    "MultiRoundDistillation",
    "QualityMonitor",
    "RandomStateCheckpoint",
    "SampleLogger",
    "StudentEMA",
    "TeacherStepSchedule",
]
