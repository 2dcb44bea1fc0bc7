"""MDLM and SDTT masked-diffusion language models as teachers, from their published checkpoints."""

from __future__ import annotations

import warnings
from typing import Any

from torch import Tensor

from mixdistill.nets.dit import MDLMDiT
from mixdistill.processes.masking import MaskingProcess
from mixdistill.processes.schedules import LogLinearSchedule
from mixdistill.sampling.step_rule import CachedAncestralStep, StepRule
from mixdistill.teachers.base import Teacher
from mixdistill.teachers.mdlm_checkpoint import MDLMCheckpoint, read_mdlm_checkpoint


class MDLMTeacher(Teacher):
    """MDLM (kuleshov-group/mdlm) or an SDTT round (jdeschena/sdtt): a DiT over GPT-2 tokens.

    The SUBS parameterisation: the DiT's logit of the mask id is dropped (probability 0), and
    ``MaskingProcess.constrain_logits`` pins unmasked positions to their token. The process is
    MDLM's log-linear masking (mask probability ``(1 - eps) t``); the DiT is called at
    ``sigma(t) = -log(1 - (1 - eps) t)``, which it zeroes without time conditioning. Sampling defaults
    to MDLM's ``ddpm_cache`` sampler: ancestral steps (unmask probability ``(t - s) / t``, as MDLM's
    and SDTT's samplers), and rows whose tokens did not change reuse their logits. The authors'
    last step samples down to ``t = 1e-5`` and takes the argmax only for the tokens still masked
    there (a fraction ``~1e-5 N``); the default here samples the last step to ``t = 0``, which differs
    from theirs only by that fraction. ``CachedAncestralStep(argmax_last=True)`` would instead take
    the argmax for every token of the last step, which lowers diversity at few steps.

    Args:
        checkpoint: A Hugging Face directory (``model.safetensors`` + ``config.json``), a
            ``.safetensors`` file or a Lightning ``.ckpt``; None keeps ``backbone``'s own weights.
        backbone: The DiT; None builds it to the checkpoint's sizes (from ``config.json`` and the
            weights' shapes), or MDLM small without a checkpoint.
        use_ema: Load a Lightning checkpoint's EMA weights (``ckpt['ema']``) when it has them.
        strict: Fail on missing or unexpected keys (otherwise they are reported as a warning).
        vocab_size: Data vocabulary ``S`` (GPT-2: 50257); the DiT has ``S + 1`` rows, the last the mask.
        seq_len: Tokens per sequence; None takes the DiT's ``model_length``.
        eps: ``eps`` of the log-linear schedule (MDLM: 1e-3).
        dropout: Residual dropout of a DiT built here (used only while a student copy trains).
        step_rule: Sampling step; ``CachedAncestralStep()`` by default.
    """

    def __init__(
        self,
        checkpoint: str | None = None,
        backbone: MDLMDiT | None = None,
        use_ema: bool = True,
        strict: bool = True,
        vocab_size: int = 50257,
        seq_len: int | None = None,
        eps: float = 1e-3,
        dropout: float = 0.1,
        step_rule: StepRule | None = None,
    ) -> None:
        ckpt = read_mdlm_checkpoint(checkpoint, use_ema) if checkpoint is not None else None
        if ckpt is not None:
            check_vocab(ckpt, vocab_size)
        if backbone is None:
            backbone = (
                dit_for(ckpt, dropout) if ckpt is not None else MDLMDiT(vocab_size + 1, dropout=dropout)
            )
        if backbone.vocab_size != vocab_size + 1:
            raise ValueError(
                f"MDLMTeacher: the DiT has vocab_size={backbone.vocab_size} rows, but "
                f"vocab_size={vocab_size} needs {vocab_size + 1} (the data tokens and the mask id)."
            )
        process = MaskingProcess(vocab_size, LogLinearSchedule(eps))
        length = seq_len if seq_len is not None else backbone.model_length
        rule = step_rule if step_rule is not None else CachedAncestralStep()
        super().__init__(process, (length,), step_rule=rule)
        self.backbone = backbone
        self.latent_layer = None  # lambda enters as a token: ExtraTokenInjection(module="backbone")
        if ckpt is not None:
            load_into(backbone, ckpt, vocab_size, strict)

    def network_logits(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        sigma = self.process.schedule.sigma(t)  # (B,), zeroed inside without time conditioning
        logits = self.backbone(x_t, sigma)  # (B, D, S + 1)
        return logits[..., : self.vocab_size]  # SUBS: the mask id gets no probability


def dit_for(ckpt: MDLMCheckpoint, dropout: float = 0.1) -> MDLMDiT:
    """A DiT of the checkpoint's sizes: from the weights' shapes, heads and length from its config.

    MDLM's ``config.json`` has flat fields (``n_heads``, ``model_length``, ``time_conditioning``);
    SDTT's has its training config (``model.n_heads``, ``model.length``). Without either, the head
    dimension is read from ``rotary_emb.inv_freq`` (``Dh / 2`` entries).
    """
    state, cfg = ckpt.state, ckpt.config
    model = cfg.get("model", {}) if isinstance(cfg.get("model"), dict) else {}
    heads = cfg.get("n_heads", model.get("n_heads"))
    needed = ["vocab_embed.embedding", "sigma_map.mlp.0.weight", "blocks.0.mlp.0.weight"]
    needed += ["rotary_emb.inv_freq"] if heads is None else []
    absent = [k for k in needed if k not in state]
    if absent:
        raise ValueError(
            f"checkpoint='{ckpt.path}' is missing keys {absent} of MDLM's DiT (under 'backbone.'); "
            f"it has {sorted(state)[:5]}..."
        )
    vocab, hidden = state["vocab_embed.embedding"].shape
    if heads is None:
        heads = hidden // (2 * state["rotary_emb.inv_freq"].numel())
    return MDLMDiT(
        vocab_size=vocab,
        hidden_dim=hidden,
        cond_dim=state["sigma_map.mlp.0.weight"].shape[0],
        n_blocks=len({k.split(".")[1] for k in state if k.startswith("blocks.")}),
        n_heads=int(heads),
        model_length=int(cfg.get("model_length", model.get("length", 1024))),
        dropout=dropout,
        time_conditioning=bool(cfg.get("time_conditioning", False)),
        mlp_ratio=state["blocks.0.mlp.0.weight"].shape[0] // hidden,
    )


def check_vocab(ckpt: MDLMCheckpoint, vocab_size: int) -> None:
    """Raise, naming the file, unless the checkpoint's DiT has ``vocab_size + 1`` rows."""
    emb = ckpt.state.get("vocab_embed.embedding")
    if emb is not None and emb.shape[0] != vocab_size + 1:
        raise ValueError(
            f"checkpoint='{ckpt.path}' has a vocabulary of {emb.shape[0]} tokens (mask id included), "
            f"but vocab_size={vocab_size} needs {vocab_size + 1}; set vocab_size to {emb.shape[0] - 1}."
        )


def load_into(net: MDLMDiT, ckpt: MDLMCheckpoint, vocab_size: int, strict: bool = True) -> None:
    """Load ``ckpt`` (its EMA weights where present) into ``net``; errors name the file and keys."""
    check_vocab(ckpt, vocab_size)
    state = dict(ckpt.state)
    expected = net.state_dict()
    # inv_freq is a constant of the head dimension (a buffer); a file may leave it out.
    missing = sorted(set(expected) - set(state) - {"rotary_emb.inv_freq"})
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        msg = (
            f"checkpoint='{ckpt.path}' does not match MDLMDiT: missing {missing[:8]}, "
            f"unexpected {unexpected[:8]}."
        )
        if strict:
            raise ValueError(msg)
        warnings.warn(msg, stacklevel=3)
    if ckpt.shadow is not None:
        state.update(ema_weights(net, ckpt))
    shapes = [(k, tuple(v.shape), tuple(expected[k].shape)) for k, v in state.items() if k in expected]
    wrong = [f"{k}: {got} vs {want}" for k, got, want in shapes if got != want]
    if wrong:
        raise ValueError(f"checkpoint='{ckpt.path}' has shapes that do not fit MDLMDiT: {wrong[:5]}.")
    net.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


def ema_weights(net: MDLMDiT, ckpt: MDLMCheckpoint) -> dict[str, Any]:
    """The EMA shadow list as named weights: it follows ``backbone.parameters()`` order."""
    names = [name for name, _ in net.named_parameters()]
    if len(ckpt.shadow) != len(names):
        raise ValueError(
            f"checkpoint='{ckpt.path}': ema has {len(ckpt.shadow)} shadow_params but MDLMDiT has "
            f"{len(names)} parameters; pass use_ema=False to load the raw weights."
        )
    out = dict(zip(names, ckpt.shadow, strict=True))
    params = dict(net.named_parameters())
    wrong = [n for n in names if tuple(out[n].shape) != tuple(params[n].shape)]
    if wrong:
        raise ValueError(f"checkpoint='{ckpt.path}': ema shadow_params do not fit parameters {wrong[:5]}.")
    return out
