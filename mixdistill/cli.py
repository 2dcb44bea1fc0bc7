"""The ``mixdistill`` command: Lightning's CLI with mixdistill's modules and data."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from mixdistill.callbacks.random_state import RandomStateCheckpoint
from mixdistill.checkpoint_io import install_safe_checkpoint_io
from mixdistill.cli_errors import SETTING_ATTRIBUTE, unwrap_instantiation_error
from mixdistill.cli_names import import_configurable_classes
from mixdistill.cli_parser import ShortUsageParser
from mixdistill.run_folder import RunFolderInUseError, check_fresh_run_folder, clear_checkpoints
from mixdistill.safe_load import safe_torch_load


class MixDistillCLI(LightningCLI):
    """``mixdistill fit|validate|test|predict --config cfg.yaml``.

    Any LightningModule (``DistillModule``, ``TeacherModule``) and LightningDataModule may be named
    by ``class_path``; several ``--config`` files merge left to right; ``--print_config`` shows the
    resolved config, which is also saved beside the logs and can be passed back with ``--config``.
    Configs may use ``${path.to.value}`` interpolation (OmegaConf syntax).

    Checkpoints without an explicit ``dirpath`` go to ``<default_root_dir>/checkpoints`` rather than
    into each run's version folder, so ``--ckpt_path last`` finds the previous run's ``last.ckpt``.
    They are written atomically and read with ``weights_only=True`` (``SafeCheckpointIO``); ``fit``
    refuses a folder that already holds another run's checkpoints unless resuming or ``--overwrite``.
    """

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict, subparser_kwargs: dict) -> None:
        import_configurable_classes()  # so that short class names resolve: --model.help DistillModule
        if self.parser_class is LightningArgumentParser:  # a user's own parser_class is kept
            self.parser_class = ShortUsageParser
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except Exception as err:
            short = unwrap_instantiation_error(err)
            if short is None:
                raise
            raise short from None

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except MisconfigurationException as err:  # e.g. "No supported gpu backend found!"
            settings = {**self._get(self.config_init, "trainer", default={}), **kwargs}
            given = ", ".join(f"trainer.{k}={settings.get(k)!r}" for k in ("accelerator", "devices"))
            raise MisconfigurationException(
                f"trainer: {err} ({given}); set trainer.accelerator and trainer.devices to what this "
                "machine has, e.g. --trainer.accelerator cpu --trainer.devices 1."
            ) from None
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.dirpath is None:
                cb.dirpath = str(Path(trainer.default_root_dir) / "checkpoints")
        install_safe_checkpoint_io(trainer)
        if not any(isinstance(cb, RandomStateCheckpoint) for cb in trainer.callbacks):
            trainer.callbacks.insert(0, RandomStateCheckpoint())  # exact resume: the random streams
        return trainer

    def _parse_ckpt_path(self) -> None:
        # Lightning reads --ckpt_path here first (for hyper-parameters): a refused file is one line.
        try:
            super()._parse_ckpt_path()
        except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError):
            try:
                safe_torch_load(self.config[self.config.subcommand].ckpt_path)
            except ValueError as err:  # UnsafeCheckpointError, or a truncated file
                raise type(err)(f"--ckpt_path: {err}") from None
            raise

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument(
            "--allow_untrained",
            type=bool,
            default=False,
            help="test/validate/predict without --ckpt_path, on the untrained student (fit ignores it).",
        )
        parser.add_argument(
            "--overwrite",
            type=bool,
            default=False,
            help="fit (without --ckpt_path) into a default_root_dir whose checkpoints/ holds another run's "
            "checkpoints: delete those *.ckpt files first; without it, fit refuses that folder.",
        )

    def before_fit(self) -> None:
        self._check_weights_only()
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path") is None:  # a new run, not a resumed one: the folder must be its own
            if config.get("overwrite"):
                clear_checkpoints(self.trainer)
            else:
                check_fresh_run_folder(self.trainer)
        self._check_last()

    def _check_weights_only(self) -> None:
        if self.config_init[self.subcommand].get("weights_only") is False:
            raise ValueError(
                "--weights_only false: mixdistill never executes code from checkpoints and always reads "
                "them with weights_only=True; drop the setting."
            )

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
        self._check_weights_only()
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


def run(
    args: list[str] | None = None, *, cli_class: type[MixDistillCLI] | None = None, **cli_kwargs: Any
) -> MixDistillCLI:
    """Run the CLI from Python (as ``mixdistill ARGS`` would) and return it, trainer and model included.

    Args:
        args: Command-line arguments (``sys.argv[1:]`` when None).
        cli_class: A subclass of ``MixDistillCLI`` to run instead (e.g. one that only parses).
        **cli_kwargs: Extra ``LightningCLI`` arguments, e.g. ``trainer_defaults``.
    """
    return (cli_class or MixDistillCLI)(
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


#: Set to 1 to see the Python traceback of an error the console script prints as one line.
TRACEBACK_VARIABLE = "MIXDISTILL_TRACEBACK"

#: Errors of a bad setting or file, whose message says what to fix: one line, no traceback.
CLEAR_ERRORS = (
    ValueError,
    FileNotFoundError,
    RunFolderInUseError,
    KeyError,
    TypeError,
    FloatingPointError,
    MisconfigurationException,
)


def main() -> None:
    """Entry point of the ``mixdistill`` console script (returns nothing, so the exit status is 0).

    A bad setting or file (:data:`CLEAR_ERRORS`, or any error a configured class raised in
    ``__init__``) ends the command with one ``mixdistill: error: <message>`` line and exit status 1;
    parse errors exit with 2, as argparse does. ``MIXDISTILL_TRACEBACK=1`` shows the traceback instead.
    """
    try:
        run()
    except Exception as err:
        if not is_clear_error(err) or os.environ.get(TRACEBACK_VARIABLE) == "1":
            raise
        message = err.args[0] if isinstance(err, KeyError) and len(err.args) == 1 else err
        sys.exit(f"mixdistill: error: {message}")
    finally:
        end_process_group()


def is_clear_error(err: BaseException) -> bool:
    """Whether ``err`` is a bad setting's or file's error, printed as one line by :func:`main`."""
    return isinstance(err, CLEAR_ERRORS) or getattr(err, SETTING_ATTRIBUTE, None) is not None


def end_process_group() -> None:
    """Destroy the DDP process group of a finished command: gloo's threads must be joined before the
    interpreter exits, or a run that succeeded can abort at exit ("terminate called without an
    active exception").
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
