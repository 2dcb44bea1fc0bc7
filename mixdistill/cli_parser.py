"""The argument parser of the ``mixdistill`` command: Lightning's, with a one-line usage on errors."""

from __future__ import annotations

from typing import IO

from lightning.pytorch.cli import LightningArgumentParser


class ShortUsageParser(LightningArgumentParser):
    """``LightningArgumentParser`` whose usage, printed before every parse error, is one line.

    jsonargparse prints the full usage of the (sub)command before ``error: ...``; with every Trainer,
    model and data option that is about 50 lines, and the error itself scrolls off the screen.
    ``--help`` still prints everything.
    """

    def print_usage(self, file: IO[str] | None = None) -> None:
        prog = self.prog.replace(" [options]", "")
        self._print_message(f"usage: {prog} [-h] [-c CONFIG] [--print_config] [options]\n", file)
