"""The new metrics plug into QualityEvaluation: built from YAML, updated with samples, out of checkpoints."""

import math

import torch
from jsonargparse import ArgumentParser
from safetensors.torch import save_file
from torch import nn

from mixdistill.data.tokenizer import train_byte_level_bpe
from mixdistill.evaluation.quality import QualityEvaluation
from mixdistill.metrics import (
    CausalLMEvaluator,
    GenerativePerplexity,
    SmallImageClassifier,
    UnigramEntropy,
    unigram_entropy,
)

YAML = """
evaluation:
  num_samples: 12
  batch_size: 5
  sample_metrics:
    - class_path: mixdistill.metrics.FrechetDistance
      init_args:
        name: FD-digits
        features:
          class_path: mixdistill.metrics.ClassifierFeatures
          init_args:
            checkpoint: {classifier}
            net:
              class_path: mixdistill.metrics.SmallImageClassifier
              init_args: {{shape: [8, 8], levels: 17, num_classes: 10, width: 8, feature_dim: 16}}
    - class_path: mixdistill.metrics.UnigramEntropy
    - class_path: mixdistill.metrics.GenerativePerplexity
      init_args:
        evaluator:
          class_path: mixdistill.metrics.TorchCausalLM
          init_args:
            tokenizer_path: {tokenizer}
            net:
              class_path: mixdistill.metrics.CausalTransformer
              init_args: {{vocab_size: 300, context_length: 8, dim: 16, depth: 1, heads: 2}}
"""


def test_yaml_builds_the_metrics_and_keeps_evaluator_weights_out_of_the_state_dict(tmp_path):
    """Invariant: every new metric is configurable from YAML inside QualityEvaluation, and neither the
    classifier's nor the evaluator LM's weights enter the state dict (so never a student checkpoint)."""
    torch.manual_seed(0)
    net = SmallImageClassifier((8, 8), 17, 10, width=8, feature_dim=16)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "clf.safetensors"))
    train_byte_level_bpe(["to be or not to be"] * 5, 300, ["<|endoftext|>"]).save(str(tmp_path / "tok.json"))
    parser = ArgumentParser()
    parser.add_argument("--evaluation", type=QualityEvaluation)
    text = YAML.format(classifier=tmp_path / "clf.safetensors", tokenizer=tmp_path / "tok.json")
    evaluation = parser.instantiate(parser.parse_string(text)).evaluation
    assert [m.name for m in evaluation.sample_metrics] == ["FD-digits", "entropy", "gen_ppl"]
    assert list(evaluation.state_dict()) == []


class RandomTokens(nn.Module):
    """A stand-in model whose samples are uniform token ids (the seed fixes them)."""

    num_classes = 0

    def sample(self, n, steps, cond=None):
        return torch.randint(5, (n, 6))


class UnigramLM(CausalLMEvaluator):
    """An evaluator whose every token has probability 1/4, so any text has perplexity 4."""

    name, version, context_length, bos_id = "uniform", "1", 4, 0

    def encode(self, texts):
        return [[1 + "abcd".index(c) for c in t] for t in texts]

    def token_logprobs(self, ids):
        return torch.full((ids.shape[0], ids.shape[1] - 1), math.log(0.25), dtype=torch.float64)

    def to(self, device):
        return self


def test_quality_row_reports_entropy_and_perplexity_of_the_same_samples():
    """Invariant: a QualityEvaluation row holds the metrics of the seeded samples it generated."""
    ppl = GenerativePerplexity(
        UnigramLM(), decode=lambda rows: ["".join("abcda"[i] for i in r) for r in rows]
    )
    ev = QualityEvaluation([2], [2], num_samples=12, batch_size=5, sample_metrics=[UnigramEntropy(), ppl])
    model = RandomTokens()
    row = ev.row("teacher", model, 2, model)
    samples, _, _ = ev.generate(model, 2)
    assert abs(row["entropy"] - float(unigram_entropy(samples).mean())) < 1e-6
    assert abs(row["gen_ppl"] - 4.0) < 1e-9 and int(ppl.tokens) == 12 * 6


class _AutocastProbe(UnigramEntropy):
    """UnigramEntropy that records whether autocast was on when it saw samples."""

    def update(self, x, real=False, **kwargs):
        self.seen_autocast = torch.is_autocast_enabled("cpu")
        super().update(x, real=real, **kwargs)


class _Sampler(nn.Module):
    """A model whose ``sample`` records whether autocast was on."""

    num_classes = 0

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.autocast: list[bool] = []

    def sample(self, b, steps, cond=None):
        self.autocast.append(torch.is_autocast_enabled("cpu"))
        return torch.randint(0, 5, (b, 6))


def test_sampling_runs_in_the_given_precision_context_and_metrics_outside_it():
    """Invariant: with use_sampling_context(autocast), every generation batch is drawn under autocast
    (as bf16-mixed training is) while the metrics score the samples outside it; by default neither is."""
    evaluation = QualityEvaluation([1], [1], num_samples=12, batch_size=5, sample_metrics=[_AutocastProbe()])
    model = _Sampler()
    evaluation.row("teacher", model, 1, model)
    assert model.autocast == [False] * 3 and evaluation.sample_metrics[0].seen_autocast is False
    evaluation.use_sampling_context(lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    evaluation.row("teacher", model, 1, model)
    assert model.autocast[3:] == [True] * 3 and evaluation.sample_metrics[0].seen_autocast is False
