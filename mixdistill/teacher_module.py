"""TeacherModule: trains a product denoiser from scratch, for users without a pretrained teacher."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from mixdistill.denoising import CrossEntropyDenoising, DenoisingLoss
from mixdistill.module import check_data_matches, optimizers_for
from mixdistill.teachers.base import Teacher


class TeacherModule(L.LightningModule):
    """Fits ``model`` with an x0-prediction loss; its checkpoint feeds ``NetworkTeacher(checkpoint=...)``.

    Args:
        model: The denoiser to train (e.g. ``NetworkTeacher`` around a transformer).
        loss: ``MaskedDiffusionELBO`` for masking processes, ``CrossEntropyDenoising`` otherwise.
        optimizer: Optimizer over the model's parameters (AdamW with its defaults when unset).
        lr_scheduler: Optional learning-rate scheduler.
        lr_interval: Step the scheduler after every optimizer ``step`` or every ``epoch``.
    """

    def __init__(
        self,
        model: Teacher,
        loss: DenoisingLoss | None = None,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_interval: Literal["step", "epoch"] = "step",
    ) -> None:
        super().__init__()
        self.model = model.unfreeze()
        self.loss = loss if loss is not None else CrossEntropyDenoising()
        # No AdamW default in the signature: jsonargparse would carry its weight_decay=0.01 into any
        # other optimizer a config names (torch.optim.Adam then silently decays the weights).
        self.optimizer_factory = optimizer if optimizer is not None else torch.optim.AdamW
        self.scheduler_factory = lr_scheduler
        self.lr_interval = lr_interval

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        check_data_matches(self.model, dm, "model")

    def _step(self, batch: dict, prefix: str) -> torch.Tensor:
        x0 = batch["x0"].flatten(1)
        loss = self.loss(self.model, x0, batch.get("cond")).mean()
        # Bits per dimension make runs of different sizes comparable.
        bpd = loss / (x0.shape[1] * torch.log(torch.tensor(2.0)))
        self.log(f"{prefix}/loss", loss, prog_bar=True, batch_size=x0.shape[0], sync_dist=prefix != "train")
        self.log(f"{prefix}/bpd", bpd, batch_size=x0.shape[0], sync_dist=prefix != "train")
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> Any:
        return optimizers_for(
            self.model.parameters(), self.optimizer_factory, self.scheduler_factory, self.lr_interval
        )
