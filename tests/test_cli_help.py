"""Short class names on the command line: model and data settings are one ``--*.help NAME`` away."""

from pathlib import Path

import pytest

from mixdistill.cli import run as main
from mixdistill.module import DistillModule

SYNTHETIC = str(Path(__file__).resolve().parent.parent / "configs" / "synthetic.yaml")


def help_text(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code in (0, None)
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["fit", "--model.help", "DistillModule"],
            ["--model.objective", "--model.teacher", "mixdistill.module"],
        ),
        (["fit", "--model.help", "TeacherModule"], ["mixdistill.teacher_module.TeacherModule"]),
        (["fit", "--data.help", "SyntheticData"], ["--data.num_samples", "--data.table"]),
        (["fit", "--data.help", "DigitsData"], ["--data.levels"]),
    ],
    ids=["DistillModule", "TeacherModule", "SyntheticData", "DigitsData"],
)
def test_short_class_name_shows_its_settings(args, expected, capsys):
    """Invariant: `--model.help NAME` / `--data.help NAME` with a bare class name print that class's
    settings and exit 0 (no config needed)."""
    out = help_text(args, capsys)
    assert all(e in out for e in expected), out[:500]


def test_short_name_of_a_nested_class_shows_its_settings(capsys):
    """Invariant: short names also work for nested settings, e.g. the teacher of a config's model."""
    out = help_text(
        ["fit", "--config", SYNTHETIC, "--model.init_args.teacher.help", "NetworkTeacher"], capsys
    )
    assert "--teacher.checkpoint" in out and "--teacher.latent_layer" in out


def test_short_name_selects_the_class(capsys):
    """Invariant: `--model DistillModule` is accepted as the model's class, resolved to its full path."""
    out = help_text(["fit", "--config", SYNTHETIC, "--model", "DistillModule", "--print_config"], capsys)
    assert "class_path: mixdistill.module.DistillModule" in out
    assert DistillModule.__module__ == "mixdistill.module"
