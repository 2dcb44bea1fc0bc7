"""``mixdistill.export``: a student as safetensors plus its resolved config, loaded back exactly."""

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from mixdistill.cli import run as cli
from mixdistill.export import load_student, main, student_state
from mixdistill.student import MixtureStudent

SYNTHETIC = str(Path(__file__).resolve().parent.parent / "configs" / "synthetic.yaml")


def fit_tiny(root: Path, steps: int = 3):
    config = ["--config", SYNTHETIC, "--data.init_args.num_samples=200"]
    run = [
        f"--trainer.default_root_dir={root}",
        f"--trainer.max_steps={steps}",
        "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]
    return cli(["fit", *config, *run]), config


def probe(student: MixtureStudent) -> torch.Tensor:
    """The student's logits on fixed noisy inputs, times and lambdas."""
    gen = torch.Generator().manual_seed(0)
    S, (D,) = student.vocab_size, student.shape
    x_t = torch.randint(0, S + 1, (16, D), generator=gen)  # S is the mask token
    t = torch.rand(16, generator=gen)
    lam = torch.rand(16, student.latent_dim, generator=gen)
    with torch.no_grad():
        return student.network_logits(x_t, t, None, lam)


def test_exported_student_computes_exactly_the_checkpoints_student(tmp_path):
    """Invariant: export writes student.safetensors + config.yaml (model section, resolved), and
    load_student gives a student whose weights and logits equal the checkpoint's student bit for bit."""
    fit, config = fit_tiny(tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = main([*config, f"--ckpt_path={ckpt}", f"--out={tmp_path / 'export'}"])
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "student.safetensors"]
    exported = yaml.safe_load((out / "config.yaml").read_text())
    assert list(exported) == ["model"] and "${" not in (out / "config.yaml").read_text()
    saved = student_state(ckpt)
    assert load_file(str(out / "student.safetensors")).keys() == saved.keys()

    student = load_student(out)
    assert isinstance(student, MixtureStudent) and not student.training
    loaded = student.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())
    reference = fit.model.student.eval()  # the run's final student, which last.ckpt holds
    assert torch.equal(probe(student), probe(reference))
    assert not torch.equal(probe(student), probe(cli_untrained(config, tmp_path)))


def cli_untrained(config: list[str], root: Path) -> MixtureStudent:
    """The config's student before training (to show that the probe tells weights apart)."""
    return cli([*config, f"--trainer.default_root_dir={root / 'u'}"], run=False).model.student.eval()


def test_export_from_the_runs_saved_config(tmp_path):
    """Invariant: the config.yaml a run saves beside its logs is enough to export its checkpoint."""
    fit, _ = fit_tiny(tmp_path / "run", steps=2)
    saved_config = Path(fit.trainer.log_dir) / "config.yaml"
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = main(["--config", str(saved_config), f"--ckpt_path={ckpt}", f"--out={tmp_path / 'e'}"])
    assert torch.equal(probe(load_student(out)), probe(fit.model.student.eval()))


def test_loading_a_folder_that_is_no_export_names_the_missing_file(tmp_path):
    """Invariant: load_student of a folder without the exported files names the missing file."""
    with pytest.raises(FileNotFoundError, match=r"student.safetensors does not exist"):
        load_student(tmp_path)
