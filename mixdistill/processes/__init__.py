"""Forward processes and their noise schedules."""

from mixdistill.processes.base import ForwardProcess
from mixdistill.processes.gaussian import GaussianRateProcess
from mixdistill.processes.masking import MaskingProcess
from mixdistill.processes.schedules import (
    ArccosSchedule,
    CosineSchedule,
    LinearSchedule,
    LogLinearSchedule,
    Schedule,
)
from mixdistill.processes.uniform import UniformProcess

__all__ = [
    "ArccosSchedule",
    "CosineSchedule",
    "ForwardProcess",
    "GaussianRateProcess",
    "LinearSchedule",
    "LogLinearSchedule",
    "MaskingProcess",
    "Schedule",
    "UniformProcess",
]
