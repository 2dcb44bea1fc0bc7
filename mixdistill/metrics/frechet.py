"""Frechet distance between Gaussian fits of two feature sets, as a torchmetrics Metric."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from mixdistill.evaluation.fingerprint import canonical_sha256, module_fingerprint

#: The states ``update(x, real=True)`` accumulates: what a reference cache stores.
REAL_STATES = ("real_sum", "real_outer", "real_n")


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> Tensor:
    """``|mu1 - mu2|^2 + tr(cov1 + cov2 - 2 (cov1^{1/2} cov2 cov1^{1/2})^{1/2})`` in float64.

    The matrix square root uses symmetric eigendecompositions, which are stable for the
    positive semi-definite covariances involved (negative round-off eigenvalues are clipped).
    """
    mu1, cov1, mu2, cov2 = (x.double() for x in (mu1, cov1, mu2, cov2))
    evals1, evecs1 = torch.linalg.eigh(cov1)
    root1 = (evecs1 * evals1.clamp_min(0).sqrt()) @ evecs1.T
    middle = root1 @ cov2 @ root1
    trace_root = torch.linalg.eigvalsh(0.5 * (middle + middle.T)).clamp_min(0).sqrt().sum()
    return (mu1 - mu2).square().sum() + torch.trace(cov1) + torch.trace(cov2) - 2.0 * trace_root


class FrechetDistance(Metric):
    """Frechet distance of features of real and generated samples (FID when the features are
    Inception-v3's; name it after its features otherwise, e.g. "FD-pixels").

    Args:
        features: Maps a batch of samples ``(B, *shape)`` long to ``(B, F)`` float; ``None`` uses the
            raw values scaled by ``1 / (vocab_size - 1)``.
        vocab_size: Number of data values (for the raw-value scaling).
        name: Name shown in tables.
        reset_real_features: Also forget the real statistics on ``reset()``.
    """

    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        features: nn.Module | None = None,
        vocab_size: int = 2,
        name: str = "FD-pixels",
        reset_real_features: bool = False,
    ) -> None:
        super().__init__()
        self.features, self.scale, self.name = features, 1.0 / max(vocab_size - 1, 1), name
        self.reset_real_features = reset_real_features
        for side in ("real", "fake"):
            self.add_state(f"{side}_sum", torch.zeros(0, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(0, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_n", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def _featurise(self, x: Tensor) -> Tensor:
        if self.features is None:
            return x.flatten(1).double() * self.scale
        with torch.no_grad():
            return self.features(x).flatten(1).double()

    def update(self, x: Tensor, real: bool) -> None:
        f = self._featurise(x)  # (B, F)
        side = "real" if real else "fake"
        s, o = getattr(self, f"{side}_sum"), getattr(self, f"{side}_outer")
        if s.numel() == 0:
            s, o = f.new_zeros(f.shape[1]), f.new_zeros(f.shape[1], f.shape[1])
        setattr(self, f"{side}_sum", s + f.sum(0))
        setattr(self, f"{side}_outer", o + f.T @ f)
        setattr(self, f"{side}_n", getattr(self, f"{side}_n") + f.shape[0])

    def _moments(self, side: str) -> tuple[Tensor, Tensor]:
        n = getattr(self, f"{side}_n")
        if n < 2:
            raise RuntimeError(f"{self.name}: need at least 2 {side} samples, got {int(n)}.")
        mu = getattr(self, f"{side}_sum") / n
        cov = (getattr(self, f"{side}_outer") - n * torch.outer(mu, mu)) / (n - 1)
        return mu, cov

    def compute(self) -> Tensor:
        return frechet_distance(*self._moments("real"), *self._moments("fake")).float()

    def reference_state(self) -> dict[str, Tensor]:
        """The real side: ``{"real_sum": (F,), "real_outer": (F, F), "real_n": ()}``, float64 sums."""
        return {k: getattr(self, k) for k in REAL_STATES}

    def load_reference_state(self, state: dict[str, Tensor]) -> None:
        """Restore the real side from ``reference_state()``'s output (e.g. read from a cache)."""
        if set(state) != set(REAL_STATES):
            raise ValueError(
                f"{self.name}: reference state has {sorted(state)}, expected {list(REAL_STATES)}."
            )
        for k in REAL_STATES:
            setattr(self, k, state[k].to(self.device, torch.float64))

    def feature_fingerprint(self) -> str:
        """Digest of the feature map: the network's structure and weights, or the raw-value scale."""
        if self.features is None:
            return canonical_sha256({"raw_values_scale": self.scale})
        return module_fingerprint(self.features)

    def reset(self) -> None:
        if self.reset_real_features:
            return super().reset()
        kept = {k: getattr(self, k) for k in REAL_STATES}
        super().reset()
        for k, v in kept.items():
            setattr(self, k, v)
