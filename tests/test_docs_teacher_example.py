"""The worked Teacher subclass in docs/teachers.md runs and passes check_teacher, so the doc keeps
working: the block marked ``<!-- example: teacher -->`` is extracted and executed as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from mixdistill.testing import check_teacher
from mixdistill.testing.__main__ import main

DOC = Path(__file__).resolve().parent.parent / "docs" / "teachers.md"


def example_source() -> str:
    """The python block that follows the marker in docs/teachers.md."""
    found = re.search(r"<!-- example: teacher -->\s*```python\n(.*?)```", DOC.read_text(), re.S)
    assert found, "docs/teachers.md lost its '<!-- example: teacher -->' python block"
    return found.group(1)


def load_example() -> dict:
    namespace: dict = {"__name__": "teacher_example"}
    exec(compile(example_source(), str(DOC), "exec"), namespace)
    return namespace


def test_the_example_is_about_30_lines_and_passes_check_teacher():
    """Invariant: the doc's subclass passes every check, with a student that equals it exactly at
    init through its latent_layer."""
    assert len(example_source().strip().splitlines()) <= 45
    teacher = load_example()["PoolingTeacher"]()
    report = check_teacher(teacher)
    assert report.init_exact and report.init_max_abs_diff == 0.0
    assert set(report.checks.values()) == {"ok"}
    assert report.parameters == sum(p.numel() for p in teacher.parameters()) > 0


def test_the_example_loader_reads_its_own_checkpoint_layout(tmp_path):
    """Invariant: weights saved in the example's own layout ({"model": state_dict}) come back."""
    cls = load_example()["PoolingTeacher"]
    torch.manual_seed(1)
    source = cls()
    path = tmp_path / "pooling.pt"
    torch.save({"model": source.net.state_dict(), "step": 10}, path)
    torch.manual_seed(2)
    loaded = cls(checkpoint=str(path))
    for (name, a), (_, b) in zip(
        source.net.state_dict().items(), loaded.net.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_the_example_builds_from_a_config(tmp_path, monkeypatch, capsys):
    """Invariant: saved as a module, the example is a class_path that the check command builds."""
    (tmp_path / "teacher_example_module.py").write_text(example_source())
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "model:\n  init_args:\n    teacher:\n      class_path: teacher_example_module.PoolingTeacher\n"
        "      init_args: {vocab_size: 5, length: 4}\n"
    )
    report = main(["--config", str(cfg)])
    assert report.teacher == "PoolingTeacher" and report.shape == (4,) and report.vocab_size == 5
    assert "student_init" in capsys.readouterr().out
