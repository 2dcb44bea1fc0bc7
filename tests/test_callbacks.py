"""Callbacks: student-only EMA, schedules, multi-round promotion, TensorBoard samples."""

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from mixdistill.callbacks import (
    LossWeightSchedule,
    MultiRoundDistillation,
    SampleLogger,
    StudentEMA,
    TeacherStepSchedule,
)
from mixdistill.data import SyntheticData
from mixdistill.di4c.objective import Di4CObjective
from mixdistill.di4c.times import MaskGITTimes, TauLDRTimes
from mixdistill.module import DistillModule
from mixdistill.nets.mlp import MLPDenoiserNet
from mixdistill.processes import MaskingProcess
from mixdistill.student import MixtureStudent
from mixdistill.tables import PrototypeTable
from mixdistill.teachers.network import NetworkTeacher

SPEC = PrototypeTable(vocab_size=3, num_dims=4, num_prototypes=2, temperature=0.3, seed=0)


def module(times=None) -> DistillModule:
    torch.manual_seed(0)
    teacher = NetworkTeacher(MaskingProcess(3), (4,), MLPDenoiserNet(4, 4, 3, 32, 1))
    objective = Di4CObjective(times or MaskGITTimes(step=0.1), latents=4)
    return DistillModule(teacher, objective, optimizer=lambda p: torch.optim.SGD(p, lr=0.1))


def fit(m: DistillModule, steps: int, callbacks: list, logger=False) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=steps,
        callbacks=callbacks,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(m, SyntheticData(SPEC, num_samples=256, batch_size=16))
    return trainer


class ParamRecorder(L.Callback):
    """Student parameters after every optimizer step."""

    def __init__(self):
        self.history = []

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.history.append([p.detach().clone() for p in pl_module.student.parameters()])


def test_student_ema_follows_the_recurrence_and_swaps_back():
    """Invariant: shadow_k = d shadow_{k-1} + (1 - d) theta_k over the student's parameters only, and
    swapping the average in for evaluation restores the trained weights afterwards."""
    m = module()
    init = [p.detach().clone() for p in m.student.parameters()]
    rec, ema = ParamRecorder(), StudentEMA(decay=0.5)
    fit(m, 3, [rec, ema])
    expected = init
    for step in rec.history:
        expected = [0.5 * e + 0.5 * p for e, p in zip(expected, step, strict=True)]
    for s, e in zip(ema.shadow, expected, strict=True):
        torch.testing.assert_close(s, e)
    assert len(ema.shadow) == len(list(m.student.parameters()))  # the teacher is not averaged
    trained = [p.detach().clone() for p in m.student.parameters()]
    ema._swap_in(m)
    assert all(torch.equal(p, s) for p, s in zip(m.student.parameters(), ema.shadow, strict=True))
    ema._swap_out(m)
    assert all(torch.equal(p, t) for p, t in zip(m.student.parameters(), trained, strict=True))


def test_schedules_set_the_step_and_the_weights_linearly():
    """Invariant: TeacherStepSchedule and LossWeightSchedule interpolate linearly and hold the end value."""
    sched = TeacherStepSchedule(start=0.2, end=0.05, steps=4)
    assert [round(sched.value(k), 6) for k in (0, 2, 4, 9)] == [0.2, 0.125, 0.05, 0.05]
    weights = LossWeightSchedule("consis", start=0.0, end=1.0, steps=4)
    m = module()
    fit(m, 3, [sched, weights])
    assert m.objective.times.step == pytest.approx(sched.value(2))  # set at the start of the last batch
    assert m.objective.weights["consis"] == pytest.approx(0.5)


def test_teacher_step_schedule_needs_a_step():
    """Invariant: a curriculum on a sampler without a teacher step fails with a clear error."""
    with pytest.raises(ValueError, match="TauLDRTimes"):
        fit(module(TauLDRTimes()), 1, [TeacherStepSchedule(0.1, 0.05, 2)])


def test_multi_round_promotes_a_frozen_copy_of_the_student():
    """Invariant: after every_n_steps the teacher becomes a frozen mixture copy of the student of that
    moment (Di4C^2), and the round counter and checkpoint keep it."""
    m = module()
    rec = ParamRecorder()
    fit(m, 3, [MultiRoundDistillation(every_n_steps=2, max_rounds=1), rec])
    assert m.round == 1 and isinstance(m.teacher, MixtureStudent) and m.teacher.frozen
    assert not any(p.requires_grad for p in m.teacher.parameters())
    for p, q in zip(m.teacher.parameters(), rec.history[1], strict=True):
        assert torch.equal(p, q)
    ckpt = {"state_dict": m.state_dict()}
    m.on_save_checkpoint(ckpt)
    assert any(k.startswith("teacher.") for k in ckpt["state_dict"]) and ckpt["mixdistill_round"] == 1
    fresh = module()
    fresh.on_load_checkpoint(ckpt)
    fresh.load_state_dict(ckpt["state_dict"])
    assert fresh.round == 1 and isinstance(fresh.teacher, MixtureStudent)


def test_sample_logger_writes_image_grids(tmp_path):
    """Invariant: SampleLogger writes student (and once teacher) sample images to TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mixdistill.data import DigitsData

    torch.manual_seed(0)
    teacher = NetworkTeacher(MaskingProcess(4), (8, 8), MLPDenoiserNet(64, 5, 4, 32, 1))
    m = DistillModule(teacher, Di4CObjective(MaskGITTimes(step=0.1), latents=2))
    logger = TensorBoardLogger(tmp_path)
    quiet = {"enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}
    callbacks = [SampleLogger(every_n_steps=1, num_samples=4, steps=[2])]
    trainer = L.Trainer(max_steps=2, callbacks=callbacks, logger=logger, limit_val_batches=0, **quiet)
    trainer.fit(m, DigitsData(levels=4, batch_size=8))
    acc = EventAccumulator(logger.log_dir).Reload()
    assert {"samples/student_2steps", "samples/teacher_2steps"} <= set(acc.Tags()["images"])


def test_quality_monitor_logs_student_quality_for_checkpoint_selection():
    """Invariant: after a validation the student's FD at each evaluation step count is logged, and the
    test reference starts empty again (only test data feeds mixdistill test)."""
    from mixdistill.callbacks import QualityMonitor
    from mixdistill.evaluation.quality import QualityEvaluation
    from mixdistill.metrics import FrechetDistance

    m = module()
    m.evaluation = QualityEvaluation(
        [2], [1, 2], num_samples=64, batch_size=64, sample_metrics=[FrechetDistance(vocab_size=3)]
    )
    quiet = {"enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}
    trainer = L.Trainer(
        max_steps=4, val_check_interval=2, callbacks=[QualityMonitor()], logger=False, **quiet
    )
    trainer.fit(m, SyntheticData(SPEC, num_samples=256, batch_size=16))
    logged = trainer.callback_metrics
    assert {"monitor/FD-pixels_steps1", "monitor/FD-pixels_steps2"} <= set(logged)
    assert all(float(logged[k]) >= 0 for k in ("monitor/FD-pixels_steps1", "monitor/FD-pixels_steps2"))
    assert float(m.evaluation.sample_metrics[0].real_n) > 0
    m.on_test_epoch_start()
    assert float(m.evaluation.sample_metrics[0].real_n) == 0


def test_evaluation_during_training_leaves_the_global_random_state_alone():
    """Invariant: seeded evaluation (run after every validation by QualityMonitor) draws the same
    samples every time yet does not reset the training's random stream."""
    from mixdistill.evaluation.quality import QualityEvaluation
    from mixdistill.metrics import FrechetDistance

    m = module()
    ev = QualityEvaluation(
        [2], [2], num_samples=8, batch_size=8, sample_metrics=[FrechetDistance(vocab_size=3)]
    )
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first, _, _ = ev.generate(m.student, 2)
    assert torch.equal(torch.get_rng_state(), before)
    second, _, _ = ev.generate(m.student, 2)
    assert torch.equal(first, second)


def test_quality_monitor_samples_with_another_seed_than_the_test():
    """Invariant: the monitor's numbers are those of the evaluation's seed + 1 (so checkpoint
    selection is not tuned to the samples mixdistill test reports), recomputed after the fit."""
    from mixdistill.callbacks import QualityMonitor
    from mixdistill.evaluation.quality import QualityEvaluation
    from mixdistill.metrics import FrechetDistance

    m = module()
    m.evaluation = QualityEvaluation(
        [2], [2], num_samples=64, batch_size=64, seed=5, sample_metrics=[FrechetDistance(vocab_size=3)]
    )
    quiet = {"enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}
    trainer = L.Trainer(
        max_steps=4, val_check_interval=4, callbacks=[QualityMonitor()], logger=False, **quiet
    )
    trainer.fit(m, SyntheticData(SPEC, num_samples=256, batch_size=16))
    logged = float(trainer.callback_metrics["monitor/FD-pixels_steps2"])
    monitor_seed = m.evaluation.row("student", m.student, 2, m.teacher, seed=6)["FD-pixels"]
    test_seed = m.evaluation.row("student", m.student, 2, m.teacher)["FD-pixels"]
    assert logged == pytest.approx(monitor_seed, rel=1e-6)
    assert abs(monitor_seed - test_seed) > 1e-6
