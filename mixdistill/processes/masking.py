"""The masking (absorbing-state) process of MDLM, MaskGIT and SDTT."""

from __future__ import annotations

import torch
from torch import Tensor

from mixdistill.processes.base import ForwardProcess, pin_logits
from mixdistill.processes.schedules import LinearSchedule, Schedule


class MaskingProcess(ForwardProcess):
    """Each token is replaced by the mask id ``S`` with probability ``1 - alpha(t)``.

    Once unmasked, a token stays: the reverse step keeps unmasked tokens and unmasks a masked one
    with probability ``(alpha(s) - alpha(t)) / (1 - alpha(t))``.

    Args:
        vocab_size: Number of data values ``S``; the mask id is ``S``.
        schedule: The keep-probability ``alpha(t)``.
    """

    def __init__(self, vocab_size: int, schedule: Schedule | None = None) -> None:
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"MaskingProcess: vocab_size={vocab_size} must be at least 1.")
        self.vocab_size = vocab_size
        self.num_states = vocab_size + 1
        self.mask_id = vocab_size
        self.schedule = schedule if schedule is not None else LinearSchedule()

    def marginal_matrix(self, t: Tensor) -> Tensor:
        a = self.schedule.alpha(t)[..., None, None]
        eye = torch.eye(self.vocab_size, self.num_states, dtype=a.dtype, device=a.device)
        to_mask = torch.zeros_like(eye)
        to_mask[:, self.mask_id] = 1.0
        return a * eye + (1.0 - a) * to_mask

    def transition_matrix(self, s: Tensor, t: Tensor) -> Tensor:
        a_s, a_t = self.schedule.alpha(s), self.schedule.alpha(t)
        keep = (a_t / a_s.clamp_min(1e-12))[..., None, None]
        k = self.num_states
        eye = torch.eye(k, dtype=keep.dtype, device=keep.device)
        to_mask = torch.zeros_like(eye)
        to_mask[:, self.mask_id] = 1.0
        return keep * eye + (1.0 - keep) * to_mask

    def prior_probs(self) -> Tensor:
        p = torch.zeros(self.num_states)
        p[self.mask_id] = 1.0
        return p

    def corrupt(self, x0: Tensor, t: Tensor) -> Tensor:
        a = self.schedule.alpha(t).unsqueeze(-1)  # (B, 1)
        masked = torch.rand(x0.shape, device=x0.device) >= a
        return torch.where(masked, torch.full_like(x0, self.mask_id), x0)

    def prior(self, shape: tuple[int, ...], device: torch.device | str | None = None) -> Tensor:
        return torch.full(shape, self.mask_id, dtype=torch.long, device=device)

    def unmask_prob(self, t: Tensor, s: Tensor) -> Tensor:
        """Probability that a token masked at ``t`` is unmasked at ``s <= t``: ``(B,)``."""
        a_s, a_t = self.schedule.alpha(s), self.schedule.alpha(t)
        return ((a_s - a_t) / (1.0 - a_t).clamp_min(1e-12)).clamp(0.0, 1.0)

    def posterior_probs(self, x_t: Tensor, x0_probs: Tensor, t: Tensor, s: Tensor) -> Tensor:
        p = self.unmask_prob(t, s).to(x0_probs.dtype)[:, None, None]  # (B, 1, 1)
        norm = x0_probs / x0_probs.sum(-1, keepdim=True)
        stay = torch.ones_like(norm[..., :1])
        from_mask = torch.cat([p * norm, (1.0 - p) * stay], dim=-1)  # (B, D, K)
        onehot = torch.nn.functional.one_hot(x_t, self.num_states).to(x0_probs.dtype)
        return torch.where((x_t == self.mask_id).unsqueeze(-1), from_mask, onehot)

    def posterior_sample(self, x_t: Tensor, x0: Tensor, t: Tensor, s: Tensor) -> Tensor:
        p = self.unmask_prob(t, s).unsqueeze(-1)  # (B, 1)
        unmask = (x_t == self.mask_id) & (torch.rand(x_t.shape, device=x_t.device) < p)
        return torch.where(unmask, x0, x_t)

    def constrain_logits(self, logits: Tensor, x_t: Tensor) -> Tensor:
        """Unmasked positions get a point mass on their token (the "carry-over" parameterisation)."""
        return pin_logits(logits, self.random_positions(x_t), x_t)

    def random_positions(self, x_t: Tensor) -> Tensor:
        """The masked positions: an unmasked token stays."""
        return x_t == self.mask_id

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, schedule={self.schedule!r}"
