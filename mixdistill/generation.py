"""What ``mixdistill predict`` generates, and the callback that writes it to disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader
from torchvision.utils import save_image

from mixdistill.image_grid import sample_grid
from mixdistill.sampling import seeded


class Generation:
    """Samples to draw in ``mixdistill predict``.

    Args:
        model: Which network samples: ``"student"`` or ``"teacher"``.
        steps: Number of sampling steps.
        num_samples: Total number of samples.
        batch_size: Samples per network batch.
        seed: Seed of batch ``i`` is ``seed + i`` (reproducible, independent of the device count).
        output_dir: Where files go; defaults to ``<log_dir>/samples``.
    """

    def __init__(
        self,
        model: Literal["student", "teacher"] = "student",
        steps: int = 4,
        num_samples: int = 64,
        batch_size: int = 64,
        seed: int = 0,
        output_dir: str | None = None,
    ) -> None:
        for name, value in (("steps", steps), ("num_samples", num_samples), ("batch_size", batch_size)):
            if value < 1:
                raise ValueError(f"Generation: {name}={value} must be >= 1.")
        self.model, self.steps, self.num_samples = model, steps, num_samples
        self.batch_size, self.seed, self.output_dir = batch_size, seed, output_dir

    def dataloader(self) -> DataLoader:
        """One item per generation batch: ``(index, size)``."""
        sizes = [
            min(self.batch_size, self.num_samples - i) for i in range(0, self.num_samples, self.batch_size)
        ]
        return DataLoader(list(enumerate(sizes)), batch_size=None)

    @torch.no_grad()
    def draw(self, pl_module: L.LightningModule, item: tuple[int, int]) -> torch.Tensor:
        """Samples ``(size, *shape)`` of batch ``index``."""
        index, size = (int(v) for v in item)
        with seeded(self.seed + index, pl_module.device):
            return getattr(pl_module, self.model).sample(size, self.steps)


class SampleWriter(BasePredictionWriter):
    """Writes all predicted samples as ``samples.pt`` and ``samples.npy`` (token ids), plus
    ``samples.txt`` (one decoded sample a line) when the DataModule can ``decode`` and
    ``samples.png`` (a grid) for 2-D data, or for token grids that the DataModule decodes to
    images (``image_decoder``).

    Args:
        generation: The generation settings (for the file names and folder).
    """

    def __init__(self, generation: Generation) -> None:
        super().__init__(write_interval="epoch")
        self.generation = generation

    def directory(self, trainer: L.Trainer) -> Path:
        """The output folder."""
        g = self.generation
        base = (
            Path(g.output_dir)
            if g.output_dir
            else Path(trainer.log_dir or trainer.default_root_dir) / "samples"
        )
        return base / f"{g.model}_{g.steps}steps"

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Any, *args
    ) -> None:
        x = torch.cat([p.cpu() for p in predictions])
        if trainer.world_size > 1:  # each rank writes its own shard
            name = f"samples_rank{trainer.global_rank}"
        else:
            name = "samples"
        out = self.directory(trainer)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(x, out / f"{name}.pt")
        np.save(out / f"{name}.npy", x.numpy())
        dm = trainer.datamodule
        if dm is not None and hasattr(dm, "decode"):
            (out / f"{name}.txt").write_text(
                "\n".join(t.replace("\n", " ") for t in dm.decode(x.flatten(1).tolist()))
            )
        grid = sample_grid(x, dm)
        if grid is not None:
            save_image(grid, out / f"{name}.png")
