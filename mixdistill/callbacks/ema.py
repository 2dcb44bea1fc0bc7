"""An exponential moving average of the student's weights only."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch


class StudentEMA(L.Callback):
    """Keeps ``ema = decay * ema + (1 - decay) * param`` for the student's parameters and swaps the
    average in for validation, testing and prediction (Lightning's weight averaging would also copy
    the frozen teacher).

    Args:
        decay: EMA decay per optimizer step (the paper: 0.9999).
        attribute: Name of the module attribute holding the trained network.
    """

    def __init__(self, decay: float = 0.9999, attribute: str = "student") -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"StudentEMA: decay={decay} must lie in [0, 1).")
        self.decay, self.attribute = decay, attribute
        self.shadow: list[torch.Tensor] | None = None
        self._backup: list[torch.Tensor] | None = None

    def _params(self, pl_module: L.LightningModule) -> list[torch.Tensor]:
        return [p for p in getattr(pl_module, self.attribute).parameters() if p.requires_grad]

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        params = self._params(pl_module)
        if self.shadow is None:
            self.shadow = [p.detach().clone() for p in params]
        else:  # restored from a checkpoint
            self.shadow = [s.to(p.device) for s, p in zip(self.shadow, params, strict=True)]

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        torch._foreach_lerp_(self.shadow, self._params(pl_module), 1.0 - self.decay)

    def _swap_in(self, pl_module: L.LightningModule) -> None:
        if self.shadow is None:
            return
        params = self._params(pl_module)
        self._backup = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, s in zip(params, self.shadow, strict=True):
                p.copy_(s)

    def _swap_out(self, pl_module: L.LightningModule) -> None:
        if self._backup is None:
            return
        with torch.no_grad():
            for p, b in zip(self._params(pl_module), self._backup, strict=True):
                p.copy_(b)
        self._backup = None

    def on_validation_start(self, trainer, pl_module) -> None:
        self._swap_in(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._swap_out(pl_module)

    def on_test_start(self, trainer, pl_module) -> None:
        self._swap_in(pl_module)

    def on_test_end(self, trainer, pl_module) -> None:
        self._swap_out(pl_module)

    def on_predict_start(self, trainer, pl_module) -> None:
        self._swap_in(pl_module)

    def on_predict_end(self, trainer, pl_module) -> None:
        self._swap_out(pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.shadow = state_dict["shadow"]
