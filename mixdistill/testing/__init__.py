"""Checks that a teacher meets the Teacher contract: ``check_teacher`` and
``python -m mixdistill.testing --config cfg.yaml``.
"""

from mixdistill.testing.checks import count_parameters
from mixdistill.testing.report import TeacherCheckError, TeacherReport
from mixdistill.testing.teacher import check_teacher

__all__ = ["TeacherCheckError", "TeacherReport", "check_teacher", "count_parameters"]
