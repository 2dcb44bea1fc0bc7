"""tau-LDR teacher: the published U-Net and checkpoint layout, its samplers, the ResBlock lambda path."""

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mixdistill.cli import run as main
from mixdistill.injection import ResBlockInjection
from mixdistill.nets.tauldr_unet import TauLDRUNet
from mixdistill.nets.truncated_logistic import truncated_logistic_logits
from mixdistill.processes.gaussian import GaussianRateProcess
from mixdistill.sampling.tau_leaping import (
    MinTimeAncestralStep,
    TauLeapingStep,
    min_time_grid,
    pc_tau_leaping,
    reverse_rates,
)
from mixdistill.student import MixtureStudent
from mixdistill.teachers.tauldr import TauLDRTeacher

TINY = str(Path(__file__).resolve().parent.parent / "configs" / "tiny" / "tauldr_tiny.yaml")
S = 16  # grey levels of the tiny models


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_net() -> TauLDRUNet:
    """Two resolutions (8x8, 4x4), one ResBlock each, attention at 4x4: every layer type once."""
    return TauLDRUNet(
        in_channels=2, ch=8, ch_mult=(1, 2), num_res_blocks=1, time_embed_dim=16, data_max=S - 1
    )


def tiny_teacher(**kwargs) -> TauLDRTeacher:
    return TauLDRTeacher(GaussianRateProcess(S, 2.0, 16.0), (2, 8, 8), tiny_net(), **kwargs)


def write_original(
    path: Path, net: TauLDRUNet, shadow: list[torch.Tensor], prefix: str = "net.module."
) -> None:
    """A checkpoint laid out as tau-LDR's bookkeeping.save_checkpoint writes it (DDP model with EMA)."""
    model = {prefix + k: v.clone() for k, v in net.state_dict().items()}
    model.update(ema_decay=0.9999, ema_num_updates=7, ema_shadow_params=shadow)
    opt = {"state": {}, "param_groups": [{"lr": 2e-4, "params": list(range(len(shadow)))}]}
    torch.save({"model": model, "optimizer": opt, "n_iter": 1999999}, path)


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    net = tiny_net()
    shadow = [p.detach() + 0.01 * torch.randn_like(p) for p in net.parameters()]
    path = tmp_path / "ckpt_0001999999.pt"
    write_original(path, net, shadow)
    return path, net, shadow


# ---- the published network -----------------------------------------------------------------


def test_cifar10_unet_has_the_published_size_and_keys():
    """Invariant: the default U-Net has tau-LDR's CIFAR-10 parameter count (35,749,766, the count of
    the published UNet with its config) and the published key names, built without memory."""
    with torch.device("meta"):
        net = TauLDRUNet()
    assert sum(p.numel() for p in net.parameters()) == 35_749_766
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes["temb_modules.0.weight"] == (512, 128) and shapes["temb_modules.1.weight"] == (512, 512)
    assert shapes["input_conv.weight"] == (128, 3, 3, 3)
    assert shapes["downsampling_modules.3.dense0.weight"] == (256, 512)
    assert shapes["downsampling_modules.3.nin.W"] == (128, 256)  # NiN stores W as (in, out)
    assert shapes["downsampling_modules.4.GroupNorm_0.weight"] == (256,)  # attention at 16x16
    assert shapes["middle_modules.1.NIN_3.W"] == (256, 256)
    assert shapes["upsampling_modules.0.conv0.weight"] == (256, 512, 3, 3)
    assert shapes["output_modules.1.weight"] == (6, 128, 3, 3)
    assert len(net.resblocks()) == 8 + 2 + 12


def group_norm(x, sd, key):
    C = x.shape[1]
    return F.group_norm(x, min(C // 4, 32), sd[key + ".weight"], sd[key + ".bias"], eps=1e-6)


def nin(x, sd, key):
    return torch.einsum("bchw,co->bohw", x, sd[key + ".W"]) + sd[key + ".b"][None, :, None, None]


def conv(x, sd, key, stride=1, padding=1):
    return F.conv2d(x, sd[key + ".weight"], sd[key + ".bias"], stride=stride, padding=padding)


def resblock(x, temb, sd, key):
    h = conv(F.silu(group_norm(x, sd, key + ".groupnorm0")), sd, key + ".conv0")
    h = h + F.linear(F.silu(temb), sd[key + ".dense0.weight"], sd[key + ".dense0.bias"])[:, :, None, None]
    h = conv(F.silu(group_norm(h, sd, key + ".groupnorm1")), sd, key + ".conv1")
    skip = nin(x, sd, key + ".nin") if key + ".nin.W" in sd else x
    return (skip + h) / math.sqrt(2)


def attention(x, sd, key):
    B, C, H, W = x.shape
    h = group_norm(x, sd, key + ".GroupNorm_0")
    q, k, v = (nin(h, sd, f"{key}.NIN_{i}").reshape(B, C, H * W) for i in range(3))
    w = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(C), dim=-1)  # (B, HW queries, HW keys)
    out = (v @ w.transpose(1, 2)).reshape(B, C, H, W)
    return (x + nin(out, sd, key + ".NIN_3")) / math.sqrt(2)


def reference_net(sd, x, t):
    """tau-LDR's UNet forward for the tiny sizes, step by step from a raw state dict: ``(B, 2C, H, W)``."""
    half = 8
    freqs = torch.exp(-math.log(10000.0) / (half - 1) * torch.arange(half))
    feats = torch.cat([torch.sin(1000 * t[:, None] * freqs), torch.cos(1000 * t[:, None] * freqs)], 1)
    temb = F.linear(F.silu(F.linear(feats, sd["temb_modules.0.weight"], sd["temb_modules.0.bias"])),
                    sd["temb_modules.1.weight"], sd["temb_modules.1.bias"])  # fmt: skip
    centred = x.float() / (S - 1) * 2 - 1
    h0 = conv(centred, sd, "input_conv")
    h1 = resblock(h0, temb, sd, "downsampling_modules.0")
    h2 = conv(F.pad(h1, (0, 1, 0, 1)), sd, "downsampling_modules.1.conv", stride=2, padding=0)
    h3 = attention(resblock(h2, temb, sd, "downsampling_modules.2"), sd, "downsampling_modules.3")
    h = resblock(h3, temb, sd, "middle_modules.0")
    h = resblock(attention(h, sd, "middle_modules.1"), temb, sd, "middle_modules.2")
    h = attention(
        resblock(torch.cat([h, h3], 1), temb, sd, "upsampling_modules.0"), sd, "upsampling_modules.1"
    )
    h = attention(
        resblock(torch.cat([h, h2], 1), temb, sd, "upsampling_modules.2"), sd, "upsampling_modules.3"
    )
    h = conv(F.interpolate(h, scale_factor=2, mode="nearest"), sd, "upsampling_modules.4.conv")
    h = resblock(torch.cat([h, h1], 1), temb, sd, "upsampling_modules.5")
    h = resblock(torch.cat([h, h0], 1), temb, sd, "upsampling_modules.6")
    out = conv(F.silu(group_norm(h, sd, "output_modules.0")), sd, "output_modules.1")
    return torch.cat([torch.tanh(centred + out[:, :2]), out[:, 2:]], 1)


def reference_head(out):
    """tau-LDR's truncated-logistic bin log-probabilities ``(B, D, S)`` from the net output, in float64."""
    mu, inv_scale = out[:, :2].double().unsqueeze(-1), torch.exp(2 - out[:, 2:].double()).unsqueeze(-1)
    edges = -1 + 2 / S * torch.arange(S + 1, dtype=torch.float64)  # S equal bins of [-1, 1]
    cdf_l, cdf_r = torch.sigmoid((edges[:-1] - mu) * inv_scale), torch.sigmoid((edges[1:] - mu) * inv_scale)
    # tau-LDR's log-minus-exp has eps = 1e-6 inside its log1p: log(cdf_r - cdf_l + 1e-6 cdf_r).
    return torch.log(cdf_r - cdf_l + 1e-6 * cdf_r).reshape(out.shape[0], -1, S)


def test_original_checkpoint_loads_ema_weights_and_matches_the_reference_forward(checkpoint):
    """Invariant: a checkpoint in tau-LDR's layout (net.module.* keys, positional EMA list) loads with
    no missing or unexpected key, the network then holds the EMA weights, and its logits equal the
    published architecture computed from the raw state dict (truncated logistic head included)."""
    path, net, shadow = checkpoint
    teacher = tiny_teacher(checkpoint=str(path)).freeze()
    for p, s in zip(teacher.net.parameters(), shadow, strict=True):
        assert torch.equal(p, s)
    raw = tiny_teacher(checkpoint=str(path), use_ema=False)
    assert all(torch.equal(a, b) for a, b in zip(raw.net.parameters(), net.parameters(), strict=True))
    sd = {n: p.detach() for n, p in teacher.net.named_parameters()}
    torch.manual_seed(1)
    x, t = torch.randint(0, S, (3, 2 * 64)), torch.tensor([0.02, 0.5, 0.97])
    with torch.no_grad():
        out = reference_net(sd, x.view(3, 2, 8, 8), t)
        torch.testing.assert_close(teacher.net(x.view(3, 2, 8, 8), t), out, atol=1e-5, rtol=1e-5)
        want = reference_head(out)
        torch.testing.assert_close(truncated_logistic_logits(out.double(), S).reshape(3, -1, S), want)
        got = teacher.denoise(x, t)
    assert got.shape == (3, 128, S) and got.dtype == torch.float32
    # float32 logits lose precision only in the far tails, where the probabilities are ~0.
    torch.testing.assert_close(got.softmax(-1).double(), want.softmax(-1), atol=1e-5, rtol=1e-4)


def test_bare_state_dict_without_ddp_prefix_loads_too(tmp_path, checkpoint):
    """Invariant: a model state saved without DDP (net.* keys, no 'model' wrapper) loads the same."""
    _, net, shadow = checkpoint
    model = {"net." + k: v for k, v in net.state_dict().items()}
    model.update(ema_decay=0.9999, ema_num_updates=7, ema_shadow_params=shadow)
    torch.save(model, tmp_path / "bare.pt")
    teacher = tiny_teacher(checkpoint=str(tmp_path / "bare.pt"))
    assert all(torch.equal(p, s) for p, s in zip(teacher.net.parameters(), shadow, strict=True))


class NotATensor:
    """A pickled object that weights_only loading must refuse."""


@pytest.mark.parametrize("defect", ["missing", "unexpected", "size", "ema_length", "pickle"])
def test_mismatching_checkpoints_are_clear_errors(tmp_path, defect):
    """Invariant: a missing or unexpected key, a wrong size, an EMA list of the wrong length or a
    pickle that is not tensors fails with a ValueError naming the file (and the key)."""
    net = tiny_net()
    shadow = [p.detach().clone() for p in net.parameters()]
    path = tmp_path / f"{defect}.pt"
    write_original(path, net, shadow)
    ckpt = torch.load(path, weights_only=True)
    model, name = ckpt["model"], "middle_modules.1.NIN_2.W"
    expected = {"missing": name, "unexpected": "net.extra.weight", "size": f"net.{name}: (3, 3) vs (16, 16)"}
    if defect == "missing":
        del model["net.module." + name]
    elif defect == "unexpected":
        model["net.module.extra.weight"] = torch.zeros(2)
    elif defect == "size":
        model["net.module." + name] = torch.zeros(3, 3)
    elif defect == "ema_length":
        model["ema_shadow_params"] = shadow[:-1]
    else:
        ckpt["model"] = NotATensor()
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=re.escape(str(path))) as err:
        tiny_teacher(checkpoint=str(path))
    assert expected.get(defect, {"ema_length": "EMA", "pickle": "weights_only"}.get(defect)) in str(err.value)


# ---- samplers ------------------------------------------------------------------------------


def test_rate_matrix_is_the_derivative_of_the_integrated_rate():
    """Invariant: rate_matrix(t) = F'(t) R, checked by a central difference of F, rows summing to 0."""
    proc = GaussianRateProcess(S, 2.0, 16.0)
    t, eps = torch.tensor([0.3, 0.8], dtype=torch.float64), 1e-4
    fd = (proc.integrated_rate(t + eps) - proc.integrated_rate(t - eps)) / (2 * eps)
    rates = proc.rate_matrix(t).double()
    torch.testing.assert_close(rates, fd.view(-1, 1, 1) * proc.rate, rtol=1e-5, atol=1e-6)
    assert rates.sum(-1).abs().max() < 1e-3


def test_reverse_rates_match_the_exact_posterior_over_a_short_step():
    """Invariant: for h -> 0 the product posterior's jump probability x_t -> y is h times tau-LDR's
    reverse rate (the tau-leaping rates are the generator of the exact reverse step); the error is
    O(h F'(t)), under 1% of the largest rate at h = 1e-6."""
    proc = GaussianRateProcess(S, 2.0, 16.0)
    torch.manual_seed(2)
    x_t, probs = torch.randint(0, S, (2, 5)), torch.softmax(torch.randn(2, 5, S, dtype=torch.float64), -1)
    t, h = torch.tensor([0.4, 0.9], dtype=torch.float64), 1e-6  # float64: t - h must be exact
    rates = reverse_rates(proc, x_t, probs, t, eps=0.0)
    post = proc.posterior_probs(x_t, probs, t, t - h)  # (B, D, K)
    off = torch.ones_like(rates, dtype=torch.bool).scatter(-1, x_t.unsqueeze(-1), False)
    assert torch.all(rates[~off] == 0)
    torch.testing.assert_close(post[off] / h, rates[off], rtol=1e-2, atol=1e-2 * float(rates.max()))


def test_tau_leaping_step_keeps_states_in_range_and_takes_the_argmax_last():
    """Invariant: a tau-leap gives (B, D) or (B, n, D) states in [0, S); the last step (s = 0) returns
    argmax x_0; the default grid is linspace(1, min_t, steps) followed by 0."""
    teacher = tiny_teacher().freeze()
    rule = TauLeapingStep()
    torch.manual_seed(3)
    x_t, t = teacher.process.prior((4, 128)), torch.full((4,), 0.9)
    logits = teacher.denoise(x_t, t)
    one = rule.step(teacher.process, x_t, logits, t, t - 0.05)
    many = rule.step(teacher.process, x_t, logits, t, t - 0.05, num_samples=3)
    assert one.shape == (4, 128) and many.shape == (4, 3, 128) and one.dtype == torch.long
    assert 0 <= int(many.min()) and int(many.max()) < S and (many != x_t.unsqueeze(1)).any()
    last = rule.step(teacher.process, x_t, logits, t, torch.zeros(4))
    assert torch.equal(last, logits.argmax(-1))
    torch.testing.assert_close(min_time_grid(3, 0.01), torch.tensor([1.0, 0.505, 0.01, 0.0]))
    out = teacher.sample(2, 4)  # 3 leaps and the final argmax
    assert out.shape == (2, 2, 8, 8) and 0 <= int(out.min()) and int(out.max()) < S


def test_pc_tau_leaping_and_the_product_step_sample_in_range():
    """Invariant: tau-LDR's full predictor-corrector sampler and the authors' product-step sampler
    return images of the teacher's shape with values in [0, S)."""
    teacher = tiny_teacher(step_rule=MinTimeAncestralStep()).freeze()
    torch.manual_seed(4)
    pc = pc_tau_leaping(teacher, 2, steps=12, corrector_steps=2, corrector_entry_time=0.3)
    prod = teacher.sample(2, 3)
    for out in (pc, prod):
        assert out.shape == (2, 2, 8, 8) and 0 <= int(out.min()) and int(out.max()) < S


# ---- the student ---------------------------------------------------------------------------


def test_resblock_student_equals_the_teacher_until_trained(checkpoint):
    """Invariant: the ResBlock lambda path starts at zero, so the student's logits equal the teacher's
    bit for bit for any lambda (the U-Net's own keys unchanged); after one optimizer step lambda
    changes the output."""
    path, _, _ = checkpoint
    teacher = tiny_teacher(checkpoint=str(path)).freeze()
    student = MixtureStudent.from_teacher(teacher, ResBlockInjection(embed_dim=16))
    assert student.base.state_dict().keys() == teacher.state_dict().keys()
    names = {n.split(".")[0] for n, _ in student.injection.named_parameters()}
    assert names == {"tlam_mix", "lemb_modules", "h_t_lam_mix", "hlemb_modules", "dense1"}
    torch.manual_seed(5)
    x, t = torch.randint(0, S, (4, 128)), torch.rand(4)
    lam_a, lam_b = torch.rand(4, 1), torch.rand(4, 1)
    student.eval()
    with torch.no_grad():
        want = teacher.denoise(x, t)
        assert torch.equal(student.denoise(x, t, lam=lam_a), want)
        assert torch.equal(student.denoise(x, t, lam=lam_b), want)
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    loss = student.denoise(x, t, lam=lam_a).log_softmax(-1)[..., 0].mean()
    loss.backward()
    opt.step()
    with torch.no_grad():
        assert not torch.equal(student.denoise(x, t, lam=lam_a), student.denoise(x, t, lam=lam_b))


def test_tiny_config_fits_and_tests_through_the_cli(tmp_path):
    """Invariant: configs/tiny/tauldr_tiny.yaml trains 2 steps and its test writes a quality row for
    the teacher and the student."""
    args = ["--config", TINY, f"--trainer.default_root_dir={tmp_path}", "--trainer.max_steps=2"]
    main(["fit", *args])
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    main(["test", *args, f"--ckpt_path={ckpt}", "--model.init_args.evaluation.init_args.num_samples=16"])
    assert next(tmp_path.rglob("quality.json")).is_file()


def test_fix_logistic_takes_the_tail_accurate_of_both_forms():
    """Invariant: with ``fix_logistic`` each bin's logit is the smaller of tau-LDR's CDF form
    ``log(cdf_r - cdf_l + eps cdf_r)`` and the complementary form ``log(sf_l - sf_r + eps sf_l)``
    (``sf = 1 - cdf``), both computed here in float64 from the bin edges."""
    torch.manual_seed(3)
    out = torch.randn(2, 4, 3, 3, dtype=torch.float64)  # (B, 2C, H, W), C = 2; |z| < 700: no underflow
    mu, inv_scale = out[:, :2].unsqueeze(-1), torch.exp(2 - out[:, 2:]).unsqueeze(-1)
    edges = -1 + 2 / S * torch.arange(S + 1, dtype=torch.float64)
    z = (edges - mu) * inv_scale  # (B, C, H, W, S + 1)
    cdf, sf = torch.sigmoid(z), torch.sigmoid(-z)  # sf = 1 - cdf, accurate in the right tail
    lo, hi = cdf[..., :-1], cdf[..., 1:]
    sf_lo, sf_hi = sf[..., :-1], sf[..., 1:]
    want = torch.minimum(torch.log(hi - lo + 1e-6 * hi), torch.log(sf_lo - sf_hi + 1e-6 * sf_lo))
    got = truncated_logistic_logits(out, S, fix_logistic=True)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)
    assert bool((got <= truncated_logistic_logits(out, S) + 1e-12).all())
