"""The checks of ``check_teacher``: invariants every ``Teacher`` (and its student copy) must meet.

The checks are generic over processes, networks and step rules, so a new adapter (MDLM, MaskGIT,
tau-LDR or a user's own subclass) runs them unchanged: logits of the right shape and finite, tokens
that an absorbing process has unmasked carried over by ``denoise`` and by every step, the step rule's
shapes and value ranges (with ``num_samples`` too, and a last step that leaves only data values),
``sample()``'s output, and a student built with ``MixtureStudent.from_teacher`` equal to the teacher
at initialisation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mixdistill.teachers.base import Teacher
from mixdistill.testing.report import TeacherCheckError


@dataclass
class Probe:
    """Inputs the checks feed a model: states ``(B, D)``, times ``t`` and targets ``s < t`` ``(B,)``,
    class labels ``(B,)`` or None. Row 0 is the prior at ``t = 1``; for absorbing processes every
    other row has at least one masked and (when ``D > 1``) one unmasked token.
    """

    x_t: Tensor
    t: Tensor
    s: Tensor
    cond: Tensor | None


def count_parameters(module: nn.Module) -> int:
    """Number of (distinct) parameters; works on the meta device."""
    return sum(p.numel() for p in module.parameters())


def model_device(module: nn.Module) -> torch.device:
    """Device of the first parameter or buffer (CPU for a module with neither)."""
    tensors = [*module.parameters(), *module.buffers()]
    return tensors[0].device if tensors else torch.device("cpu")


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Run the block in eval mode (no dropout) and restore the module's training flags after."""
    flags = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags.items():
            m.training = flag


def make_probe(teacher: Teacher, batch_size: int) -> Probe:
    """Random probe inputs on the teacher's device (see ``Probe``)."""
    device, B, D = model_device(teacher), batch_size, teacher.num_dims
    x0 = torch.randint(teacher.vocab_size, (B, D), device=device)
    t = 0.2 + 0.6 * torch.rand(B, device=device)
    t[0] = 1.0
    x_t = teacher.process.corrupt(x0, t)
    x_t[0] = teacher.process.prior((D,), device=device)
    mask_id = getattr(teacher.process, "mask_id", None)
    if mask_id is not None and B > 1:
        x_t[1:, 0] = mask_id  # something to denoise
        if D > 1:
            x_t[1:, -1] = x0[1:, -1]  # something to carry over
    cond = torch.randint(teacher.num_classes, (B,), device=device) if teacher.num_classes else None
    return Probe(x_t, t, 0.5 * t, cond)


def check_logits(model: Teacher, probe: Probe, name: str = "logits") -> Tensor:
    """``network_logits`` and ``denoise`` are finite float ``(B, D, S)``; returns ``denoise``'s."""
    want = (probe.x_t.shape[0], model.num_dims, model.vocab_size)
    out = None
    for method in ("network_logits", "denoise"):
        out = getattr(model, method)(probe.x_t, probe.t, probe.cond)
        if not isinstance(out, Tensor) or tuple(out.shape) != want:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise TeacherCheckError(
                name,
                f"{type(model).__name__}.{method} returned {got}, expected (B, D, S) = {want} "
                f"(D = prod(shape) = {model.num_dims}, S = vocab_size = {model.vocab_size}, no mask logit).",
            )
        if not out.is_floating_point():
            raise TeacherCheckError(name, f"{method} returned dtype {out.dtype}; logits must be floating.")
        bad = int((~torch.isfinite(out)).sum())
        if bad:
            raise TeacherCheckError(
                name,
                f"{method} returned {bad} non-finite values (NaN or inf) of {out.numel()}; use "
                "mixdistill.sampling.categorical.NEG_INF, not -inf, for impossible values.",
            )
    return out


def check_carry_over(model: Teacher, probe: Probe, logits: Tensor, num_samples: int, name: str) -> str:
    """For absorbing processes: ``denoise`` puts all mass on unmasked tokens, and ``step``,
    ``step_from_logits(num_samples=n)`` and ``consistency_step`` keep them.
    """
    mask_id = getattr(model.process, "mask_id", None)
    if mask_id is None:
        return "skipped: not an absorbing (masking) process"
    x_t, t, s, cond = probe.x_t, probe.t, probe.s, probe.cond
    kept = x_t != mask_id  # (B, D)
    if not bool(kept.any()):
        return "skipped: the probe has no unmasked token (D = 1 or batch_size = 1)"
    mass = logits.double().softmax(-1).gather(-1, x_t.clamp(max=model.vocab_size - 1).unsqueeze(-1))
    low = float(mass.squeeze(-1)[kept].min())
    if low < 1 - 1e-6:
        raise TeacherCheckError(
            name,
            f"denoise puts only {low:.3g} of the mass on an unmasked token's own value; "
            "an absorbing process carries unmasked tokens over (Teacher.denoise applies "
            "process.constrain_logits; do not bypass it).",
        )
    draws = {
        "step": model.step(x_t, t, s, cond).unsqueeze(1),
        "step_from_logits(num_samples)": model.step_from_logits(
            x_t, model.sampling_logits(x_t, t, cond), t, s, num_samples
        ),
        "consistency_step": model.consistency_step(x_t, t, s, cond, num_samples),
    }
    for method, x_s in draws.items():
        changed = int((x_s != x_t.unsqueeze(1))[kept.unsqueeze(1).expand_as(x_s)].sum())
        if changed:
            raise TeacherCheckError(
                name, f"{method} changed {changed} unmasked tokens; an absorbing step must keep them."
            )
    return "ok"


def _check_states(name: str, what: str, x: Tensor, shape: tuple[int, ...], high: int, hint: str) -> None:
    if tuple(x.shape) != shape:
        raise TeacherCheckError(name, f"{what} returned shape {tuple(x.shape)}, expected {shape}.")
    if x.is_floating_point() or x.dtype == torch.bool:
        raise TeacherCheckError(name, f"{what} returned dtype {x.dtype}; states must be integer.")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= high):
        raise TeacherCheckError(
            name, f"{what} returned values in [{int(x.min())}, {int(x.max())}], outside [0, {high}){hint}."
        )


def check_steps(model: Teacher, probe: Probe, num_samples: int, name: str = "step") -> None:
    """Shapes and ranges of ``step``, ``step_from_logits(num_samples)``, ``consistency_step``, and a
    step to ``s = 0`` that leaves only data values (no mask token).
    """
    x_t, t, s, cond = probe.x_t, probe.t, probe.s, probe.cond
    B, D, n, K = x_t.shape[0], model.num_dims, num_samples, model.process.num_states
    _check_states(name, "step", model.step(x_t, t, s, cond), (B, D), K, " (num_states)")
    logits = model.sampling_logits(x_t, t, cond)
    many = model.step_from_logits(x_t, logits, t, s, num_samples=n)
    _check_states(name, "step_from_logits(num_samples)", many, (B, n, D), K, " (num_states)")
    _check_states(name, "consistency_step", model.consistency_step(x_t, t, s, cond, n), (B, n, D), K, "")
    last = model.step(x_t, t, torch.zeros_like(t), cond)
    hint = " (vocab_size): a step to s = 0 must leave only data values, no mask token"
    _check_states(name, "step to s = 0", last, (B, D), model.vocab_size, hint)


def check_sample(
    model: Teacher, batch_size: int, steps: int, cond: Tensor | None, name: str = "sample"
) -> None:
    """``sample(B, steps)`` returns data values of shape ``(B, *shape)``."""
    out = model.sample(batch_size, steps, cond)
    want = (batch_size, *model.shape)
    _check_states(name, f"sample(steps={steps})", out, want, model.vocab_size, " (vocab_size)")


@contextmanager
def named(check: str) -> Iterator[None]:
    """Turn any error raised inside the block into a ``TeacherCheckError`` naming ``check``."""
    try:
        yield
    except TeacherCheckError:
        raise
    except Exception as err:
        raise TeacherCheckError(check, f"raised {type(err).__name__}: {err}") from err


def run_checks(model: Teacher, probe: Probe, num_samples: int, steps: int, prefix: str = "") -> dict:
    """All checks of one model; returns ``{check name: status}`` and raises on the first failure."""
    with named(f"{prefix}logits"):
        logits = check_logits(model, probe, f"{prefix}logits")
    with named(f"{prefix}carry_over"):
        carry = check_carry_over(model, probe, logits, num_samples, f"{prefix}carry_over")
    with named(f"{prefix}step"):
        check_steps(model, probe, num_samples, f"{prefix}step")
    with named(f"{prefix}sample"):
        check_sample(model, probe.x_t.shape[0], steps, probe.cond, f"{prefix}sample")
    status = {"logits": "ok", "carry_over": carry, "step": "ok", "sample": "ok"}
    return {f"{prefix}{name}": value for name, value in status.items()}
