"""GenerativePerplexity: float64 NLL under an evaluator LM after a fixed retokenisation and chunking."""

import math
import sys
import types

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from mixdistill.data.tokenizer import train_byte_level_bpe
from mixdistill.metrics import (
    CausalLMEvaluator,
    CausalTransformer,
    GenerativePerplexity,
    HFCausalLM,
    TorchCausalLM,
    chunk_tokens,
)
from mixdistill.metrics.causal_lm import train_causal_lm

# A bigram "LM" over the evaluator tokens a=0, b=1, c=2, d=3 and BOS=4: P[prev, next].
P = torch.tensor(
    [
        [0.1, 0.6, 0.1, 0.1, 0.1],
        [0.2, 0.2, 0.3, 0.2, 0.1],
        [0.05, 0.05, 0.05, 0.8, 0.05],
        [0.4, 0.3, 0.1, 0.1, 0.1],
        [0.7, 0.1, 0.1, 0.05, 0.05],
    ],
    dtype=torch.float64,
)
# The diffusion model's tokens decode to these strings; token 4 becomes two evaluator tokens.
PIECES = ["a", "b", "c", "d", "ab"]


class BigramEvaluator(CausalLMEvaluator):
    name, version, bos_id = "bigram", "1", 4

    def __init__(self, context_length: int, dtype: torch.dtype = torch.float64) -> None:
        self.context_length, self.dtype = context_length, dtype

    def encode(self, texts):
        return [["abcd".index(ch) for ch in t] for t in texts]

    def token_logprobs(self, ids):
        return P.log()[ids[:, :-1], ids[:, 1:]].to(self.dtype)


def decode(rows):
    return ["".join(PIECES[i] for i in row) for row in rows]


def ppl_by_hand(pairs: list[tuple[int, int]]) -> float:
    return math.exp(-math.fsum(math.log(float(P[a, b])) for a, b in pairs) / len(pairs))


def test_chunks_hold_context_length_tokens_with_bos_first():
    """Invariant: chunks are [BOS] + consecutive runs of context_length - 1 tokens covering ids once."""
    assert chunk_tokens([0, 1, 2, 3, 0], 3, 9) == [[9, 0, 1], [9, 2, 3], [9, 0]]
    assert chunk_tokens([0, 1], 8, 9) == [[9, 0, 1]]
    assert chunk_tokens([], 8, 9) == []


def test_perplexity_equals_the_hand_computation_with_retokenisation_and_chunking():
    """Invariant: ppl = exp(mean over all evaluator tokens of -log p), each chunk's first token given BOS.

    Samples [0, 4, 2] -> "aabc" -> a a b c and [3, 3] -> "dd" -> d d; with context_length 3 the chunks
    are [BOS a a], [BOS b c], [BOS d d].
    """
    m = GenerativePerplexity(BigramEvaluator(context_length=3), decode=decode)
    m.update(torch.tensor([[1, 1, 1]]), real=True)  # reference batches are ignored
    m.update(torch.tensor([[0, 4, 2]]), real=False)
    m.update(torch.tensor([[3, 3]]), real=False)
    pairs = [(4, 0), (0, 0), (4, 1), (1, 2), (4, 3), (3, 3)]
    assert m.name == "gen_ppl" and not m.higher_is_better
    assert m.nll_sum.dtype == torch.float64 and int(m.tokens) == 6
    assert math.isclose(
        float(m.nll_sum), -math.fsum(math.log(float(P[a, b])) for a, b in pairs), rel_tol=1e-14
    )
    assert math.isclose(float(m.compute()), ppl_by_hand(pairs), rel_tol=1e-6)

    # Without chunking (a long context) every token but the first is conditioned on its predecessor.
    long = GenerativePerplexity(BigramEvaluator(context_length=64), decode=decode, batch_size=1)
    long.update(torch.tensor([[0, 4, 2]]), real=False)
    assert math.isclose(float(long.compute()), ppl_by_hand([(4, 0), (0, 0), (0, 1), (1, 2)]), rel_tol=1e-6)


def test_batches_of_chunks_of_unequal_length_score_the_same():
    """Invariant: the padding of short chunks and the evaluator batch size do not change the result."""
    x = torch.tensor([[0, 1, 2, 3, 4, 0, 1], [2, 2, 4, 4, 3, 1, 0]])
    results = []
    for bs in (1, 3, 100):
        m = GenerativePerplexity(BigramEvaluator(context_length=4), decode=decode, batch_size=bs)
        m.update(x, real=False)
        results.append((float(m.nll_sum), int(m.tokens)))
    assert results[0][1] == 17  # "abcdabab" and "ccababdba": 8 + 9 evaluator tokens
    assert all(math.isclose(r[0], results[0][0], rel_tol=1e-14) and r[1] == 17 for r in results)


def test_unset_decode_and_non_float64_evaluators_are_errors():
    """Invariant: no silent fallback: missing decode and float32 log-probabilities raise clearly."""
    with pytest.raises(RuntimeError, match="decode is unset"):
        GenerativePerplexity(BigramEvaluator(4)).update(torch.tensor([[0, 1]]), real=False)
    m = GenerativePerplexity(BigramEvaluator(4, dtype=torch.float32), decode=decode)
    with pytest.raises(TypeError, match="float64"):
        m.update(torch.tensor([[0, 1]]), real=False)


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory):
    docs = ["to be or not to be", "that is the question", "whether tis nobler in the mind"] * 5
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_byte_level_bpe(docs, 300, ["<|endoftext|>"]).save(str(path))
    return str(path)


def test_causal_transformer_is_causal_and_trains():
    """Invariant: logits at position i do not depend on tokens after i; training lowers the NLL."""
    torch.manual_seed(0)
    net = CausalTransformer(vocab_size=11, context_length=8, dim=16, depth=1, heads=2).eval()
    ids = torch.randint(11, (2, 8))
    changed = ids.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 11
    assert torch.allclose(net(ids)[:, :5], net(changed)[:, :5], atol=1e-6)
    assert not torch.allclose(net(ids)[:, 5:], net(changed)[:, 5:])
    with pytest.raises(ValueError, match="context_length=8"):
        net(torch.zeros(1, 9, dtype=torch.long))
    losses = train_causal_lm(net, torch.arange(8).repeat(16, 1) % 11, steps=30, batch_size=8, lr=1e-2)
    assert losses[-1] < 0.5 * losses[0]


def test_torch_causal_lm_scores_its_network_in_float64(tokenizer_file, tmp_path):
    """Invariant: gen_ppl under TorchCausalLM = exp(mean NLL) from the network's own log-softmax."""
    torch.manual_seed(0)
    net = CausalTransformer(vocab_size=300, context_length=5, dim=16, depth=1, heads=2)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "lm.safetensors"))
    fresh = CausalTransformer(vocab_size=300, context_length=5, dim=16, depth=1, heads=2)
    ev = TorchCausalLM(fresh, tokenizer_file, checkpoint=str(tmp_path / "lm.safetensors"))
    assert ev.version == TorchCausalLM(net, tokenizer_file).version and ev.context_length == 5
    texts = ["to be or not to be, that is the question"]
    ids = ev.encode(texts)[0]
    chunks = chunk_tokens(ids, 5, ev.bos_id)
    nll = 0.0
    for c in chunks:
        logp = torch.log_softmax(net(torch.tensor([c])).double(), -1)[0]  # (C, V)
        nll -= sum(float(logp[i, c[i + 1]]) for i in range(len(c) - 1))
    m = GenerativePerplexity(ev, decode=lambda rows: texts * len(rows))
    m.update(torch.zeros(1, 4, dtype=torch.long), real=False)
    assert int(m.tokens) == len(ids) and len(chunks) > 1
    assert math.isclose(float(m.compute()), math.exp(nll / len(ids)), rel_tol=1e-5)
    with pytest.raises(ValueError, match="bos_token='<s>'"):
        TorchCausalLM(net, tokenizer_file, bos_token="<s>")


def test_hf_causal_lm_errors_name_the_fix(tmp_path, monkeypatch):
    """Invariant: a missing directory names the path and how to download; missing transformers says pip."""
    with pytest.raises(FileNotFoundError, match="huggingface-cli download gpt2-large"):
        HFCausalLM(str(tmp_path / "gpt2-large"))
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(ImportError, match="pip install transformers"):
        HFCausalLM(str(tmp_path))


class FakeHFModel(nn.Module):
    """Stands in for a transformers model: ``model(input_ids=...).logits`` from a bigram table."""

    config = types.SimpleNamespace(n_positions=3)

    def forward(self, input_ids):
        return types.SimpleNamespace(logits=P.log()[input_ids].float())  # (B, L, V)


class FakeTokenizer:
    bos_token_id, eos_token_id = None, 4

    def __call__(self, texts, add_special_tokens=True):
        assert add_special_tokens is False
        return {"input_ids": [["abcd".index(ch) for ch in t] for t in texts]}


def fake_transformers(calls: list) -> types.ModuleType:
    def loader(obj):
        def from_pretrained(path, local_files_only=False):
            calls.append((path, local_files_only))
            return obj

        return types.SimpleNamespace(from_pretrained=from_pretrained)

    module = types.ModuleType("transformers")
    module.__version__ = "0.0-fake"
    module.AutoTokenizer, module.AutoModelForCausalLM = loader(FakeTokenizer()), loader(FakeHFModel())
    return module


def test_hf_causal_lm_loads_locally_and_scores_like_the_bigram(tmp_path, monkeypatch):
    """Invariant: HFCausalLM loads with local_files_only, takes n_positions and EOS-as-BOS from the model,
    and gives the same perplexity as the equivalent hand-written evaluator."""
    calls: list = []
    monkeypatch.setitem(sys.modules, "transformers", fake_transformers(calls))
    ev = HFCausalLM(str(tmp_path))
    assert calls == [(str(tmp_path), True)] * 2
    assert (ev.context_length, ev.bos_id, ev.name) == (3, 4, tmp_path.name)
    assert ev.version.startswith("transformers-0.0-fake:")
    x = torch.tensor([[0, 4, 2], [3, 3, 1]])
    results = []
    for evaluator in (ev, BigramEvaluator(context_length=3)):
        m = GenerativePerplexity(evaluator, decode=decode)
        m.update(x, real=False)
        results.append(float(m.compute()))
    assert math.isclose(results[0], results[1], rel_tol=1e-6)
