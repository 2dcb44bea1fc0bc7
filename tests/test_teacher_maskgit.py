"""MaskGITTeacher: the published checkpoint layout loads strictly and reproduces the published forward;
guidance, sampling and the student's extra token; the tiny config fits and tests through the CLI."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mixdistill.cli import run as main
from mixdistill.injection import ExtraTokenInjection
from mixdistill.nets.maskgit_vit import MaskGITSizes, MaskGITTransformer
from mixdistill.sampling.confidence import ConfidenceUnmasking
from mixdistill.sampling.step_rule import AncestralStep, StepContext
from mixdistill.student import MixtureStudent
from mixdistill.teachers.maskgit import MaskGITTeacher

SIZES = MaskGITSizes(codebook_size=12, num_classes=3, grid=4, hidden=32, depth=2, heads=4, mlp_dim=48)
TINY_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "tiny" / "maskgit_tiny.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def published_state(sizes: MaskGITSizes, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under the v1 MaskTransformer's key names and shapes (read from its code)."""
    g = torch.Generator().manual_seed(seed)
    H, M, D = sizes.hidden, sizes.mlp_dim, sizes.grid**2
    V = sizes.codebook_size + 1 + sizes.num_classes + 1
    shapes = {"tok_emb.weight": (V, H), "pos_emb": (1, D + 1, H), "bias": (D + 1, V)}
    for name, n in (("first_layer", 7), ("last_layer", 5)):
        for i in range(0, n, 2):
            kind = "norm" if i in (0, 4) else "linear"
            shapes |= {f"{name}.{i}.weight": (H,) if kind == "norm" else (H, H), f"{name}.{i}.bias": (H,)}
    for n in range(sizes.depth):
        p = f"transformer.layers.{n}"
        shapes |= {f"{p}.{j}.norm.{w}": (H,) for j in (0, 1) for w in ("weight", "bias")}
        shapes |= {f"{p}.0.fn.mha.in_proj_weight": (3 * H, H), f"{p}.0.fn.mha.in_proj_bias": (3 * H,)}
        shapes |= {f"{p}.0.fn.mha.out_proj.weight": (H, H), f"{p}.0.fn.mha.out_proj.bias": (H,)}
        shapes |= {f"{p}.1.fn.net.0.weight": (M, H), f"{p}.1.fn.net.0.bias": (M,)}
        shapes |= {f"{p}.1.fn.net.3.weight": (H, M), f"{p}.1.fn.net.3.bias": (H,)}
    heads = ("first_layer.0.", "first_layer.4.", "last_layer.0.", "last_layer.4.")
    norms = {k for k in shapes if k.endswith("norm.weight") or (k.startswith(heads) and k.endswith("weight"))}
    return {k: 0.3 * torch.randn(s, generator=g) + (k in norms) for k, s in shapes.items()}


def reference_logits(sd, sizes, tokens, labels, latent=None):
    """The published forward from the raw state dict (eval mode): logits (B, D, S + 1)."""
    H, D, S = sizes.hidden, sizes.grid**2, sizes.codebook_size

    def ln(x, p, eps=1e-12):
        return F.layer_norm(x, (H,), sd[f"{p}.weight"], sd[f"{p}.bias"], eps)

    def lin(x, p):
        return x @ sd[f"{p}.weight"].T + sd[f"{p}.bias"]

    ids = torch.cat([tokens, labels[:, None] + S + 1], 1)
    x = sd["tok_emb.weight"][ids] + sd["pos_emb"]
    if latent is not None:
        x = torch.cat([x, latent[:, None]], 1)
    x = lin(ln(F.gelu(lin(ln(x, "first_layer.0"), "first_layer.2")), "first_layer.4"), "first_layer.6")
    B, L, h = x.shape[0], x.shape[1], sizes.heads
    for n in range(sizes.depth):
        p = f"transformer.layers.{n}"
        y = (
            ln(x, f"{p}.0.norm", 1e-5) @ sd[f"{p}.0.fn.mha.in_proj_weight"].T
            + sd[f"{p}.0.fn.mha.in_proj_bias"]
        )
        q, k, v = (z.reshape(B, L, h, H // h).transpose(1, 2) for z in y.split(H, -1))
        att = torch.softmax(q @ k.transpose(-1, -2) / (H // h) ** 0.5, -1) @ v
        x = x + lin(att.transpose(1, 2).reshape(B, L, H), f"{p}.0.fn.mha.out_proj")
        x = x + lin(F.gelu(lin(ln(x, f"{p}.1.norm", 1e-5), f"{p}.1.fn.net.0")), f"{p}.1.fn.net.3")
    x = ln(F.gelu(lin(ln(x, "last_layer.0"), "last_layer.2")), "last_layer.4")
    x = x[:, :D]  # the class (and latent) tokens are dropped
    return (x @ sd["tok_emb.weight"].T + sd["bias"][:D])[..., : S + 1]


def save_pth(path: Path, state: dict, **extra) -> Path:
    """A file laid out as MaskGIT-pytorch's save_network writes it, with a real optimizer state."""
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([p], lr=1e-4, betas=(0.9, 0.96))
    p.sum().backward()
    opt.step()
    torch.save(
        {"iter": 10, "global_epoch": 2, "model_state_dict": state, "optimizer_state_dict": opt.state_dict()}
        | extra,
        path,
    )
    return path


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    state = published_state(SIZES)
    path = save_pth(tmp_path_factory.mktemp("maskgit") / "MaskGIT_tiny.pth", state)
    return MaskGITTeacher(str(path), SIZES).freeze(), state


def inputs(B=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, SIZES.codebook_size + 1, (B, SIZES.grid**2), generator=g)
    return x, torch.randint(0, SIZES.num_classes, (B,), generator=g)


def test_published_layout_loads_and_reproduces_the_reference_forward(loaded):
    """Invariant: a checkpoint in the original layout loads with no missing/unexpected keys and the
    teacher's network logits equal the published forward (code columns), labels and no-class alike."""
    teacher, state = loaded
    x, y = inputs()
    with torch.no_grad():
        got = teacher.network_logits(x, torch.ones(3), y)
        null = teacher.network_logits(x, torch.ones(3), None)
    assert got.shape == (3, 16, SIZES.codebook_size)
    ref = reference_logits(state, SIZES, x, y)
    assert torch.allclose(got, ref[..., : SIZES.codebook_size], atol=1e-4)
    ref_null = reference_logits(state, SIZES, x, torch.full((3,), SIZES.num_classes))
    assert torch.allclose(null, ref_null[..., :-1], atol=1e-4), (
        "cond None is the no-class token 2025-style id"
    )
    assert torch.allclose(teacher.net(x, y), ref, atol=1e-4), "the net keeps the mask column"


def test_ddp_prefix_is_accepted(tmp_path):
    """Invariant: keys saved from a DistributedDataParallel wrapper ('module.' prefix) load the same."""
    state = published_state(SIZES, seed=3)
    path = save_pth(tmp_path / "ddp.pth", {f"module.{k}": v for k, v in state.items()})
    teacher = MaskGITTeacher(str(path), SIZES)
    assert torch.equal(teacher.net.pos_emb, state["pos_emb"])


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda s: s.pop("transformer.layers.1.1.fn.net.3.bias"), "missing.*layers.1.1.fn.net.3.bias"),
        (lambda s: s.update({"latent_projection.0.weight": torch.zeros(2)}), "unexpected.*latent_projection"),
        (lambda s: s.update({"bias": torch.zeros(5, 5)}), "shapes.*bias"),
    ],
    ids=["missing", "extra", "shape"],
)
def test_mismatching_checkpoints_name_the_file_and_keys(tmp_path, edit, match):
    """Invariant: loading is strict; errors name the file and the offending keys."""
    state = published_state(SIZES)
    edit(state)
    path = save_pth(tmp_path / "bad.pth", state)
    with pytest.raises(ValueError, match=match) as err:
        MaskGITTeacher(str(path), SIZES)
    assert "bad.pth" in str(err.value)


class Opaque:
    """Not a tensor or container: weights_only loading must refuse it."""


def test_unsafe_or_foreign_files_are_refused(tmp_path):
    """Invariant: a pickle with arbitrary objects, a file without model_state_dict and a missing file
    each fail with an error naming the file."""
    unsafe = save_pth(tmp_path / "unsafe.pth", published_state(SIZES), extra=Opaque())
    with pytest.raises(ValueError, match="unsafe.pth.*weights_only"):
        MaskGITTeacher(str(unsafe), SIZES)
    torch.save({"state_dict": published_state(SIZES)}, tmp_path / "lightning.ckpt")
    with pytest.raises(ValueError, match="lightning.ckpt.*model_state_dict"):
        MaskGITTeacher(str(tmp_path / "lightning.ckpt"), SIZES)
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        MaskGITTeacher(str(tmp_path / "nothere.pth"), SIZES)


def test_parameter_count_of_the_published_model():
    """Invariant: the full-size transformer has MaskGIT's 174.161M parameters (174,160,874 measured)."""
    with torch.device("meta"):
        net = MaskGITTransformer()
    assert sum(p.numel() for p in net.parameters()) == 174_160_874
    assert net.tok_emb.weight.shape == (2026, 768) and net.bias.shape == (257, 2026)
    assert net.pos_emb.shape == (1, 257, 768)


def test_guided_logits_ramp_as_maskgit(loaded):
    """Invariant: at step i of 8 the sampler's logits are (1 + w') cond - w' uncond, w' = 3 i / 7, on
    the code columns of the published forward (pinned where x_t is unmasked)."""
    teacher, state = loaded
    x, y = inputs()
    masked = x == SIZES.codebook_size
    c = reference_logits(state, SIZES, x, y)[..., :-1]
    u = reference_logits(state, SIZES, x, torch.full((3,), SIZES.num_classes))[..., :-1]
    for i in (0, 3, 7):
        w = 3.0 * i / 7
        with torch.no_grad():
            got = teacher.sampling_logits(x, torch.ones(3), y, StepContext(i, 8))
        assert torch.allclose(got[masked], ((1 + w) * c - w * u)[masked], atol=1e-3)


def test_sampling_and_consistency_steps(loaded):
    """Invariant: an 8-step sample is fully unmasked codes; the consistency step is unguided by default
    (so it may reuse log_marginal) and is an error to reuse when guide_consistency is set."""
    teacher, _ = loaded
    torch.manual_seed(0)
    out = teacher.sample(4, 8, torch.tensor([0, 1, 2, 0]))
    assert out.shape == (4, 4, 4) and int(out.max()) < SIZES.codebook_size and int(out.min()) >= 0
    x_t = torch.full((2, 16), SIZES.codebook_size)
    t, s, y = torch.ones(2), torch.full((2,), 0.95), torch.tensor([0, 2])
    assert teacher.marginal_drives_step
    with torch.no_grad():
        steps = teacher.consistency_step(x_t, t, s, y, 5, logits=teacher.log_marginal(x_t, t, y))
    assert steps.shape == (2, 5, 16)
    guided = MaskGITTeacher(None, SIZES, guide_consistency=True)
    with pytest.raises(ValueError, match="logits"):
        guided.consistency_step(x_t, t, s, y, 5, logits=guided.log_marginal(x_t, t, y))


def test_student_extra_token_follows_the_published_student(loaded):
    """Invariant: a student's lambda token enters after the class token without position embedding and
    is dropped at the output (the Di4C MaskGIT student); unset, the net is the teacher again."""
    teacher, state = loaded
    student = MixtureStudent.from_teacher(teacher, ExtraTokenInjection("net", hidden=16, freq_dim=8)).eval()
    x, y = inputs()
    lam = torch.rand(3, 1)
    token = student.injection.embedding(lam)
    with torch.no_grad():
        got = student.network_logits(x, torch.ones(3), y, lam)
        ref = reference_logits(state, SIZES, x, y, latent=token)
        back = student.base.network_logits(x, torch.ones(3), y)
    assert torch.allclose(got, ref[..., :-1], atol=1e-4)
    assert torch.allclose(back, teacher.network_logits(x, torch.ones(3), y), atol=1e-5)


def test_extra_token_student_checkpoint_holds_the_backbone_once(loaded):
    """Invariant: the lambda-token student's state dict holds each backbone weight once (the injection
    adds only its embedding), a copy's injection drives the copy's backbone, and a state dict written
    with the duplicated backbone (before the fix) still loads strictly to the same logits."""
    teacher, _ = loaded
    student = MixtureStudent.from_teacher(teacher, ExtraTokenInjection("net", hidden=16, freq_dim=8)).eval()
    keys = list(student.state_dict())
    assert [k for k in keys if k.startswith("injection.")] == [
        f"injection.embedding.mlp.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")
    ]
    twin = copy.deepcopy(student)
    assert twin.injection._target is twin.base.net and twin.injection._target is not student.base.net
    legacy = student.state_dict()
    legacy.update({f"injection._target.{k}": v for k, v in student.base.net.state_dict().items()})
    fresh = MixtureStudent.from_teacher(teacher, ExtraTokenInjection("net", hidden=16, freq_dim=8)).eval()
    fresh.load_state_dict(legacy, strict=True)
    x, y = inputs()
    lam = torch.rand(3, 1)
    with torch.no_grad():
        assert torch.equal(
            fresh.network_logits(x, torch.ones(3), y, lam), student.network_logits(x, torch.ones(3), y, lam)
        )


def test_consistency_rule_replaces_the_confidence_step_of_the_target(loaded):
    """Invariant: with consistency_rule=AncestralStep() the target's teacher step keeps every revealed
    token and unmasks each masked one independently with probability (alpha(s) - alpha(t)) /
    (1 - alpha(t)) (binomial, 4 sigma), whereas the confidence rule unmasks the same count in every
    copy; sampling keeps the confidence rule."""
    _, state = loaded
    teacher = MaskGITTeacher(None, SIZES, consistency_rule=AncestralStep()).freeze()
    teacher.net.load_state_dict(state)
    mask, D, n = SIZES.codebook_size, SIZES.grid**2, 400
    x = torch.full((2, D), mask)
    x[:, :3] = torch.tensor([1, 2, 3])
    t, s = torch.full((2,), 0.7), torch.full((2,), 0.5)
    y = torch.tensor([0, 1])
    torch.manual_seed(0)
    x_u = teacher.consistency_step(x, t, s, y, n)  # (2, n, D)
    assert torch.equal(x_u[..., :3], x[:, None, :3].expand(2, n, 3))
    a_t, a_s = (float(teacher.process.schedule.alpha(v)[0]) for v in (t, s))
    p = (a_s - a_t) / (1 - a_t)
    revealed = (x_u[..., 3:] != mask).float().mean()
    assert abs(float(revealed) - p) < 4 * (p * (1 - p) / (2 * n * (D - 3))) ** 0.5
    counts = (teacher.consistency_step(x, t, s, y, n) != mask).sum(-1)
    assert counts.unique().numel() > 1  # random counts: not the confidence rule's fixed number
    confident = MaskGITTeacher(None, SIZES).freeze()
    confident.net.load_state_dict(state)
    assert (confident.consistency_step(x, t, s, y, n) != mask).sum(-1).unique().numel() == 1
    assert isinstance(teacher.step_rule, ConfidenceUnmasking)


def test_tiny_config_fits_and_tests_through_the_cli(tmp_path):
    """Invariant: configs/tiny/maskgit_tiny.yaml fits 2 steps on a token grid file and its test writes
    a quality row per (model, steps) with a finite token-level Frechet distance."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "tokens.npz", tokens=rng.integers(0, 16, (64, 4, 4)), labels=rng.integers(0, 4, 64))
    args = [
        "--config",
        str(TINY_CONFIG),
        f"--trainer.default_root_dir={tmp_path}",
        f"--data.init_args.path={tmp_path / 'tokens.npz'}",
    ]
    cli = main(["fit", *args])
    assert cli.trainer.global_step == 2
    main(["test", *args, f"--ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}"])
    rows = json.loads(next(tmp_path.rglob("quality.json")).read_text())["rows"]
    assert [(r["model"], r["steps"]) for r in rows] == [("teacher", 2), ("teacher", 4), ("student", 2)]
    assert all(np.isfinite(r["FD-tokens"]) for r in rows)
