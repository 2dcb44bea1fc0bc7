"""Command-line overrides shared by the tests that run the CLI on configs/synthetic.yaml."""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
SYNTHETIC = str(CONFIG_DIR / "synthetic.yaml")


def tiny_synthetic(root: Path, steps: int = 2) -> list[str]:
    """configs/synthetic.yaml shrunk to ``steps`` CPU steps under ``root``, without validation."""
    return [
        "--config",
        SYNTHETIC,
        f"--trainer.default_root_dir={root}",
        f"--trainer.max_steps={steps}",
        "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--data.init_args.num_samples=200",
    ]
