"""The ``mixdistill`` command: Lightning's CLI with mixdistill's modules and data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI


class MixDistillCLI(LightningCLI):
    """``mixdistill fit|validate|test|predict --config cfg.yaml``.

    Any LightningModule (``DistillModule``, ``TeacherModule``) and LightningDataModule may be named
    by ``class_path``; several ``--config`` files merge left to right; ``--print_config`` shows the
    resolved config, which is also saved beside the logs and can be passed back with ``--config``.
    Configs may use ``${path.to.value}`` interpolation (OmegaConf syntax).

    Checkpoints without an explicit ``dirpath`` go to ``<default_root_dir>/checkpoints`` rather than
    into each run's version folder, so ``--ckpt_path last`` finds the previous run's ``last.ckpt``.
    """

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.dirpath is None:
                cb.dirpath = str(Path(trainer.default_root_dir) / "checkpoints")
        return trainer

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument(
            "--allow_untrained",
            type=bool,
            default=False,
            help="test/validate/predict without --ckpt_path, on the untrained student (fit ignores it).",
        )

    def before_fit(self) -> None:
        self._check_last()

    def before_validate(self) -> None:
        self._check_trained()

    def before_test(self) -> None:
        self._check_trained()

    def before_predict(self) -> None:
        self._check_trained()

    def _check_trained(self) -> None:
        """Refuse to report on an untrained student unless asked to: a table from random or copied
        weights looks exactly like a real one.
        """
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") is None and not config.get("allow_untrained"):
            raise ValueError(
                f"mixdistill {self.subcommand}: no --ckpt_path given, so the student would be the untrained "
                "copy of the teacher; pass --ckpt_path <root>/checkpoints/last.ckpt (or best.ckpt), or "
                "--allow_untrained true to evaluate it on purpose."
            )
        self._check_last()

    def _check_last(self) -> None:
        if self.config_init[self.subcommand].get("ckpt_path") != "last":
            return
        found = [cb for cb in self.trainer.checkpoint_callbacks if cb._find_last_checkpoints(self.trainer)]
        if not found:
            raise FileNotFoundError(
                f"--ckpt_path last: no last.ckpt under {self.trainer.default_root_dir}/checkpoints; "
                f"train first (mixdistill fit), or give a checkpoint file."
            )


def run(args: list[str] | None = None, **cli_kwargs: Any) -> MixDistillCLI:
    """Run the CLI from Python (as ``mixdistill ARGS`` would) and return it, trainer and model included.

    Args:
        args: Command-line arguments (``sys.argv[1:]`` when None).
        **cli_kwargs: Extra ``LightningCLI`` arguments, e.g. ``trainer_defaults``.
    """
    return MixDistillCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        # "omegaconf+" resolves ${...} interpolations after every config file and override is
        # merged, so one value (e.g. a probability table) can feed both the data and the teacher.
        parser_kwargs={"parser_mode": "omegaconf+"},
        args=args,
        **cli_kwargs,
    )


def main() -> None:
    """Entry point of the ``mixdistill`` console script (returns nothing, so the exit status is 0)."""
    run()


if __name__ == "__main__":
    main()
