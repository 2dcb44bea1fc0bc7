"""A callback for tests/test_resume.py: the fit process SIGKILLs itself at a given global step."""

import os
import signal

import lightning as L


class KillAtStep(L.Callback):
    """Sends SIGKILL to this process when ``global_step`` reaches ``step`` (before that step's batch),
    like a crash or a pre-empted job: nothing is saved or flushed after the last periodic checkpoint.

    Args:
        step: The optimizer steps completed when the process dies.
    """

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
