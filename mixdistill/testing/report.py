"""What ``check_teacher`` found: one line per check, the student's distance at init, the size."""

from __future__ import annotations

from dataclasses import dataclass, field


class TeacherCheckError(AssertionError):
    """A teacher failed one of ``check_teacher``'s checks; ``check`` names it.

    Args:
        check: Name of the failed check (``logits``, ``carry_over``, ``step``, ``sample``,
            ``student_init``).
        message: What was wrong and, where it helps, how to fix it.
    """

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"check_teacher [{check}]: {message}")
        self.check = check


@dataclass
class TeacherReport:
    """The result of ``check_teacher`` (or of a parameter count on the meta device).

    Attributes:
        teacher: Class name of the teacher.
        shape: Shape of one example.
        vocab_size: Number of data values ``S``.
        num_states: Number of noisy states ``K``.
        parameters: Number of parameters of the teacher.
        student_parameters: Parameters of the student built from it (teacher copy + injection);
            None when no student was built.
        checks: Name -> ``"ok"`` or ``"skipped: <why>"``, in the order they ran.
        init_max_abs_diff: Largest ``|student - teacher|`` logit at initialisation (None: not built).
        init_exact: Whether the injection promises an exact copy at init (then the difference is 0).
        meta: Whether the model was only built on the meta device (no forward was run).
    """

    teacher: str
    shape: tuple[int, ...]
    vocab_size: int
    num_states: int
    parameters: int
    student_parameters: int | None = None
    checks: dict[str, str] = field(default_factory=dict)
    init_max_abs_diff: float | None = None
    init_exact: bool | None = None
    meta: bool = False

    def format(self) -> str:
        """A short human-readable report."""
        student = "" if self.student_parameters is None else f"  (student: {self.student_parameters:,})"
        lines = [
            f"{'teacher':<20} {self.teacher}  shape={self.shape}  S={self.vocab_size}  K={self.num_states}",
            f"{'parameters':<20} {self.parameters:,}{student}",
        ]
        if self.meta:
            lines.append(f"{'meta device':<20} built without weights; no forward pass was run")
        lines += [f"{name:<20} {status}" for name, status in self.checks.items()]
        if self.init_max_abs_diff is not None:
            kind = "exact copy expected" if self.init_exact else "difference reported, not required to be 0"
            lines.append(f"student init max |logit diff| = {self.init_max_abs_diff:.3g} ({kind})")
        return "\n".join(lines)
