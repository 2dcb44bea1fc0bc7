"""ActivationCheckpointing: the same loss and gradients with less saved memory; nothing else changes."""

import copy

import pytest
import torch

from mixdistill.callbacks.activation_checkpointing import ActivationCheckpointing, checkpoint_modules
from mixdistill.di4c.objective import Di4CObjective
from mixdistill.di4c.times import SDTTTimes
from mixdistill.injection import ExtraTokenInjection
from mixdistill.module import DistillModule
from mixdistill.nets.dit import MDLMDiT
from mixdistill.processes.base import pin_logits
from mixdistill.teachers.mdlm import MDLMTeacher

D, S = 12, 30


def module(seed: int = 0) -> DistillModule:
    torch.manual_seed(seed)
    dit = MDLMDiT(S + 1, 32, 16, 2, 2, model_length=D, dropout=0.2)  # dropout: masks must replay
    teacher = MDLMTeacher(backbone=dit, vocab_size=S, seq_len=D)
    objective = Di4CObjective(SDTTTimes(p_distil=0.0, distil_max=0.1, step=0.1), latents=4)
    return DistillModule(teacher, objective, ExtraTokenInjection("backbone", 32, 16))


def step(m: DistillModule, seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    m.student.train()
    torch.manual_seed(seed)
    x0 = torch.randint(0, S, (3, D))
    m.student.zero_grad(set_to_none=True)
    loss = m.objective(m.teacher, m.student, x0)["loss"]
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in m.student.parameters() if p.grad is not None]


def saved_bytes(m: DistillModule, seed: int) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step(m, seed)
    return total


def test_checkpointed_student_gives_the_same_loss_and_gradients_and_saves_less():
    """Invariant: wrapping the DiT blocks changes neither the loss nor any gradient (dropout active:
    the recomputation replays the same masks) nor the state_dict's keys, and autograd saves fewer
    bytes for backward."""
    plain, wrapped = module(), module()
    keys = list(wrapped.student.state_dict())
    assert checkpoint_modules(wrapped.student, ["DiTBlock"]) == 2
    assert list(wrapped.student.state_dict()) == keys
    want, want_grads = step(plain, 7)
    got, got_grads = step(wrapped, 7)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert len(got_grads) == len(want_grads) > 0
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-7)
    assert saved_bytes(wrapped, 7) < 0.8 * saved_bytes(plain, 7)


def test_wrapping_twice_is_once_and_copies_run_their_own_weights():
    """Invariant: a second wrap does nothing, and a deep copy of a wrapped student (EMA, a promoted
    teacher) runs its own weights: changing the copy changes the copy's output only."""
    m = module()
    assert checkpoint_modules(m.student, ["DiTBlock"]) == 2
    assert checkpoint_modules(m.student, ["DiTBlock"]) == 0
    twin = copy.deepcopy(m.student)
    x, t = torch.full((2, D), S), torch.full((2,), 0.5)
    lam = torch.randn(2, twin.latent_dim)
    before = m.student.denoise(x, t, None, lam).detach()
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(0.5)
    twin.train()
    after = twin.denoise(x, t, None, lam)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(m.student.denoise(x, t, None, lam).detach(), before)


def test_unknown_block_name_is_refused_with_the_names_present():
    with pytest.raises(ValueError, match=r"modules=\[.Block.\][^\n]*DiTBlock"):
        checkpoint_modules(module().student, ["Block"])
    with pytest.raises(ValueError, match=r"modules=\[\]"):
        ActivationCheckpointing([])


def test_pinned_logits_keep_no_float_tensor_for_backward():
    """Invariant: pin_logits saves only its indices and mask for backward (no copy of the logits, which
    at MDLM's size is 1.6 GB per example), and its gradient is that of the masked fill."""
    logits = torch.randn(2, 5, 7, requires_grad=True)
    x_t = torch.tensor([[7, 1, 7, 3, 7], [0, 7, 7, 7, 6]])  # 7: masked
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = pin_logits(logits, x_t == 7, x_t)
    assert all(not t.is_floating_point() for t in saved)
    out.log_softmax(-1).sum().backward()
    masked = (x_t == 7).unsqueeze(-1).float()
    torch.testing.assert_close(logits.grad, (1 - 7 * out.softmax(-1)) * masked)
