"""tau-LDR's Gaussian-target CTMC on ordinal states (pixel intensities)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mixdistill.processes.base import ForwardProcess


def gaussian_target_rate(num_states: int, rate_sigma: float, q_sigma: float) -> tuple[Tensor, Tensor]:
    """Base rate matrix ``R`` (K, K) and its stationary distribution ``pi`` (K,), in float64.

    States below the middle jump upwards and states above it jump downwards, to states at distance
    ``m`` with rate ``exp(-(m - 1)^2 / rate_sigma^2)`` while staying inside the mirrored range; each
    reverse jump gets the rate that makes the chain reversible with respect to a discretised Gaussian
    centred on the middle state with standard deviation ``q_sigma``. Rows of ``R`` sum to 0.
    """
    K = num_states
    i = torch.arange(K, dtype=torch.float64).unsqueeze(1)  # (K, 1) source
    j = torch.arange(K, dtype=torch.float64).unsqueeze(0)  # (1, K) target
    up = (i < K // 2) & (j > i) & (j < K - i)
    down = (i > K // 2) & (j < i) & (j > K - 1 - i)
    forward = torch.where(up | down, torch.exp(-(((j - i).abs() - 1.0) ** 2) / rate_sigma**2), 0.0)
    log_pi = -(((torch.arange(K, dtype=torch.float64) + 1.0) - K / 2.0) ** 2) / (2.0 * q_sigma**2)
    pi = torch.softmax(log_pi, 0)
    # Detailed balance pi_i R_ij = pi_j R_ji fixes each reverse rate from its forward rate.
    ratio = torch.exp(log_pi.unsqueeze(0) - log_pi.unsqueeze(1))  # (K, K): pi_j / pi_i
    rate = forward + forward.T * ratio
    rate = rate - torch.diag(rate.sum(1))
    return rate, pi


class GaussianRateProcess(ForwardProcess):
    """Continuous-time Markov chain with rate ``beta(t) R`` (tau-LDR's CIFAR-10 process).

    ``q_{t|s} = expm((F(t) - F(s)) R)`` with integrated rate ``F(t) = time_base (time_exponential^t - 1)``.
    The matrix exponential uses one symmetric eigendecomposition of ``pi^{1/2} R pi^{-1/2}``, done
    at construction, which is real and well conditioned because the chain is reversible.

    Args:
        num_states: Number of ordinal values ``S`` (256 for 8-bit pixels).
        rate_sigma: Width of the jump-size kernel (tau-LDR: 6).
        q_sigma: Standard deviation of the Gaussian target (tau-LDR: 512).
        time_base: ``F(t)`` prefactor (tau-LDR: 3).
        time_exponential: ``F(t)`` base (tau-LDR: 100).
    """

    def __init__(
        self,
        num_states: int = 256,
        rate_sigma: float = 6.0,
        q_sigma: float = 512.0,
        time_base: float = 3.0,
        time_exponential: float = 100.0,
    ) -> None:
        super().__init__()
        if num_states < 2:
            raise ValueError(f"GaussianRateProcess: num_states={num_states} must be at least 2.")
        for name, v in [("rate_sigma", rate_sigma), ("q_sigma", q_sigma), ("time_base", time_base)]:
            if v <= 0:
                raise ValueError(f"GaussianRateProcess: {name}={v} must be positive.")
        if time_exponential <= 1:
            raise ValueError(f"GaussianRateProcess: time_exponential={time_exponential} must be > 1.")
        self.vocab_size = self.num_states = num_states
        self.time_base, self.time_exponential = time_base, time_exponential
        self.rate_sigma, self.q_sigma = rate_sigma, q_sigma
        rate, pi = gaussian_target_rate(num_states, rate_sigma, q_sigma)
        sqrt_pi = pi.sqrt()
        sym = sqrt_pi.unsqueeze(1) * rate / sqrt_pi.unsqueeze(0)
        evals, evecs = torch.linalg.eigh(0.5 * (sym + sym.T))
        self.register_buffer("rate", rate, persistent=False)
        self.register_buffer("stationary", pi, persistent=False)
        self.register_buffer("evals", evals.clamp(max=0.0), persistent=False)
        self.register_buffer("left", evecs / sqrt_pi.unsqueeze(1), persistent=False)  # pi^-1/2 U
        self.register_buffer("right", evecs.T * sqrt_pi.unsqueeze(0), persistent=False)  # U^T pi^1/2

    def integrated_rate(self, t: Tensor) -> Tensor:
        """``F(t) = time_base (time_exponential^t - 1)``."""
        return self.time_base * torch.expm1(t.double() * math.log(self.time_exponential))

    def rate_matrix(self, t: Tensor) -> Tensor:
        """Rate ``F'(t) R`` at times ``t``: ``(*t.shape, K, K)`` float32 (for tau-leaping samplers)."""
        beta = math.log(self.time_exponential) * (self.integrated_rate(t) + self.time_base)
        return (beta.unsqueeze(-1).unsqueeze(-1) * self.rate).float()

    def _expm(self, amount: Tensor) -> Tensor:
        """``expm(amount R)`` for a tensor of amounts: ``(*amount.shape, K, K)`` float32."""
        decay = torch.exp(amount.double().unsqueeze(-1) * self.evals)  # (..., K)
        out = (self.left * decay.unsqueeze(-2)) @ self.right
        out = out.clamp_min(0.0)
        return (out / out.sum(-1, keepdim=True)).float()

    def marginal_matrix(self, t: Tensor) -> Tensor:
        return self._expm(self.integrated_rate(t))

    def transition_matrix(self, s: Tensor, t: Tensor) -> Tensor:
        return self._expm(self.integrated_rate(t) - self.integrated_rate(s))

    def prior_probs(self) -> Tensor:
        return self.stationary.float()

    def extra_repr(self) -> str:
        return (
            f"num_states={self.num_states}, rate_sigma={self.rate_sigma}, q_sigma={self.q_sigma}, "
            f"time_base={self.time_base}, time_exponential={self.time_exponential}"
        )
