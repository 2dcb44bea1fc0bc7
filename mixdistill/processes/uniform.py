"""The uniform-state process of D3PM, SEDD-uniform and Duo."""

from __future__ import annotations

import torch
from torch import Tensor

from mixdistill.processes.base import ForwardProcess
from mixdistill.processes.schedules import LinearSchedule, Schedule
from mixdistill.sampling.categorical import sample_from_probs


class UniformProcess(ForwardProcess):
    """``x_t = x_0`` with probability ``alpha(t)``, otherwise a uniform draw from ``0..S-1``.

    Args:
        vocab_size: Number of values ``S`` (also the number of states).
        schedule: The keep-probability ``alpha(t)``.
    """

    def __init__(self, vocab_size: int, schedule: Schedule | None = None) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"UniformProcess: vocab_size={vocab_size} must be at least 2.")
        self.vocab_size = vocab_size
        self.num_states = vocab_size
        self.schedule = schedule if schedule is not None else LinearSchedule()

    def _mix(self, keep: Tensor) -> Tensor:
        keep = keep[..., None, None]
        eye = torch.eye(self.vocab_size, dtype=keep.dtype, device=keep.device)
        return keep * eye + (1.0 - keep) / self.vocab_size

    def marginal_matrix(self, t: Tensor) -> Tensor:
        return self._mix(self.schedule.alpha(t))

    def transition_matrix(self, s: Tensor, t: Tensor) -> Tensor:
        return self._mix(self.schedule.alpha(t) / self.schedule.alpha(s).clamp_min(1e-12))

    def prior_probs(self) -> Tensor:
        return torch.full((self.vocab_size,), 1.0 / self.vocab_size)

    def corrupt(self, x0: Tensor, t: Tensor) -> Tensor:
        a = self.schedule.alpha(t).unsqueeze(-1)  # (B, 1)
        noise = torch.randint_like(x0, self.vocab_size)
        return torch.where(torch.rand(x0.shape, device=x0.device) < a, x0, noise)

    def prior(self, shape: tuple[int, ...], device: torch.device | str | None = None) -> Tensor:
        return torch.randint(self.vocab_size, shape, device=device)

    def posterior_probs(self, x_t: Tensor, x0_probs: Tensor, t: Tensor, s: Tensor) -> Tensor:
        """Closed form in O(S) per dimension.

        With ``Z(v) = q_{t|0}(x_t | v)``, ``w(v) = p(v) / Z(v)`` and ``a = alpha_t / alpha_s``:
        ``out(k) ∝ (a [k = x_t] + (1 - a) / S) (alpha_s w(k) + (1 - alpha_s) / S sum_v w(v))``.
        """
        S = self.vocab_size
        a_s = self.schedule.alpha(s).to(x0_probs.dtype)[:, None, None]  # (B, 1, 1)
        a_t = self.schedule.alpha(t).to(x0_probs.dtype)[:, None, None]
        a = a_t / a_s.clamp_min(1e-12)
        is_xt = torch.nn.functional.one_hot(x_t, S).to(x0_probs.dtype)  # (B, D, S)
        w = x0_probs / (a_t * is_xt + (1.0 - a_t) / S).clamp_min(1e-300)
        forward = a * is_xt + (1.0 - a) / S
        out = forward * (a_s * w + (1.0 - a_s) / S * w.sum(-1, keepdim=True))
        return out / out.sum(-1, keepdim=True)

    def posterior_sample(self, x_t: Tensor, x0: Tensor, t: Tensor, s: Tensor) -> Tensor:
        onehot = torch.nn.functional.one_hot(x0, self.vocab_size).to(torch.float64)
        return sample_from_probs(self.posterior_probs(x_t, onehot, t, s))

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, schedule={self.schedule!r}"
