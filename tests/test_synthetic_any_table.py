"""One override, any table: `--data.init_args.table my.npy` sizes the teacher, the process, the student
and its MLP from the table's S and D, and impossible tables fail with an error that names them."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mixdistill.cli import run as main
from mixdistill.evaluation.exact import sampler_distribution, total_variation
from mixdistill.tables import PrototypeTable

SYNTHETIC = str(Path(__file__).resolve().parent.parent / "configs" / "synthetic.yaml")


def tiny(root: Path, table: Path, steps: int = 4) -> list[str]:
    return [
        "--config",
        SYNTHETIC,
        f"--data.init_args.table={table}",
        f"--trainer.default_root_dir={root}",
        f"--trainer.max_steps={steps}",
        "--trainer.val_check_interval=2",
        "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--data.init_args.num_samples=300",
        "--model.init_args.evaluation.init_args.teacher_steps=[1, 2]",
        "--model.init_args.evaluation.init_args.student_steps=[1]",
    ]


@pytest.mark.parametrize(("S", "D"), [(5, 3), (2, 6)])
def test_table_of_another_shape_fits_and_tests_through_the_cli(tmp_path, S, D):
    """Invariant: a table of S^D other than the config's (3^4) trains and tests with the shipped config
    and that one override; the student's network is sized (D, S + 1, S), and the teacher's TV in
    quality.json is the exact TV of the oracle product sampler on that table."""
    table = PrototypeTable(vocab_size=S, num_dims=D, num_prototypes=2, temperature=0.5, seed=3)
    path = table.save(str(tmp_path / "my.npy"))
    cli = main(["fit", *tiny(tmp_path, path)])
    model = cli.model
    assert model.teacher.vocab_size == S and model.teacher.shape == (D,)
    net = model.student.base.net
    assert (net.num_dims, net.num_states, net.vocab_size) == (D, S + 1, S)
    assert net.inp.in_features == D * (S + 1) and net.out[-1].out_features == D * S
    main(["test", *tiny(tmp_path, path), f"--ckpt_path={cli.trainer.checkpoint_callback.last_model_path}"])
    rows = json.loads(next(tmp_path.rglob("quality.json")).read_text())["rows"]
    got = {(r["model"], r["steps"]): r["TV"] for r in rows}
    exact = float(total_variation(sampler_distribution(model.teacher, 2), table.make().reshape(-1)))
    assert got[("teacher", 2)] == pytest.approx(exact, abs=1e-6)
    assert 0.0 <= got[("student", 1)] <= 1.0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t * 1.5, r"table='.*bad.npy'.* sums to 1.5"),
        (lambda t: np.where(np.arange(t.size).reshape(t.shape) == 5, -0.25, t), r"negative .*-0.25"),
        (lambda t: np.where(np.arange(t.size).reshape(t.shape) == 7, np.nan, t), r"NaN or infinite"),
    ],
    ids=["not-normalised", "negative", "nan"],
)
def test_impossible_table_is_an_error_naming_it(tmp_path, edit, message):
    """Invariant: a table that is no probability table stops the CLI before any step, naming the
    table file and the offending value."""
    good = PrototypeTable(vocab_size=3, num_dims=3, seed=0).make().numpy()
    np.save(tmp_path / "bad.npy", edit(good))
    with pytest.raises(ValueError, match=message):
        main(["fit", *tiny(tmp_path, tmp_path / "bad.npy")])


def test_too_many_states_is_an_error_naming_the_limit(tmp_path):
    """Invariant: a table with more states than can be enumerated names S^D and max_states."""
    np.save(tmp_path / "big.npy", np.full((2,) * 21, 0.5**21))
    with pytest.raises(ValueError, match=r"S\^D = 2\^21 = 2097152 states, more than max_states"):
        main(["fit", *tiny(tmp_path, tmp_path / "big.npy")])


def test_process_given_with_its_vocabulary_must_match_the_table():
    """Invariant: ExactTeacher still takes a built process; one of the wrong size names vocab_size."""
    from mixdistill.processes import MaskingProcess
    from mixdistill.teachers.exact import ExactTeacher

    table = PrototypeTable(vocab_size=3, num_dims=2).make()
    assert ExactTeacher(MaskingProcess, table).vocab_size == 3
    with pytest.raises(ValueError, match="vocab_size=4"):
        ExactTeacher(MaskingProcess(4), table)
    assert torch.equal(ExactTeacher(MaskingProcess(3), table).table, table)
