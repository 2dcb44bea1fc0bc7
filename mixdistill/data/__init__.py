"""LightningDataModules serving ``{"x0": LongTensor (B, *shape), "cond": LongTensor (B,)}`` batches."""

from mixdistill.data.base import Arrays, TensorDataModule
from mixdistill.data.digits import DigitsData
from mixdistill.data.idx_images import IdxImageData
from mixdistill.data.synthetic import PrototypeTable, SyntheticData, TableSpec
from mixdistill.data.text import TextData
from mixdistill.data.token_grid import TokenGridData

__all__ = [
    "Arrays",
    "DigitsData",
    "IdxImageData",
    "PrototypeTable",
    "SyntheticData",
    "TableSpec",
    "TensorDataModule",
    "TextData",
    "TokenGridData",
]
