"""Callbacks: student-only EMA, sample logging and training schedules."""

from mixdistill.callbacks.ema import StudentEMA
from mixdistill.callbacks.samples import SampleLogger
from mixdistill.callbacks.schedules import MultiRoundDistillation, TeacherStepSchedule

__all__ = ["MultiRoundDistillation", "SampleLogger", "StudentEMA", "TeacherStepSchedule"]
