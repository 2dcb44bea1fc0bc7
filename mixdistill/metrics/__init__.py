"""Quality metrics: Frechet distance, FID/KID/IS/PR, generative perplexity, entropy, exact TV."""

from mixdistill.metrics.causal_lm import CausalTransformer, train_causal_lm
from mixdistill.metrics.classifier import ClassifierFeatures, SmallImageClassifier, train_classifier
from mixdistill.metrics.entropy import UnigramEntropy, unigram_entropy
from mixdistill.metrics.evaluator_lm import CausalLMEvaluator, HFCausalLM, TorchCausalLM
from mixdistill.metrics.exact_tv import ExactDivergence
from mixdistill.metrics.fidelity import FidelityMetrics, tokens_to_uint8
from mixdistill.metrics.frechet import FrechetDistance, frechet_distance
from mixdistill.metrics.perplexity import GenerativePerplexity, chunk_tokens

__all__ = [
    "CausalLMEvaluator",
    "CausalTransformer",
    "ClassifierFeatures",
    "ExactDivergence",
    "FidelityMetrics",
    "FrechetDistance",
    "GenerativePerplexity",
    "HFCausalLM",
    "SmallImageClassifier",
    "TorchCausalLM",
    "UnigramEntropy",
    "chunk_tokens",
    "frechet_distance",
    "tokens_to_uint8",
    "train_causal_lm",
    "train_classifier",
    "unigram_entropy",
]
