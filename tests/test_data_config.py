import lightning as L
import numpy as np
import pytest
import torch
from jsonargparse import ArgumentParser

from mixdistill.data import DigitsData, IdxImageData, SyntheticData, TextData, TokenGridData


def parse(config):
    parser = ArgumentParser()
    parser.add_subclass_arguments(L.LightningDataModule, "data")
    return parser.instantiate(parser.parse_object({"data": config})).data


def test_synthetic_from_yaml_spec():
    dm = parse(
        {
            "class_path": "mixdistill.data.SyntheticData",
            "init_args": {
                "table": {"class_path": "mixdistill.data.PrototypeTable", "init_args": {"num_dims": 3}},
                "num_samples": 50,
            },
        }
    )
    assert isinstance(dm, SyntheticData) and dm.shape == (3,) and dm.vocab_size == 4


@pytest.mark.parametrize(
    ("cls", "init_args"),
    [
        (SyntheticData, {"table": "table.npy"}),
        (DigitsData, {"levels": 8}),
        (IdxImageData, {"root": "somewhere", "levels": 16}),
        (TokenGridData, {"path": "codes.safetensors", "vocab_size": 1024, "key": "codes"}),
        (TextData, {"files": ["a.txt"], "seq_len": 64, "sample_by": "paragraph"}),
    ],
)
def test_every_datamodule_parses(cls, init_args):
    # Construction reads nothing; files are read at setup (or when a data-dependent property is asked).
    dm = parse({"class_path": f"mixdistill.data.{cls.__name__}", "init_args": init_args})
    assert type(dm) is cls


class TinyModel(L.LightningModule):
    def __init__(self, vocab_size):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab_size, 1)

    def training_step(self, batch, _):
        return self.emb(batch["x0"]).mean()

    def validation_step(self, batch, _):
        self.log("val", self.emb(batch["x0"]).mean())

    def test_step(self, batch, _):
        assert batch["x0"].shape[1:] == (2, 2)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_runs_in_a_trainer(tmp_path):
    np.save(tmp_path / "codes.npy", np.random.default_rng(0).integers(0, 9, (40, 2, 2)))
    dm = TokenGridData(str(tmp_path / "codes.npy"), 9, batch_size=8)
    trainer = L.Trainer(
        fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(TinyModel(dm.vocab_size), datamodule=dm)
    trainer.test(TinyModel(dm.vocab_size), datamodule=dm, verbose=False)
