"""Numerical guard of DistillModule: a non-finite loss stops the run before the optimizer sees it."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from mixdistill.di4c.base import Objective
from mixdistill.injection import AdditiveInjection
from mixdistill.module import DistillModule, check_finite
from mixdistill.nets.mlp import MLPDenoiserNet
from mixdistill.processes.masking import MaskingProcess
from mixdistill.teachers.network import NetworkTeacher


class NaNAfter(Objective):
    """A finite loss for ``good`` calls, then a NaN in the consistency term."""

    def __init__(self, good: int) -> None:
        super().__init__()
        self.good, self.calls = good, 0

    def forward(self, teacher, student, x0, cond=None):
        self.calls += 1
        loss = student.denoise(x0, torch.full((x0.shape[0],), 0.5)).logsumexp(-1).mean()
        consis = loss * (float("nan") if self.calls > self.good else 0.0)
        return {"loss": loss + consis, "distil": loss, "consis": consis, "data": 0 * loss}


def test_check_finite_names_the_step_and_the_terms():
    """Invariant: a finite loss passes; a NaN/inf names the global step and exactly the bad terms."""
    ok = {"loss": torch.tensor(1.0), "distil": torch.tensor(1.0)}
    check_finite(ok, "train", 3)
    bad = {
        "loss": torch.tensor(float("inf")),
        "distil": torch.tensor(1.0),
        "consis": torch.tensor(float("inf")),
    }
    with pytest.raises(FloatingPointError, match=r"global step 7: term\(s\) \['consis'\]"):
        check_finite(bad, "train", 7)


def test_nan_stops_the_fit_and_leaves_the_weights_of_the_last_good_step(tmp_path):
    """Invariant: the run stops at the first non-finite loss with the step named, and the student's
    weights are those after the last finite step (the optimizer never applied a NaN gradient)."""
    torch.manual_seed(0)
    net = MLPDenoiserNet(3, 4, 3, hidden=16, depth=1, time_features=8)
    teacher = NetworkTeacher(MaskingProcess(3), (3,), net)
    module = DistillModule(
        teacher, NaNAfter(good=2), AdditiveInjection("net.time_embed", freq_dim=8), optimizer=torch.optim.SGD
    )
    snapshots = []

    class Snapshot(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            snapshots.append({k: v.clone() for k, v in pl_module.student.state_dict().items()})

    data = DataLoader([{"x0": torch.randint(3, (3,))} for _ in range(16)], batch_size=4)
    trainer = L.Trainer(
        max_steps=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Snapshot()],
        default_root_dir=tmp_path,
    )
    with pytest.raises(FloatingPointError, match=r"global step 2: term\(s\) \['consis'\]"):
        trainer.fit(module, data)
    assert len(snapshots) == 2
    final = module.student.state_dict()
    assert all(torch.equal(final[k], v) for k, v in snapshots[-1].items())
    assert all(torch.isfinite(v).all() for v in final.values())
