"""Log generated samples (image grids or decoded text) to TensorBoard during training."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from mixdistill.image_grid import sample_grid
from mixdistill.sampling import seeded


class SampleLogger(L.Callback):
    """Every ``every_n_steps`` optimizer steps, draw samples from the student (and once from the
    teacher) at each of ``steps`` and log them: an image grid for 2-D data (or for token grids that
    the DataModule decodes to images, ``image_decoder``), decoded text when the DataModule has
    ``decode``, raw ids otherwise.

    Args:
        every_n_steps: Logging period in optimizer steps.
        num_samples: Samples per grid.
        steps: Step counts to show.
        seed: Seed of the samples (the same every time, so grids are comparable across training).
    """

    def __init__(
        self, every_n_steps: int = 500, num_samples: int = 36, steps: list[int] | None = None, seed: int = 0
    ):
        if every_n_steps < 1 or num_samples < 1:
            raise ValueError(
                f"SampleLogger: every_n_steps={every_n_steps}, num_samples={num_samples} must be >= 1."
            )
        self.every, self.num_samples, self.steps, self.seed = every_n_steps, num_samples, steps or [4], seed
        self._teacher_logged = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step % self.every or not trainer.is_global_zero:
            return
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if logger is None:
            return
        models = [("student", pl_module.student)]
        if not self._teacher_logged:
            models.append(("teacher", pl_module.teacher))
            self._teacher_logged = True
        for name, model in models:
            for n in self.steps:
                self.log_samples(logger, trainer, f"samples/{name}_{n}steps", self.draw(model, n), step)

    @torch.no_grad()
    def draw(self, model: torch.nn.Module, steps: int) -> torch.Tensor:
        """Reproducible samples ``(B, *shape)``."""
        was_training = model.training
        model.eval()
        device = next((p.device for p in model.parameters()), None)
        with seeded(self.seed, device):
            out = model.sample(self.num_samples, steps)
        model.train(was_training)
        return out

    def log_samples(
        self, logger: TensorBoardLogger, trainer: L.Trainer, tag: str, x: torch.Tensor, step: int
    ) -> None:
        """Write ``x`` as an image grid, text or ids."""
        dm = trainer.datamodule
        grid = sample_grid(x, dm)  # None unless x are images (or decode to images)
        if grid is not None:
            logger.experiment.add_image(tag, grid, step)
        elif hasattr(dm, "decode"):
            logger.experiment.add_text(tag, "\n\n".join(dm.decode(x.flatten(1).tolist())), step)
        else:
            logger.experiment.add_text(tag, str(x.tolist()), step)
