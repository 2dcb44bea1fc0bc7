"""Stand-ins for torch-fidelity's feature extractors, shared by the fidelity and reference-cache tests."""

from torch import nn


class PixelFeatures(nn.Module):
    """The first two pixel values of channel 0 as features, for every requested layer; counts calls."""

    def __init__(self, layers):
        super().__init__()
        self.features_list, self.calls = layers, 0

    def forward(self, x):
        self.calls += 1
        f = x.float().flatten(1)[:, :2]  # (B, 2)
        return tuple(f for _ in self.features_list)
