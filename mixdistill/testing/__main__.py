"""``python -m mixdistill.testing --config cfg.yaml [--meta]``: check a config's teacher.

Builds only the teacher (and the injection, if the config sets one) and runs ``check_teacher``. With
``--meta``, or when the model has more than ``--max_params`` parameters, it is built on the meta
device with every ``checkpoint`` argument overridden to null, and only the parameter counts are
printed: no weights are read, no forward pass runs, no memory is used for the weights.
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch

from mixdistill.student import MixtureStudent
from mixdistill.testing.checks import count_parameters
from mixdistill.testing.config import TeacherSection, build, drop_checkpoints, load_config, teacher_section
from mixdistill.testing.report import TeacherCheckError, TeacherReport
from mixdistill.testing.teacher import check_teacher, default_injection


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command's arguments."""
    p = argparse.ArgumentParser(prog="python -m mixdistill.testing", description=__doc__.split("\n")[0])
    p.add_argument("--config", action="append", required=True, help="YAML file(s), merged left to right")
    p.add_argument("--meta", action="store_true", help="only count parameters, on the meta device")
    p.add_argument("--max_params", type=float, default=50e6, help="above this, behave as --meta")
    p.add_argument("--device", default="cpu", help="device of the checks (not of --meta)")
    p.add_argument("--batch_size", type=int, default=2)
    p.add_argument("--steps", type=int, default=2)
    return p.parse_args(argv)


def meta_report(section: TeacherSection) -> TeacherReport:
    """Parameter counts of the teacher and its student, built on the meta device without weights."""
    section = copy.deepcopy(section)
    section.overrides = [f"{key}=null" for key in drop_checkpoints(section.teacher, section.path)]
    teacher, injection = build(section, "meta")
    report = TeacherReport(
        type(teacher).__name__,
        teacher.shape,
        teacher.vocab_size,
        teacher.process.num_states,
        count_parameters(teacher),
        meta=True,
    )
    injection = injection if injection is not None else default_injection(teacher)
    if injection is not None and not section.student_base:
        with torch.device("meta"):
            report.student_parameters = count_parameters(MixtureStudent.from_teacher(teacher, injection))
    report.checks["overrides"] = ", ".join(section.overrides) or "none"
    return report


def try_meta(section: TeacherSection, required: bool) -> TeacherReport | None:
    """``meta_report``, or None (with a note) for teachers that compute data at init (e.g. an
    ``ExactTeacher``'s table) unless ``required``.
    """
    try:
        return meta_report(section)
    except Exception as err:
        if required:
            raise RuntimeError(f"{section.path} cannot be built on the meta device: {err}") from err
        print(f"(not buildable on the meta device, {type(err).__name__}: {err}; building it for real)")
        return None


def check_section(
    section: TeacherSection, args: argparse.Namespace, counts: TeacherReport | None
) -> TeacherReport:
    """Build the teacher for real and run ``check_teacher``; a failed build still prints ``counts``."""
    try:
        teacher, injection = build(section, args.device)
    except Exception as err:  # e.g. a checkpoint file that is not there
        if counts is None:
            raise
        print(
            f"{counts.format()}\nFAILED to build {section.path} for the checks: {type(err).__name__}: {err}"
        )
        raise SystemExit(1) from err
    # A separate student_base is not a copy of the teacher: its equality at init means nothing.
    own = not section.student_base
    report = check_teacher(teacher, injection, args.batch_size, steps=args.steps, check_student=own)
    if not own:
        report.checks["student_init"] = "skipped: the config trains a separate student_base"
    return report


def run(args: argparse.Namespace) -> TeacherReport:
    """Build the config's teacher and check it (or only count on the meta device)."""
    section = teacher_section(load_config(args.config))
    counts = try_meta(section, args.meta)
    if counts is not None and (args.meta or counts.parameters > args.max_params):
        return counts
    return check_section(section, args, counts)


def main(argv: list[str] | None = None) -> TeacherReport:
    """Entry point; prints the report, or the failed check and exits with status 1."""
    args = parse_args(argv)
    try:
        report = run(args)
    except TeacherCheckError as err:
        print(f"FAILED {err}")
        raise SystemExit(1) from err
    print(report.format())
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
