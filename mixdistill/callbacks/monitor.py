"""Quality of the student during training, logged so that checkpoints can be chosen by it."""

from __future__ import annotations

from typing import Any

import lightning as L

#: Row entries that are timings, not quality.
TIMINGS = ("sec_per_sample", "samples_per_sec")


class QualityMonitor(L.Callback):
    """After each validation, evaluates the student with the module's ``evaluation`` at its
    ``student_steps`` against the validation data and logs ``monitor/<metric>_steps<N>``
    (e.g. ``monitor/FD-pixels_steps4``), which ``ModelCheckpoint(monitor=...)`` can select on.

    The reference statistics are taken from the validation batches of the first validation (from the
    evaluation's ``reference_cache`` when it holds them for that data) and reset before
    ``mixdistill test`` feeds its own data.

    Args:
        seed: Seed of the monitor's samples. ``None`` uses the evaluation's seed + 1, so that a
            checkpoint chosen by these numbers is not tuned to the very samples ``mixdistill test``
            reports (which use the evaluation's seed).
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._reference_ready = False

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._reference_ready:
            self._evaluation(pl_module).reset_reference(split="val")
            self._evaluation(pl_module).use_sampling_context(trainer.precision_plugin.forward_context)

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, *args: Any
    ) -> None:
        if not self._reference_ready:
            self._evaluation(pl_module).update_real(batch["x0"])

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            self._evaluation(pl_module).reset_reference()
            return
        self._reference_ready = True
        evaluation = self._evaluation(pl_module)
        for steps in evaluation.student_steps:
            seed = evaluation.seed + 1 if self.seed is None else self.seed
            row = evaluation.row("student", pl_module.student, steps, pl_module.teacher, seed)
            for key, value in row.items():
                if isinstance(value, float) and key not in TIMINGS:
                    pl_module.log(f"monitor/{key}_steps{steps}", value, sync_dist=True)

    @staticmethod
    def _evaluation(pl_module: L.LightningModule) -> Any:
        if getattr(pl_module, "evaluation", None) is None:
            raise ValueError("QualityMonitor needs model.evaluation (a QualityEvaluation) in the config.")
        return pl_module.evaluation
