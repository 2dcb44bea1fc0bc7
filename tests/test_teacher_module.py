"""TeacherModule and the denoising losses: closed-form weights, the ELBO is tight for the oracle."""

import math
from functools import partial

import lightning as L
import pytest
import torch

from mixdistill.data import SyntheticData
from mixdistill.denoising import CrossEntropyDenoising, MaskedDiffusionELBO
from mixdistill.module import optimizers_for
from mixdistill.nets.mlp import MLPDenoiserNet
from mixdistill.processes import CosineSchedule, LinearSchedule, MaskingProcess, UniformProcess
from mixdistill.tables import PrototypeTable, enumerate_states
from mixdistill.teacher_module import TeacherModule
from mixdistill.teachers.exact import ExactTeacher
from mixdistill.teachers.network import NetworkTeacher


def test_elbo_weight_matches_closed_forms():
    """Invariant: the MDLM weight -alpha'(t) / (1 - alpha(t)) is 1/t for the linear schedule and
    (pi/2) sin(pi t/2) / (1 - cos(pi t/2)) for the cosine one."""
    t = torch.tensor([0.1, 0.4, 0.9])
    lin = NetworkTeacher(MaskingProcess(3, LinearSchedule()), (2,), MLPDenoiserNet(2, 4, 3, 8, 1))
    cos = NetworkTeacher(MaskingProcess(3, CosineSchedule()), (2,), MLPDenoiserNet(2, 4, 3, 8, 1))
    torch.testing.assert_close(MaskedDiffusionELBO().weight(lin, t), 1.0 / t)
    expected = (math.pi / 2) * torch.sin(math.pi * t / 2) / (1 - torch.cos(math.pi * t / 2))
    torch.testing.assert_close(MaskedDiffusionELBO().weight(cos, t), expected)


def test_elbo_of_the_oracle_equals_the_data_entropy():
    """Invariant: masked diffusion's NELBO is an average over unmasking orders of exact
    autoregressive NLLs, so with the Bayes-optimal denoiser its mean over the data is H(p)."""
    torch.manual_seed(0)
    table = PrototypeTable(vocab_size=3, num_dims=3, num_prototypes=2, temperature=0.5, seed=1).make()
    teacher = ExactTeacher(MaskingProcess(3), table)
    x0 = enumerate_states(3, 3)[torch.multinomial(table.flatten(), 40000, replacement=True)]
    values = MaskedDiffusionELBO(t_min=1e-4)(teacher, x0, None)
    p = table.flatten()
    entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
    stderr = float(values.std()) / math.sqrt(len(values))
    assert abs(float(values.mean()) - entropy) < 4 * stderr + 0.01, (float(values.mean()), entropy)


def test_elbo_rejects_non_masking_processes():
    """Invariant: the masked-diffusion bound is refused for other processes, with the fix named."""
    model = NetworkTeacher(UniformProcess(3), (2,), MLPDenoiserNet(2, 3, 3, 8, 1))
    try:
        MaskedDiffusionELBO()(model, torch.zeros(2, 2, dtype=torch.long), None)
    except TypeError as err:
        assert "CrossEntropyDenoising" in str(err)
    else:
        raise AssertionError("expected a TypeError")


def test_teacher_module_lowers_the_loss():
    """Invariant: fitting a small denoiser on synthetic data lowers its held-out loss."""
    torch.manual_seed(0)
    spec = PrototypeTable(vocab_size=3, num_dims=4, num_prototypes=3, temperature=0.3, seed=0)
    model = NetworkTeacher(MaskingProcess(3), (4,), MLPDenoiserNet(4, 4, 3, 64, 2))
    module = TeacherModule(model, CrossEntropyDenoising(), optimizer=lambda p: torch.optim.Adam(p, 3e-3))
    dm = SyntheticData(spec, num_samples=4000, batch_size=128)
    trainer = L.Trainer(
        max_steps=150,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    before = trainer.validate(module, dm, verbose=False)[0]["val/loss"]
    trainer.fit(module, dm)
    after = trainer.validate(module, dm, verbose=False)[0]["val/loss"]
    assert after < 0.9 * before, (before, after)


def test_scheduler_steps_per_optimizer_step_unless_told_per_epoch():
    """Invariant: with lr_interval="step" a cosine schedule of T_max = max_steps ends at lr 0 after
    max_steps steps spread over several epochs; with "epoch" it has stepped once per finished epoch."""
    spec = PrototypeTable(vocab_size=3, num_dims=4, num_prototypes=3, temperature=0.3, seed=0)
    final = {}
    for interval in ("step", "epoch"):
        torch.manual_seed(0)
        model = NetworkTeacher(MaskingProcess(3), (4,), MLPDenoiserNet(4, 4, 3, 16, 1))
        module = TeacherModule(
            model,
            optimizer=lambda p: torch.optim.SGD(p, lr=1.0),
            lr_scheduler=lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=12),
            lr_interval=interval,
        )
        dm = SyntheticData(spec, num_samples=100, batch_size=16, val_fraction=0.2)  # 5 batches/epoch
        quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
        trainer = L.Trainer(max_steps=12, enable_model_summary=False, limit_val_batches=0, **quiet)
        trainer.fit(module, dm)
        final[interval] = trainer.optimizers[0].param_groups[0]["lr"]
    assert final["step"] == pytest.approx(0.0, abs=1e-12)
    # 12 steps of 5 batches: 2 finished epochs -> lr = (1 + cos(2 pi / 12)) / 2.
    assert final["epoch"] == pytest.approx((1 + math.cos(2 * math.pi / 12)) / 2, rel=1e-9)


def test_refused_optimizer_or_scheduler_arguments_name_the_setting():
    """Invariant: torch's constructor errors (checked only in configure_optimizers) name the setting,
    the class and its arguments."""
    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match=r"model.init_args.optimizer: SGD\(lr=-1.0\).*Invalid learning"):
        optimizers_for(params, partial(torch.optim.SGD, lr=-1.0), None)
    scheduler = partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, total_steps=-1)
    with pytest.raises(ValueError, match=r"model.init_args.lr_scheduler: OneCycleLR\(.*total_steps=-1"):
        optimizers_for(params, partial(torch.optim.SGD, lr=0.1), scheduler)
