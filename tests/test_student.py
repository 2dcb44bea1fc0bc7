"""Tests of the mixture student (mixdistill/student.py): initialisation from a teacher, the latent
injection, the batched latent forward, and that a mixture step samples correlated dimensions."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from mixdistill.di4c.losses import distillation_loss
from mixdistill.injection import AdditiveInjection, LatentEmbedding, LatentInjection
from mixdistill.nets.mlp import MLPDenoiserNet
from mixdistill.processes.masking import MaskingProcess
from mixdistill.student import MixtureStudent
from mixdistill.teachers.base import Teacher
from mixdistill.teachers.network import NetworkTeacher

D, S = 4, 3


def make_teacher(seed: int = 0) -> NetworkTeacher:
    torch.manual_seed(seed)
    net = MLPDenoiserNet(D, S + 1, S, hidden=32, depth=1, time_features=16)
    return NetworkTeacher(MaskingProcess(S), (D,), net)


def make_inputs(batch: int = 6, seed: int = 1) -> tuple[Tensor, Tensor]:
    """Partly masked states (mask id S) and times."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, S + 1, (batch, D), generator=g)
    x[0] = S  # one fully masked example
    return x, torch.rand(batch, generator=g)


def train_one_step(student: MixtureStudent, x: Tensor, t: Tensor, lr: float = 0.1) -> None:
    """One plain SGD step of the distillation loss toward a random target, with 4 lambdas per
    example (written out: constructing a torch.optim optimizer first imports torch._dynamo, ~4 s)."""
    g = torch.Generator().manual_seed(2)
    target = torch.randn(x.shape[0], D, S, generator=g).log_softmax(-1)
    lam = torch.rand(x.shape[0], 4, 1, generator=g)
    student.zero_grad()
    loss = distillation_loss(target, student.denoise_latent(x, t, None, lam).log_softmax(-1)).mean()
    loss.backward()
    with torch.no_grad():
        for p in student.parameters():
            if p.grad is not None:
                p -= lr * p.grad


# ---------------------------------------------------------------------------------------------
# Initialisation from the teacher
# ---------------------------------------------------------------------------------------------
def test_student_starts_exactly_at_teacher_then_gains_lambda_dependence():
    """The zero-initialised embedding makes the student's logits identical to the teacher's for
    every lambda; one optimiser step later the logits depend on lambda."""
    teacher = make_teacher().freeze()
    student = MixtureStudent.from_teacher(teacher, AdditiveInjection("net.time_embed"))
    x, t = make_inputs()
    want = teacher.denoise(x, t)
    for seed in range(4):
        lam = torch.rand(x.shape[0], 1, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(student.denoise(x, t, None, lam), want)
    train_one_step(student, x, t)
    with torch.no_grad():
        a = student.denoise(x, t, None, torch.full((x.shape[0], 1), 0.1))
        b = student.denoise(x, t, None, torch.full((x.shape[0], 1), 0.7))
    masked = x == S
    assert (a - b)[masked].abs().max() > 1e-4  # lambda now matters where tokens are masked
    # ... and not where they are pinned by the masking process (point mass on the token).
    torch.testing.assert_close(a.softmax(-1)[~masked], b.softmax(-1)[~masked])


def test_embedding_parameters_belong_to_the_student():
    """The injection's embedding is a registered submodule, so optimisers and state dicts see it."""
    student = MixtureStudent.from_teacher(make_teacher(), AdditiveInjection("net.time_embed"))
    names = [n for n, _ in student.named_parameters()]
    assert any(n.startswith("injection.embedding.") for n in names)
    assert any(k.startswith("injection.embedding.") for k in student.state_dict())


def test_teacher_is_untouched_by_the_student():
    """from_teacher deep-copies: the teacher carries no hook, its outputs do not change when the
    student trains, a frozen teacher stays in eval mode under .train() and receives no gradient."""
    teacher = make_teacher().freeze()
    x, t = make_inputs()
    before = teacher.denoise(x, t).clone()
    params_before = [p.clone() for p in teacher.parameters()]
    student = MixtureStudent.from_teacher(teacher, AdditiveInjection("net.time_embed"))
    assert len(teacher.net.time_embed._forward_hooks) == 0
    assert len(student.base.net.time_embed._forward_hooks) == 1
    assert student.base.net.time_embed is not teacher.net.time_embed
    train_one_step(student, x, t)
    assert torch.equal(teacher.denoise(x, t), before)
    for p, p0 in zip(teacher.parameters(), params_before, strict=True):
        assert torch.equal(p, p0)
        assert p.grad is None and not p.requires_grad
    # Frozen teacher: .train() does not switch it (or its submodules) to training mode.
    teacher.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    # The student is trainable although it was copied from a frozen teacher.
    student.train()
    assert student.training and student.base.training and not student.frozen
    assert all(p.requires_grad for p in student.parameters())


def test_denoise_latent_equals_stacked_per_lambda_calls():
    """denoise_latent (B, n, D, S) in one call equals denoise for each lambda column stacked."""
    student = MixtureStudent.from_teacher(make_teacher(), AdditiveInjection("net.time_embed"))
    x, t = make_inputs()
    train_one_step(student, x, t)  # make lambda matter
    n = 5
    lam = torch.rand(x.shape[0], n, 1, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = student.denoise_latent(x, t, None, lam)
        ref = torch.stack([student.denoise(x, t, None, lam[:, j]) for j in range(n)], dim=1)
    assert out.shape == (x.shape[0], n, D, S)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert (out[:, 0] - out[:, 1]).abs().max() > 1e-4  # the columns really differ


def test_log_marginal_is_logsumexp_over_lambdas_and_consistency_step_shape():
    """log_marginal = logsumexp_j log_softmax(logits(lambda_j)) - log n over marginal_latents
    lambdas; consistency_step returns (B, n, D) states consistent with x_t."""
    student = MixtureStudent.from_teacher(
        make_teacher(), AdditiveInjection("net.time_embed"), marginal_latents=7
    )
    x, t = make_inputs()
    train_one_step(student, x, t)
    with torch.no_grad():
        torch.manual_seed(10)
        out = student.log_marginal(x, t)
        torch.manual_seed(10)
        lam = student.sample_latent(x.shape[0], 7)
        logp = student.denoise_latent(x, t, None, lam).log_softmax(-1)
    assert lam.shape == (x.shape[0], 7, 1)
    torch.testing.assert_close(out, torch.logsumexp(logp, 1) - math.log(7))
    torch.testing.assert_close(out.exp().sum(-1), torch.ones(x.shape[0], D))
    steps = student.consistency_step(x, t, 0.5 * t, None, 3)
    assert steps.shape == (x.shape[0], 3, D)
    unmasked = (x != S).unsqueeze(1).expand_as(steps)
    assert torch.equal(steps[unmasked], x.unsqueeze(1).expand_as(steps)[unmasked])


def test_latent_dim_must_be_positive():
    """A latent dimension below 1 is refused with an error naming it."""
    with pytest.raises(ValueError, match="latent_dim"):
        MixtureStudent.from_teacher(make_teacher(), AdditiveInjection("net.time_embed"), latent_dim=0)


# ---------------------------------------------------------------------------------------------
# AdditiveInjection
# ---------------------------------------------------------------------------------------------
def test_injection_unknown_layer_lists_available_names():
    """An unknown layer name raises ValueError naming the layer and listing real submodules."""
    with pytest.raises(ValueError, match=r"net\.time_emb'.*net\.time_embed") as err:
        MixtureStudent.from_teacher(make_teacher(), AdditiveInjection("net.time_emb"))
    assert "layer='net.time_emb'" in str(err.value)


def test_injection_width_not_inferable():
    """A layer without out_features/embedding_dim needs an explicit width; given one, it attaches."""
    model = nn.Module()
    model.act = nn.SiLU()
    with pytest.raises(ValueError, match=r"layer='act'.*width"):
        AdditiveInjection("act").attach(model, 1)
    inj = AdditiveInjection("act", width=3, freq_dim=8)
    inj.attach(model, 1)
    assert inj.embedding.mlp[-1].out_features == 3


def test_injection_infers_embedding_width():
    """For an nn.Embedding the width is its embedding_dim."""
    model = nn.Module()
    model.tok = nn.Embedding(10, 6)
    inj = AdditiveInjection("tok", freq_dim=8)
    inj.attach(model, 2)
    assert inj.embedding.mlp[-1].out_features == 6 and inj.embedding.mlp[0].in_features == 16


@pytest.mark.parametrize(
    ("layer", "width"),
    [
        (nn.Sequential(nn.Linear(4, 7), nn.SiLU(), nn.Dropout(0.1)), 7),  # the digits/text time MLPs
        (nn.Sequential(nn.Conv2d(1, 5, 3), nn.GroupNorm(1, 5), nn.SiLU()), 5),
        (nn.Sequential(nn.Linear(4, 9), nn.LayerNorm(9)), 9),
        (nn.Conv2d(2, 3, 1), 3),
    ],
)
def test_injection_infers_the_output_width_of_sequentials_and_convolutions(layer, width):
    """Invariant: the inferred width is the output size of the last sized layer (activations and
    dropout keep it), and adding the embedding then runs on the layer's real output."""
    model = nn.Module()
    model.layer = layer
    inj = AdditiveInjection("layer", channel_dim=1 if isinstance(layer, nn.Conv2d) or width == 5 else -1)
    inj.attach(model, 1)
    assert inj.embedding.mlp[-1].out_features == width
    inj.set_latent(torch.rand(2, 1))
    x = (
        torch.randn(2, 1, 4, 4)
        if width == 5
        else torch.randn(2, 2, 3, 3)
        if width == 3
        else torch.randn(2, 4)
    )
    assert model.layer(x).shape[inj.channel_dim] == width


class _ConvNet(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


def test_injection_channel_dim_1_for_feature_maps():
    """channel_dim=1 adds the embedding (B, C) along the channel axis of a (B, C, H, W) output,
    broadcast over H and W; set_latent(None) switches it off."""
    torch.manual_seed(0)
    C = 5
    model = _ConvNet(C)
    inj = AdditiveInjection("conv", width=C, channel_dim=1, freq_dim=8)
    inj.attach(model, 1)
    nn.init.normal_(inj.embedding.mlp[-1].weight)  # make the embedding non-zero
    x = torch.randn(3, 1, 4, 6)
    lam = torch.rand(3, 1)
    plain = model(x)
    inj.set_latent(lam)
    out = model(x)
    inj.set_latent(None)
    emb = inj.embedding(lam)  # (3, C)
    assert emb.abs().max() > 0
    torch.testing.assert_close(out, plain + emb[:, :, None, None])
    torch.testing.assert_close(model(x), plain)


def test_injection_rejects_batch_mismatch():
    """A layer whose first axis is not the batch of lambda raises a clear error."""
    model = nn.Module()
    model.lin = nn.Linear(3, 4)
    inj = AdditiveInjection("lin", freq_dim=8)
    inj.attach(model, 1)
    inj.set_latent(torch.rand(2, 1))
    with pytest.raises(RuntimeError, match="batch"):
        model.lin(torch.randn(5, 3))


def test_latent_embedding_starts_at_zero():
    """LatentEmbedding outputs exactly 0 at initialisation for every lambda (latent_dim 2 too)."""
    emb = LatentEmbedding(7, latent_dim=2, freq_dim=16)
    out = emb(torch.rand(9, 2))
    assert out.shape == (9, 7) and torch.equal(out, torch.zeros(9, 7))


# ---------------------------------------------------------------------------------------------
# A mixture step samples correlated dimensions; a product step does not
# ---------------------------------------------------------------------------------------------
class _GateNet(nn.Module):
    """Logits shared by all D dimensions, read from the output of the layer ``gate``."""

    def __init__(self, num_dims: int, vocab: int) -> None:
        super().__init__()
        self.num_dims, self.vocab = num_dims, vocab
        self.gate = nn.Identity()

    def forward(self, x_t: Tensor) -> Tensor:
        z = self.gate(torch.zeros(x_t.shape[0], self.vocab))  # (B, S)
        return z.unsqueeze(1).expand(-1, self.num_dims, -1)


class _GateTeacher(Teacher):
    """A product denoiser whose per-dimension distribution is uniform unless lambda is injected."""

    def __init__(self, num_dims: int, vocab: int) -> None:
        super().__init__(MaskingProcess(vocab), (num_dims,))
        self.net = _GateNet(num_dims, vocab)

    def network_logits(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        return self.net(x_t)


class _StepInjection(LatentInjection):
    """Two components: lambda < 0.5 puts almost all mass on value 0, lambda >= 0.5 on value 1."""

    def __init__(self, layer: str, strength: float = 12.0) -> None:
        super().__init__()
        self.layer, self.strength = layer, strength
        self._lam: Tensor | None = None

    def attach(self, model: nn.Module, latent_dim: int) -> None:
        model.get_submodule(self.layer).register_forward_hook(self._hook)

    def set_latent(self, lam: Tensor | None) -> None:
        self._lam = lam

    def _hook(self, module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        if self._lam is None:
            return output
        which = (self._lam[:, 0] >= 0.5).long()  # (B,)
        return output + self.strength * nn.functional.one_hot(which, output.shape[-1]).to(output.dtype)


def _pearson(a: Tensor, b: Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return float((a * b).mean() / (a.std(unbiased=False) * b.std(unbiased=False)))


def test_mixture_step_samples_correlated_dimensions():
    """One mixture step t=1 -> 0 from all-mask draws one lambda per sample and the whole x_0 from
    that product: every dimension agrees (correlation ~ 1). A product step with the same per-dim
    marginals (uniform over {0, 1}) gives independent dimensions (correlation ~ 0)."""
    num, vocab, dims = 4000, 2, 3
    torch.manual_seed(0)
    student = MixtureStudent(_GateTeacher(dims, vocab), _StepInjection("net.gate"))
    product = _GateTeacher(dims, vocab)
    x1 = student.process.prior((num, dims))
    one, zero = torch.ones(num), torch.zeros(num)
    mixed = student.step(x1, one, zero)
    indep = product.step(x1, one, zero)
    assert (mixed < vocab).all() and (indep < vocab).all()  # all tokens unmasked at s = 0
    # Same per-dimension marginals (about 1/2 each) ...
    for x in (mixed, indep):
        assert (x.double().mean(0) - 0.5).abs().max() < 0.05
    # ... but only the mixture correlates the dimensions.
    for d in range(1, dims):
        assert _pearson(mixed[:, 0], mixed[:, d]) > 0.95
        assert abs(_pearson(indep[:, 0], indep[:, d])) < 0.08
