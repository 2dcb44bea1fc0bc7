"""DistillModule: a frozen teacher, a trainable mixture student and the Di4C objective."""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Callable
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from mixdistill.di4c.base import Objective
from mixdistill.di4c.objective import Di4CObjective
from mixdistill.evaluation.headline import can_headline, headline
from mixdistill.evaluation.plot import quality_plot
from mixdistill.evaluation.quality import QualityEvaluation, format_table, write_quality
from mixdistill.generation import Generation, SampleWriter
from mixdistill.injection import AdditiveInjection, LatentInjection
from mixdistill.student import MixtureStudent
from mixdistill.teachers.base import Teacher

# The frozen teacher is in eval mode on purpose; Lightning's generic warning about it is noise here.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")


def check_data_matches(model: Teacher, datamodule: Any, role: str) -> None:
    """Raise before any step if the data's shape, vocabulary or classes differ from the model's."""
    if datamodule is None:
        return
    checks = [("vocab_size", model.vocab_size), ("shape", model.shape)]
    for attr, expected in checks:
        got = getattr(datamodule, attr, None)
        got = tuple(got) if attr == "shape" and got is not None else got
        if got is not None and got != expected:
            raise ValueError(
                f"the data's {attr}={got} differs from the {role}'s {attr}={expected} "
                f"({type(datamodule).__name__} vs {type(model).__name__}); make them agree in the config."
            )
    classes = getattr(datamodule, "num_classes", 0)
    if classes and model.num_classes and classes != model.num_classes:
        raise ValueError(
            f"the data has num_classes={classes} but the {role} has num_classes={model.num_classes}."
        )


def check_finite(terms: dict[str, torch.Tensor], prefix: str, step: int) -> None:
    """Stop the run at a non-finite loss, naming the step and the terms, before the optimizer (or a
    checkpoint) sees it; the last checkpoint written stays the last good one.
    """
    if bool(torch.isfinite(terms["loss"])):
        return
    bad = [k for k, v in terms.items() if k != "loss" and not bool(torch.isfinite(v).all())]
    raise FloatingPointError(
        f"{prefix} loss is not finite at global step {step}: term(s) {bad or ['loss']} "
        f"({', '.join(f'{k}={float(v):.4g}' for k, v in terms.items())}). The last saved checkpoint is "
        "unaffected; lower the learning rate, or use bf16-mixed rather than 16-mixed precision."
    )


def optimizers_for(
    params: Any,
    optimizer: OptimizerCallable,
    lr_scheduler: LRSchedulerCallable | None,
    interval: Literal["step", "epoch"] = "step",
) -> Any:
    """What ``configure_optimizers`` returns for ``params`` with the configured factories.

    The scheduler steps after every optimizer step by default, so that ``T_max``/``total_steps``
    count the steps that ``trainer.max_steps`` counts (Lightning's own default is once per epoch).
    """
    opt = build_from_setting(optimizer, "optimizer", params)
    if lr_scheduler is None:
        return opt
    scheduler = build_from_setting(lr_scheduler, "lr_scheduler", opt)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}


def build_from_setting(factory: Callable[[Any], Any], setting: str, arg: Any) -> Any:
    """``factory(arg)``, with a ``ValueError`` naming the config setting, the class and its arguments.

    Torch checks an optimizer's (or scheduler's) arguments only when it is built, in
    ``configure_optimizers`` (before the first step), and its message (``Invalid learning rate:
    -1.0``) names no setting.

    Args:
        factory: The configured factory (jsonargparse's partial of the class and its ``init_args``).
        setting: ``"optimizer"`` or ``"lr_scheduler"``, the setting under ``model.init_args``.
        arg: The parameters (or the optimizer) to build it for.
    """
    try:
        return factory(arg)
    except (ValueError, TypeError) as err:
        candidates = (getattr(factory, "func", None), *getattr(factory, "args", ()), factory)
        cls = next(c for c in candidates if isinstance(c, type) or c is factory)
        name = getattr(cls, "__name__", type(cls).__name__)
        given = ", ".join(f"{k}={v!r}" for k, v in non_default_arguments(cls, factory).items())
        raise ValueError(
            f"model.init_args.{setting}: {name}({given}) refused its arguments: {err}. Fix "
            f"model.init_args.{setting}.init_args in the config."
        ) from err


def non_default_arguments(cls: Any, factory: Any) -> dict[str, Any]:
    """The keyword arguments of ``factory`` (a partial) whose values differ from ``cls``'s defaults."""
    given = dict(getattr(factory, "keywords", {}))
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no signature: name them all
        return given
    return {k: v for k, v in given.items() if k not in params or repr(params[k].default) != repr(v)}


class DistillModule(L.LightningModule):
    """Distils ``teacher`` into a mixture student with the Di4C objective.

    Only the student is optimised and checkpointed; the teacher is rebuilt from the config (which
    Lightning saves beside the logs) and never written into checkpoints.

    Args:
        teacher: The frozen teacher (``class_path``/``init_args`` in YAML).
        objective: The training objective: ``Di4CObjective`` by default (times/gating, alpha(t), latent
            batch size, control variates), or a baseline such as ``SDTTObjective``.
        injection: How lambda enters the student's copy of the teacher; defaults to adding it at the
            teacher's ``latent_layer``.
        latent_dim: ``k``, the dimension of lambda.
        student_base: A backbone to train from scratch instead of a copy of the teacher, or a
            factory ``teacher -> backbone`` (e.g. ``FreshNetwork``) that sizes it from the teacher.
        optimizer: Optimizer over the student's parameters (AdamW with its defaults when unset).
        lr_scheduler: Optional learning-rate scheduler.
        lr_interval: Step the scheduler after every optimizer ``step`` or every ``epoch``.
        evaluation: Quality against steps, run by ``mixdistill test``.
        generation: Samples written by ``mixdistill predict``.
    """

    def __init__(
        self,
        teacher: Teacher,
        objective: Objective | None = None,
        injection: LatentInjection | None = None,
        latent_dim: int = 1,
        student_base: Teacher | Callable[[Teacher], Teacher] | None = None,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_interval: Literal["step", "epoch"] = "step",
        evaluation: QualityEvaluation | None = None,
        generation: Generation | None = None,
    ) -> None:
        super().__init__()
        self.teacher = teacher.freeze()
        self.objective = objective if objective is not None else Di4CObjective()
        if injection is None:
            layer = getattr(teacher, "latent_layer", None)
            if layer is None:
                raise ValueError(
                    f"DistillModule: injection=None but {type(teacher).__name__} names no latent_layer; "
                    f"set model.injection (e.g. AdditiveInjection with layer=...)."
                )
            injection = AdditiveInjection(layer)
        if student_base is None:
            self.student = MixtureStudent.from_teacher(teacher, injection, latent_dim)
        else:
            base = student_base if isinstance(student_base, Teacher) else student_base(teacher)
            self.student = MixtureStudent(base, injection, latent_dim)
        # No AdamW default in the signature: jsonargparse would carry its weight_decay=0.01 into any
        # other optimizer a config names (torch.optim.Adam then silently decays the weights).
        self.optimizer_factory = optimizer if optimizer is not None else torch.optim.AdamW
        self.scheduler_factory = lr_scheduler
        self.lr_interval = lr_interval
        self.evaluation, self.generation = evaluation, generation
        self.round = 0

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        check_data_matches(self.teacher, dm, "teacher")

    def _loss(self, batch: dict, prefix: str) -> torch.Tensor:
        x0, cond = batch["x0"].flatten(1), batch.get("cond")
        out = self.objective(self.teacher, self.student, x0, cond)
        check_finite(out, prefix, self.global_step)
        self.log_dict(
            {f"{prefix}/{k}": v for k, v in out.items()},
            prog_bar=prefix == "train",
            batch_size=x0.shape[0],
            sync_dist=prefix != "train",
        )
        return out["loss"]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._loss(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._loss(batch, "val")

    def on_test_epoch_start(self) -> None:
        if self.evaluation is not None:  # the reference is the test data alone
            self.evaluation.reset_reference(split="test")
            self.evaluation.use_sampling_context(self.trainer.precision_plugin.forward_context)
            self.evaluation.use_decoder(getattr(self.trainer.datamodule, "decode", None))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        if self.evaluation is None:
            raise ValueError("mixdistill test needs model.evaluation (a QualityEvaluation) in the config.")
        self.evaluation.update_real(batch["x0"])

    def on_test_epoch_end(self) -> None:
        rows = self.evaluation.run(self.teacher, self.student)
        for r in rows:
            for k, v in r.items():
                if isinstance(v, float):
                    self.log(f"quality/{r['model']}/{k}/steps_{r['steps']}", v, sync_dist=True)
        meta = self.evaluation.meta() | {"precision": str(self.trainer.precision)}
        if can_headline(rows):
            lat = self.evaluation.latency
            per = self.evaluation.latency_batch  # the latency was measured on batches of this size
            ms = (lat["teacher_step_ms"] / per, lat["student_step_ms"] / per) if lat else None
            meta["headline"] = headline(rows, meta["primary_metric"], meta["higher_is_better"], ms)
        # log_dir is a collective under DDP: every rank must read it, not rank 0 alone (or it hangs).
        log_dir = self.trainer.log_dir or self.trainer.default_root_dir
        if self.trainer.is_global_zero:
            path = write_quality(rows, meta, log_dir)
            plot = quality_plot(rows, self.evaluation.primary_metric)
            plot.save(path.with_name("quality.png"))
            for logger in self.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_image("quality", np.asarray(plot), dataformats="HWC")
            rank_zero_info(f"\n{format_table(rows)}\nwritten to {path} and quality.png")

    def predict_dataloader(self) -> Any:
        return self._generation().dataloader()

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._generation().draw(self, batch)

    def configure_callbacks(self) -> list:
        return [SampleWriter(self.generation)] if self.generation is not None else []

    def _generation(self) -> Generation:
        if self.generation is None:
            raise ValueError("mixdistill predict needs model.generation (a Generation) in the config.")
        return self.generation

    def configure_optimizers(self) -> Any:
        return optimizers_for(
            self.student.parameters(), self.optimizer_factory, self.scheduler_factory, self.lr_interval
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The teacher is rebuilt from the config; promoted (multi-round) teachers are kept.
        if self.round == 0:
            sd = checkpoint["state_dict"]
            for key in [k for k in sd if k.startswith("teacher.")]:
                del sd[key]
        checkpoint["mixdistill_round"] = self.round

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.round = checkpoint.get("mixdistill_round", 0)
        if self.round > 0:  # the saved teacher is a promoted student: give it that structure first
            self.teacher = copy.deepcopy(self.student).freeze()
        sd = checkpoint["state_dict"]
        if not any(k.startswith("teacher.") for k in sd):
            sd.update({f"teacher.{k}": v for k, v in self.teacher.state_dict().items()})

    def promote_student(self) -> None:
        """Start a new round: a frozen copy of the student becomes the teacher (Di4C^2, SDTT rounds)."""
        self.teacher = copy.deepcopy(self.student).freeze()
        self.round += 1
