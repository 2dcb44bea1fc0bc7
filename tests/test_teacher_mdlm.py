"""MDLM / SDTT teachers: the authors' checkpoint layouts load strictly and compute the published DiT.

The reference forward below is written from the published architecture (kuleshov-group/mdlm
``models/dit.py``) with plain tensor ops on the raw state dict, independently of ``mixdistill.nets.dit``.
"""

import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from mixdistill.cli import run as main
from mixdistill.data.tokenizer import load_tokenizer, train_byte_level_bpe
from mixdistill.injection import ExtraTokenInjection
from mixdistill.nets.dit import MDLMDiT
from mixdistill.sampling.loop import CallCount, sample_chain
from mixdistill.sampling.step_rule import AncestralStep, CachedAncestralStep
from mixdistill.student import MixtureStudent
from mixdistill.teachers.mdlm import MDLMTeacher
from mixdistill.testing import check_teacher

S, H, COND, BLOCKS, HEADS, LENGTH = 40, 32, 16, 2, 2, 12  # tiny sizes; V = S + 1 with the mask id
EMB = "backbone.vocab_embed.embedding"
TINY_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "tiny" / "mdlm_tiny.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def original_state(seed: int = 0, vocab: int = S + 1) -> dict[str, torch.Tensor]:
    """A random DiT state dict with MDLM's key names, shapes and order (``backbone.`` prefix)."""
    g, dh = torch.Generator().manual_seed(seed), H // HEADS
    shapes = {"vocab_embed.embedding": (vocab, H), "sigma_map.mlp.0.weight": (COND, 256)}
    shapes |= {"sigma_map.mlp.0.bias": (COND,), "sigma_map.mlp.2.weight": (COND, COND)}
    shapes |= {"sigma_map.mlp.2.bias": (COND,), "rotary_emb.inv_freq": None}
    block = {"norm1.weight": (H,), "attn_qkv.weight": (3 * H, H), "attn_out.weight": (H, H)}
    block |= {"norm2.weight": (H,), "mlp.0.weight": (4 * H, H), "mlp.0.bias": (4 * H,)}
    block |= {"mlp.2.weight": (H, 4 * H), "mlp.2.bias": (H,), "adaLN_modulation.weight": (6 * H, COND)}
    block |= {"adaLN_modulation.bias": (6 * H,)}
    shapes |= {f"blocks.{i}.{k}": v for i in range(BLOCKS) for k, v in block.items()}
    out = {"norm_final.weight": (H,), "linear.weight": (vocab, H), "linear.bias": (vocab,)}
    out |= {"adaLN_modulation.weight": (2 * H, COND), "adaLN_modulation.bias": (2 * H,)}
    shapes |= {f"output_layer.{k}": v for k, v in out.items()}
    inv_freq = 1.0 / 10000 ** (torch.arange(0, dh, 2).float() / dh)
    return {
        "backbone." + k: inv_freq if shape is None else 0.3 * torch.randn(shape, generator=g)
        for k, shape in shapes.items()
    }


def parameter_names(state: dict) -> list[str]:
    """``backbone.parameters()`` order: the state dict's order without the rotary buffer."""
    return [k for k in state if not k.endswith("inv_freq")]


def reference_forward(sd: dict, x: torch.Tensor, latent: torch.Tensor | None = None) -> torch.Tensor:
    """MDLM's DiT with plain ops: ``x`` (B, L) ids -> (B, L, V) logits at sigma = 0."""
    sd = {k.removeprefix("backbone."): v.double() for k, v in sd.items()}
    b, length = x.shape
    h = sd["vocab_embed.embedding"][x]
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / half)
    feats = torch.cat([torch.cos(0 * freqs), torch.sin(0 * freqs)])[None].expand(b, -1)  # sigma = 0
    c = F.silu(feats @ sd["sigma_map.mlp.0.weight"].T + sd["sigma_map.mlp.0.bias"])
    c = F.silu(c @ sd["sigma_map.mlp.2.weight"].T + sd["sigma_map.mlp.2.bias"])
    angle = torch.arange(length, dtype=torch.float64)[:, None] * sd["rotary_emb.inv_freq"][None]  # (L, Dh/2)
    if latent is not None:  # the extra token: appended last, not rotated
        h = torch.cat([h, latent.double()[:, None]], 1)
        angle = torch.cat([angle, torch.zeros_like(angle[:1])])

    def norm(z, w):
        mu, var = z.mean(-1, keepdim=True), z.var(-1, unbiased=False, keepdim=True)
        return (z - mu) / torch.sqrt(var + 1e-5) * w

    def rot(z):  # flash-attn non-interleaved: feature i pairs with i + Dh/2
        z1, z2 = z.chunk(2, -1)
        cos, sin = angle.cos(), angle.sin()
        return torch.cat([z1 * cos - z2 * sin, z2 * cos + z1 * sin], -1)

    def gelu(z):
        return 0.5 * z * (1 + torch.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))

    n = h.shape[1]
    for i in range(BLOCKS):
        p = {k.removeprefix(f"blocks.{i}."): v for k, v in sd.items() if k.startswith(f"blocks.{i}.")}
        mod = (c @ p["adaLN_modulation.weight"].T + p["adaLN_modulation.bias"])[:, None].chunk(6, -1)
        z = norm(h, p["norm1.weight"]) * (1 + mod[1]) + mod[0]
        q, k, v = (z @ p["attn_qkv.weight"].T).view(b, n, 3, HEADS, -1).unbind(2)  # (B, n, heads, Dh)
        q, k = rot(q.transpose(1, 2)), rot(k.transpose(1, 2))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1) @ v.transpose(1, 2)
        h = h + mod[2] * (att.transpose(1, 2).reshape(b, n, H) @ p["attn_out.weight"].T)
        z = norm(h, p["norm2.weight"]) * (1 + mod[4]) + mod[3]
        z = gelu(z @ p["mlp.0.weight"].T + p["mlp.0.bias"]) @ p["mlp.2.weight"].T + p["mlp.2.bias"]
        h = h + mod[5] * z
    shift, scale = (
        c @ sd["output_layer.adaLN_modulation.weight"].T + sd["output_layer.adaLN_modulation.bias"]
    )[:, None].chunk(2, -1)
    z = norm(h[:, :length], sd["output_layer.norm_final.weight"]) * (1 + scale) + shift
    return z @ sd["output_layer.linear.weight"].T + sd["output_layer.linear.bias"]


def reference_subs(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """MDLM's SUBS: mask logit -1e6, log-softmax, unmasked rows pinned to their token."""
    logits = logits.clone()
    logits[:, :, S] += -1e6
    logits = logits - torch.logsumexp(logits, -1, keepdim=True)
    unmasked = x != S
    logits[unmasked] = -1e6
    logits[unmasked, x[unmasked]] = 0
    return logits


def write_hf_dir(root: Path, state: dict, config: dict | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    save_file(state, str(root / "model.safetensors"))
    cfg = {"hidden_dim": H, "cond_dim": COND, "n_blocks": BLOCKS, "n_heads": HEADS, "model_length": LENGTH}
    cfg |= {"vocab_size": S + 1, "dropout": 0.1, "time_conditioning": False, "model_type": "mdlm"}
    (root / "config.json").write_text(json.dumps(config or cfg))
    return root


class HydraConfig:
    """Stands in for the OmegaConf config and tokenizer a real MDLM .ckpt pickles as hyper-parameters."""

    def __init__(self):
        self.model = {"hidden_size": H}


def write_lightning_ckpt(path: Path, state: dict, shadow: list | None) -> Path:
    ckpt = {"state_dict": state, "hyper_parameters": {"config": HydraConfig()}, "global_step": 7}
    if shadow is not None:
        ckpt["ema"] = {"decay": 0.9999, "num_updates": 7, "shadow_params": shadow}
    torch.save(ckpt, path)
    return path


def masked_input(seed: int = 1, batch: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, S, (batch, LENGTH), generator=g)
    return x.masked_fill(torch.rand(batch, LENGTH, generator=g) < 0.6, S)  # (B, L), ~60% masked


def test_published_small_model_has_169_6M_parameters():
    """Invariant: MDLM small (H768, 12 blocks, 12 heads, V 50258) has 169,627,218 parameters,
    92,430,930 without the two vocabulary matrices (TEACHERS.md: 169.6M / 92.4M); medium 424.5M."""
    with torch.device("meta"):
        small, medium = MDLMDiT.sized("small"), MDLMDiT.sized("medium")
    total = sum(p.numel() for p in small.parameters())
    vocab = small.vocab_embed.embedding.numel() + small.output_layer.linear.weight.numel()
    assert (total, total - vocab) == (169_627_218, 92_430_930)
    assert sum(p.numel() for p in medium.parameters()) == 424_477_010


def test_hf_directory_loads_strictly_and_matches_the_reference_forward(tmp_path):
    """Invariant: a model.safetensors + config.json directory in the HF layout loads with no missing or
    unexpected keys into a DiT of its sizes, and the teacher's logits are the published DiT's with SUBS."""
    state = original_state()
    teacher = MDLMTeacher(checkpoint=str(write_hf_dir(tmp_path / "hf", state)), vocab_size=S).freeze()
    assert teacher.shape == (LENGTH,) and teacher.vocab_size == S
    loaded = teacher.backbone.state_dict()
    assert loaded.keys() == {k.removeprefix("backbone.") for k in state}
    assert all(torch.equal(loaded[k.removeprefix("backbone.")], v) for k, v in state.items())
    x = masked_input()
    t = torch.rand(3)  # ignored: no time conditioning
    ref = reference_forward(state, x)
    got = teacher.backbone(x, teacher.process.schedule.sigma(t)).double()
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    logp = teacher.log_marginal(x, t).double()  # (B, L, S)
    torch.testing.assert_close(logp.exp(), reference_subs(ref, x)[..., :S].exp(), atol=1e-5, rtol=1e-4)
    # MDLM/SDTT sample their last step too (argmax only for tokens still masked at t = 1e-5).
    assert isinstance(teacher.step_rule, CachedAncestralStep) and not teacher.step_rule.argmax_last


def test_lightning_ckpt_prefers_ema_weights(tmp_path):
    """Invariant: a Lightning .ckpt (state_dict backbone.*, ema.shadow_params in parameter order, foreign
    hyper-parameter objects) loads its EMA weights by default and its raw weights with use_ema=False."""
    raw, ema = original_state(0), original_state(1)
    shadow = [ema[k] for k in parameter_names(ema)]
    path = write_lightning_ckpt(tmp_path / "mdlm.ckpt", raw, shadow)
    with_ema = MDLMTeacher(checkpoint=str(path), vocab_size=S, seq_len=LENGTH).backbone.state_dict()
    no_ema = MDLMTeacher(checkpoint=str(path), vocab_size=S, use_ema=False, seq_len=LENGTH).freeze()
    for k in parameter_names(raw):
        assert torch.equal(with_ema[k.removeprefix("backbone.")], ema[k])
        assert torch.equal(no_ema.backbone.state_dict()[k.removeprefix("backbone.")], raw[k])
    x = masked_input()
    ref = reference_forward(raw, x)
    torch.testing.assert_close(no_ema.backbone(x, torch.zeros(3)).double(), ref, atol=1e-4, rtol=1e-4)


def test_sdtt_layouts_load_and_pass_check_teacher(tmp_path):
    """Invariant: SDTT's layouts load (a hub branch whose config.json is its training config with sizes
    under "model"; a .ckpt of a student of the HF MDLM, keys backbone.backbone.*) and the teacher
    passes check_teacher with the extra-token student."""
    state = original_state()
    cfg = {"model": {"hidden_size": H, "n_heads": HEADS, "length": 24}, "time_conditioning": False}
    teacher = MDLMTeacher(checkpoint=str(write_hf_dir(tmp_path / "sdtt", state, cfg)), vocab_size=S)
    assert teacher.shape == (24,) and torch.equal(teacher.backbone.vocab_embed.embedding, state[EMB])
    torch.save({"state_dict": {"backbone." + k: v for k, v in state.items()}}, tmp_path / "sdtt.ckpt")
    teacher = MDLMTeacher(checkpoint=str(tmp_path / "sdtt.ckpt"), vocab_size=S, seq_len=LENGTH)
    assert torch.equal(teacher.backbone.vocab_embed.embedding, state[EMB])
    report = check_teacher(teacher, ExtraTokenInjection(module="backbone", hidden=16))
    assert all(v == "ok" for v in report.checks.values()) and math.isfinite(report.init_max_abs_diff)


@pytest.mark.parametrize("fault", ["missing", "unexpected", "vocab", "non_tensor", "ema_length"])
def test_malformed_checkpoints_are_clear_errors(tmp_path, fault):
    """Invariant: a missing or extra key, a wrong vocabulary, a non-tensor pickled object or an EMA list
    that does not fit is a ValueError naming the file and the offending keys; no pickled code runs."""
    state = original_state()
    shadow = None
    marker = tmp_path / "pwned"
    if fault == "missing":
        del state["backbone.blocks.1.attn_out.weight"]
        match = "missing.*blocks.1.attn_out.weight"
    elif fault == "unexpected":
        state["backbone.blocks.0.extra.weight"] = torch.zeros(1)
        match = "unexpected.*blocks.0.extra.weight"
    elif fault == "vocab":
        state = original_state(vocab=S + 2)
        match = f"vocabulary of {S + 2}.*vocab_size={S}"
    elif fault == "non_tensor":
        state["backbone.blocks.0.norm1.weight"] = RunsCode(marker)
        match = "blocks.0.norm1.weight.*not tensors"
    else:
        shadow = [state[k] for k in parameter_names(state)][:-1]
        match = "shadow_params"
    path = write_lightning_ckpt(tmp_path / "bad.ckpt", state, shadow)
    with pytest.raises(ValueError, match=match) as err:
        MDLMTeacher(checkpoint=str(path), vocab_size=S)
    assert "bad.ckpt" in str(err.value)
    assert not marker.exists(), "unpickling must not run the object's code"


class RunsCode:
    """A pickled object whose loading would create a file if unpickling ran foreign code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_mixture_student_with_extra_token_matches_reference(tmp_path):
    """Invariant: the student (lambda as token L, no rotary, dropped at the output) computes the
    reference DiT with that extra token, gives finite (B, n, D, S) logits, and differs across lambdas."""
    teacher = MDLMTeacher(checkpoint=str(write_hf_dir(tmp_path / "hf", original_state())), vocab_size=S)
    student = MixtureStudent.from_teacher(teacher.freeze(), ExtraTokenInjection(module="backbone", hidden=16))
    student.eval()
    x, lam = masked_input(batch=2), torch.rand(2, 4, 1)
    logits = student.denoise_latent(x, torch.rand(2), None, lam)
    assert logits.shape == (2, 4, LENGTH, S) and torch.isfinite(logits).all()
    token = student.injection.embedding(lam[:, 0])  # (B, H)
    ref = reference_forward(student.base.backbone.state_dict(), x, latent=token.detach())
    got = student.network_logits(x, torch.zeros(2), lam=lam[:, 0]).double()
    torch.testing.assert_close(got, ref[..., :S], atol=1e-4, rtol=1e-4)
    masked = x == S
    assert (logits[:, 0] - logits[:, 1])[masked].abs().max() > 1e-4


def test_cached_sampler_reuses_rows_and_equals_the_uncached_sampler(tmp_path):
    """Invariant: for MDLM's time-independent denoiser the cached sampler reuses the logits of rows that
    did not change and, with the same random stream, returns exactly the uncached sampler's samples."""
    teacher = MDLMTeacher(
        checkpoint=str(write_hf_dir(tmp_path / "hf", original_state())), vocab_size=S
    ).freeze()
    out, calls = {}, {}
    for name, rule in (("plain", AncestralStep()), ("cached", CachedAncestralStep())):
        teacher.step_rule, calls[name] = rule, CallCount()
        torch.manual_seed(0)
        out[name] = sample_chain(teacher, 6, 32, calls=calls[name])
    assert torch.equal(out["plain"], out["cached"])
    assert calls["cached"].reused > 0 and calls["cached"].computed + calls["cached"].reused == 6 * 32
    assert calls["plain"].reused == 0 and (out["cached"] < S).all()


def test_gpt2_tokenizer_files_decode_and_keep_endoftext_whole(tmp_path):
    """Invariant: a vocab.json + merges.txt directory loads as GPT-2's tokenizer does: text round-trips
    and <|endoftext|> is one token with its vocab.json id."""
    trained = train_byte_level_bpe(["the cat sat on the mat", "a dog"], 300, ["<|endoftext|>"])
    trained.model.save(str(tmp_path))
    tok = load_tokenizer(str(tmp_path))
    eos = tok.token_to_id("<|endoftext|>")
    ids = tok.encode("the cat<|endoftext|>a dog").ids
    assert eos in ids and tok.get_vocab_size() == trained.get_vocab_size()
    assert tok.decode(ids, skip_special_tokens=False) == "the cat<|endoftext|>a dog"


def test_tiny_config_fits_and_tests_through_the_cli(tmp_path):
    """Invariant: configs/tiny/mdlm_tiny.yaml fits 2 steps on a local text file and `mixdistill test`
    writes a teacher/student table with finite entropies."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"line {i} of a small corpus about cats and mats" for i in range(200)))
    args = [
        "--config",
        str(TINY_CONFIG),
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.max_steps=2",
        "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--data.init_args.files=[{corpus}]",
        f"--data.init_args.cache_dir={tmp_path / 'cache'}",
    ]
    cli = main(["fit", *args])
    assert cli.trainer.global_step == 2
    main(["test", *args, f"--ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}"])
    rows = json.loads(next(tmp_path.rglob("quality.json")).read_text())["rows"]
    assert [(r["model"], r["steps"]) for r in rows] == [("teacher", 2), ("teacher", 4), ("student", 2)]
    assert all(math.isfinite(r["entropy"]) for r in rows)
