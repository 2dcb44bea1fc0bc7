"""Rebuild the weights shipped in ``mixdistill/assets`` (``make assets``).

* ``digits_teacher.safetensors``: the quickstart teacher, trained with the ``mixdistill`` CLI from
  ``configs/teacher_digits.yaml`` (the checkpoint with the best held-out loss), network weights only.
* ``digits_classifier.safetensors``: the classifier whose features give the ``FD-digits`` metric,
  trained on the train split of the quickstart's ``DigitsData`` split.
* ``shakespeare_tokenizer.json``: the text example's byte-level BPE (2048 tokens), trained on the
  train split of ``data/shakespeare/plays.txt`` (``make text-data`` fetches the corpus).
* ``shakespeare_teacher.safetensors``: the text example's masked-diffusion transformer, trained with
  the ``mixdistill`` CLI from ``configs/teacher_text.yaml`` (best held-out loss), network weights only.
* ``shakespeare_evaluator.safetensors``: the causal LM that scores generated text (generative
  perplexity), trained on the plays held out from the teacher (``data/shakespeare/evaluator.txt``).
* ``shakespeare_words.safetensors``: the word and word-bigram counts of those held-out plays, the
  data of the word-level evaluators (``WordPerplexity``, ``NonWordRate``); counted, not trained.
* ``fashion_vq.safetensors``: the image-token example's VQ-VAE (28 x 28 -> 7 x 7 codes of 256),
  trained on the train split of Fashion-MNIST (``make image-data`` says how to install it).
* ``fashion_classifier.safetensors``: the classifier (28 x 28 pixels, 256 levels) whose features and
  predictions give the image-token example's ``FD-fashion`` and class accuracy, trained on the train
  split of Fashion-MNIST.

The same hardware and library versions reproduce the files bit for bit.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from mixdistill import tokenize_images
from mixdistill.assets import ASSETS as ASSET_DIR
from mixdistill.cli import run as cli_run
from mixdistill.data import DigitsData, TextData
from mixdistill.data.idx_images import IdxImageData
from mixdistill.data.shakespeare import EVALUATOR, PLAYS
from mixdistill.data.shakespeare import main as fetch_shakespeare
from mixdistill.metrics.causal_lm import CausalTransformer, next_token_loss, train_causal_lm
from mixdistill.metrics.classifier import train_classifier
from mixdistill.metrics.word_counts import WordCounts
from mixdistill.nets.vq_tokenizer import VQTokenizerSizes
from mixdistill.vq_training import reconstruction_report, save_tokenizer, train_vq_tokenizer

#: Where ``make text-data`` puts the Shakespeare corpus (the configs name the same folder).
CORPUS = Path("data/shakespeare")
#: The image-token example's tokens (``make image-data``; configs/image_tokens.yaml names the same file).
FASHION_TOKENS = Path("data/fashion_tokens.npz")
#: The text example's tokenizer and evaluator LM settings (configs/text.yaml repeats them).
TEXT_VOCAB, EVALUATOR_CONTEXT = 2048, 128
EVALUATOR_NET = {"dim": 128, "depth": 4, "heads": 4}


def export(checkpoint: str | Path, prefix: str, out: Path) -> Path:
    """Write the tensors under ``prefix`` of a Lightning checkpoint to ``out`` (prefix removed)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    tensors = {k[len(prefix) :]: v.contiguous() for k, v in state.items() if k.startswith(prefix)}
    if not tensors:
        raise ValueError(f"no keys with prefix '{prefix}' in {checkpoint}.")
    save_file(tensors, str(out))
    return out


def train_teacher(config: str, out: Path) -> Path:
    """``mixdistill fit --config config`` (a TeacherModule), then export the kept checkpoint's network."""
    cli = cli_run(["fit", "--config", config, "--overwrite=true"])  # a rebuild retrains into the same folder
    callback = cli.trainer.checkpoint_callback
    return export(callback.best_model_path or callback.last_model_path, "model.net.", out)


def digits_teacher(out: Path) -> Path:
    """Train the quickstart teacher with the CLI and export its network."""
    return train_teacher("configs/teacher_digits.yaml", out)


def digits_classifier(out: Path) -> Path:
    """Train the FD-digits feature classifier on the quickstart's train split."""
    data = DigitsData(levels=17, batch_size=64, val_fraction=0.1, test_fraction=0.2)
    _, accuracy = train_classifier(data, path=str(out))
    print(f"digits classifier validation accuracy: {accuracy:.3f}")
    return out


def corpus_file(name: str) -> str:
    """A file of the Shakespeare corpus, fetched first when it is missing."""
    if not (CORPUS / name).is_file():
        fetch_shakespeare([str(CORPUS)])
    return str(CORPUS / name)


def shakespeare_tokenizer(out: Path) -> Path:
    """Train the text example's byte-level BPE on the train split of the teacher's corpus."""
    data = TextData(
        files=[corpus_file(PLAYS)],
        sample_by="paragraph",
        train_tokenizer_vocab=TEXT_VOCAB,
        val_fraction=0.02,
        test_fraction=0.02,
    )
    data.tokenizer.save(str(out))
    return out


def shakespeare_teacher(out: Path) -> Path:
    """Train the text example's teacher with the CLI and export its network."""
    corpus_file(PLAYS)
    return train_teacher("configs/teacher_text.yaml", out)


def shakespeare_evaluator(out: Path, steps: int = 1500) -> Path:
    """Train the evaluator LM on the held-out plays; prints its perplexity on their val split."""
    data = TextData(
        files=[corpus_file(EVALUATOR)],
        sample_by="paragraph",
        tokenizer="asset:shakespeare_tokenizer.json",
        seq_len=EVALUATOR_CONTEXT,
        val_fraction=0.05,
    )
    splits = data.packed()
    torch.manual_seed(0)
    net = CausalTransformer(TEXT_VOCAB, EVALUATOR_CONTEXT, dropout=0.1, **EVALUATOR_NET)
    losses = train_causal_lm(net, splits["train"], steps=steps, batch_size=32, lr=1e-3)
    with torch.no_grad():
        val = next_token_loss(net, splits["val"]).item()
    print(f"evaluator LM: train loss {sum(losses[-50:]) / 50:.3f}, held-out perplexity {math.exp(val):.2f}")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out))
    return out


def shakespeare_words(out: Path) -> Path:
    """Count the words and word bigrams of the held-out plays (the word-level evaluators' data)."""
    return WordCounts.from_files([corpus_file(EVALUATOR)]).save(out)


def fashion_vq(out: Path, steps: int = 3000) -> Path:
    """Train the image-token example's VQ tokenizer; prints its held-out reconstruction report."""
    data = IdxImageData(levels=256)
    splits = data.splits
    model = train_vq_tokenizer(splits["train"].x0, VQTokenizerSizes(), steps=steps)
    print("fashion VQ tokenizer on the test images:", reconstruction_report(model, splits["test"].x0))
    return save_tokenizer(model, out)


def fashion_classifier(out: Path) -> Path:
    """Train the image-token example's feature classifier on Fashion-MNIST pixels; prints its accuracy."""
    data = IdxImageData(levels=256, batch_size=128)
    _, accuracy = train_classifier(data, path=str(out), epochs=5)
    print(f"fashion classifier validation accuracy: {accuracy:.3f}")
    return out


def fashion_teacher(out: Path) -> Path:
    """Train the image-token example's MaskGIT-style teacher with the CLI and export its network.

    Encodes Fashion-MNIST with the shipped tokenizer first when ``data/fashion_tokens.npz`` is missing
    (what ``make image-data`` does).
    """
    if not FASHION_TOKENS.is_file():
        root = Path(IdxImageData().root)
        tokenize_images.main(
            ["encode", "--tokenizer", "asset:fashion_vq.safetensors", "--out", str(FASHION_TOKENS)]
            + ["--idx", str(root / "train-images-idx3-ubyte.gz")]
            + ["--labels", str(root / "train-labels-idx1-ubyte.gz")]
        )
    return train_teacher("configs/teacher_image_tokens.yaml", out)


ASSETS: dict[str, Callable[[Path], Path]] = {
    "digits_teacher.safetensors": digits_teacher,
    "digits_classifier.safetensors": digits_classifier,
    "shakespeare_tokenizer.json": shakespeare_tokenizer,
    "shakespeare_teacher.safetensors": shakespeare_teacher,
    "shakespeare_evaluator.safetensors": shakespeare_evaluator,
    "shakespeare_words.safetensors": shakespeare_words,
    "fashion_vq.safetensors": fashion_vq,
    "fashion_maskgit_teacher.safetensors": fashion_teacher,
    "fashion_classifier.safetensors": fashion_classifier,
}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(ASSETS), help=f"assets (default: {list(ASSETS)})")
    for name in parser.parse_args().names:
        print("wrote", ASSETS[name](ASSET_DIR / name))
