"""A student backbone built from scratch for a teacher's sizes (for teachers with no network to copy)."""

from __future__ import annotations

import copy
from collections.abc import Callable

from torch import nn

from mixdistill.teachers.base import Teacher
from mixdistill.teachers.network import NetworkTeacher


class FreshNetwork(NetworkTeacher):
    """A ``NetworkTeacher`` whose untrained network is sized by another teacher.

    It takes the teacher's process (a copy), shape, classes and step rule, and builds ``net`` for
    the teacher's ``num_dims``, ``num_states`` and ``vocab_size``; so a student of an
    ``ExactTeacher`` follows whatever table the teacher reads. ``DistillModule`` calls it with the
    teacher when it is the ``student_base``; in YAML it is a ``class_path`` without ``teacher``, and
    ``net`` a ``class_path`` (e.g. ``MLPDenoiserNet``) without those three sizes.

    Args:
        teacher: The teacher whose sizes the network takes.
        net: Factory ``(num_dims, num_states, vocab_size) -> network`` of ``NetworkTeacher``'s
            contract ``net(x_t (B, D), t (B,), cond) -> logits (B, D, S)``.
        latent_layer: Submodule where the student adds its lambda embedding by default.
    """

    def __init__(
        self,
        teacher: Teacher,
        net: Callable[[int, int, int], nn.Module],
        latent_layer: str | None = "net.time_embed",
    ) -> None:
        process = copy.deepcopy(teacher.process)
        super().__init__(
            process,
            teacher.shape,
            net(teacher.num_dims, process.num_states, process.vocab_size),
            num_classes=teacher.num_classes,
            latent_layer=latent_layer,
            step_rule=copy.deepcopy(teacher.step_rule),
            guidance=copy.deepcopy(teacher.guidance),
        )
