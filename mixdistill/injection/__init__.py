"""Lambda injections: how a mixture student's extra input enters the teacher's network."""

from mixdistill.injection.additive import AdditiveInjection
from mixdistill.injection.base import LatentEmbedding, LatentInjection
from mixdistill.injection.extra_token import ExtraTokenInjection, LatentTokenBackbone
from mixdistill.injection.resblock import ResBlockInjection

__all__ = [
    "AdditiveInjection",
    "ExtraTokenInjection",
    "LatentEmbedding",
    "LatentInjection",
    "LatentTokenBackbone",
    "ResBlockInjection",
]
