"""MDLM's diffusion transformer (DiT), with the parameter names of its published checkpoints.

The architecture of kuleshov-group/mdlm ``models/dit.py`` (also SDTT's ``dit_orig``), written for
mixdistill: token embedding matrix -> adaLN-modulated pre-norm blocks with rotary attention ->
adaLN-modulated output layer. The conditioning vector is ``silu(sigma_map(sigma))``; with
``time_conditioning`` off (MDLM's and SDTT's setting) sigma is zeroed, so it is a learnt constant.
Attention runs through ``F.scaled_dot_product_attention`` (no flash-attn dependency).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixdistill.nets.embeddings import sinusoidal_embedding
from mixdistill.nets.rotary import rotate


class WeightLayerNorm(nn.Module):
    """LayerNorm with a weight and no bias, computed in float32 even under autocast (as MDLM's)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return F.layer_norm(x.float(), (x.shape[-1],)) * self.weight.float()


class TokenEmbedding(nn.Module):
    """A raw ``[V, H]`` matrix ``embedding`` indexed by token ids (MDLM's ``EmbeddingLayer``)."""

    def __init__(self, dim: int, vocab_size: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(vocab_size, dim))
        nn.init.kaiming_uniform_(self.embedding, a=5**0.5)

    def forward(self, x: Tensor) -> Tensor:
        return self.embedding[x]  # (B, L, H)


class SigmaEmbedding(nn.Module):
    """256 sinusoidal features of sigma -> Linear -> SiLU -> Linear (MDLM's ``TimestepEmbedder``)."""

    def __init__(self, cond_dim: int, features: int = 256) -> None:
        super().__init__()
        self.features = features
        self.mlp = nn.Sequential(nn.Linear(features, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, sigma: Tensor) -> Tensor:
        feats = sinusoidal_embedding(sigma, self.features)  # (B, features) float32
        return self.mlp(feats.to(self.mlp[0].weight.dtype))  # (B, cond_dim)


class RotaryFrequencies(nn.Module):
    """RoPE's inverse frequencies ``inv_freq`` ``(Dh / 2,)`` (saved in MDLM checkpoints) and tables."""

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim)
        self.register_buffer("inv_freq", inv_freq)

    def tables(self, length: int) -> tuple[Tensor, Tensor]:
        """``cos``, ``sin`` ``(length, Dh)``: each frequency twice, pairing feature ``i`` with
        ``i + Dh/2`` (flash-attn's non-interleaved rotary, which MDLM applies to q and k).
        """
        inv_freq = self.inv_freq.float()  # float32 even in a bf16 copy: positions up to L need it
        pos = torch.arange(length, device=inv_freq.device, dtype=torch.float32)
        freqs = pos[:, None] * inv_freq[None, :]  # (L, Dh / 2)
        angles = torch.cat([freqs, freqs], dim=-1)  # (L, Dh)
        return angles.cos(), angles.sin()


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: ``x (B, L, H) * (1 + scale) + shift`` with ``shift``, ``scale`` ``(B, 1, H)``."""
    return x * (1 + scale) + shift


class DiTBlock(nn.Module):
    """``x + gate * attn(modulate(norm1(x)))`` then ``x + gate * mlp(modulate(norm2(x)))``.

    Args:
        dim: Model width ``H``.
        heads: Attention heads.
        cond_dim: Width of the conditioning vector.
        mlp_ratio: Feed-forward width as a multiple of ``dim``.
        dropout: Dropout on both residual branches (training only).
    """

    def __init__(self, dim: int, heads: int, cond_dim: int, mlp_ratio: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        # Registration order = MDLM's parameter order, which its EMA shadow list follows.
        self.norm1 = WeightLayerNorm(dim)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.norm2 = WeightLayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"), nn.Linear(mlp_ratio * dim, dim)
        )
        self.adaLN_modulation = nn.Linear(cond_dim, 6 * dim)
        nn.init.zeros_(self.adaLN_modulation.weight)
        nn.init.zeros_(self.adaLN_modulation.bias)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, c: Tensor) -> Tensor:
        b, length, dim = x.shape
        mods = self.adaLN_modulation(c)[:, None].chunk(6, dim=2)  # 6 x (B, 1, H)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods
        h = self.attn_qkv(modulate(self.norm1(x), shift_msa, scale_msa))  # (B, L, 3H)
        q, k, v = h.view(b, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # (B, heads, L, Dh) each
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)  # v is not rotated
        a = F.scaled_dot_product_attention(q, k, v)  # (B, heads, L, Dh)
        a = self.attn_out(a.transpose(1, 2).reshape(b, length, dim))
        p = self.dropout if self.training else 0.0
        x = x + gate_msa * F.dropout(a, p, self.training)
        m = self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x + gate_mlp * F.dropout(m, p, self.training)


class DiTFinalLayer(nn.Module):
    """``linear(modulate(norm_final(x)))`` to the vocabulary."""

    def __init__(self, dim: int, out_dim: int, cond_dim: int) -> None:
        super().__init__()
        self.norm_final = WeightLayerNorm(dim)
        self.linear = nn.Linear(dim, out_dim)
        self.adaLN_modulation = nn.Linear(cond_dim, 2 * dim)
        for layer in (self.linear, self.adaLN_modulation):  # zero-initialised, as MDLM's
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=2)  # (B, 1, H) each
        return self.linear(modulate(self.norm_final(x), shift, scale))


class MDLMDiT(nn.Module):
    """MDLM's DiT: ``forward(x (B, L) ids incl. the mask id, sigma (B,)) -> logits (B, L, V)``.

    A ``LatentTokenBackbone``: when ``latent_token`` ``(B, H)`` is set it is appended as token
    ``L`` without rotary position (an identity rotation), is modulated by the same adaLN
    conditioning as every token, and is dropped from the output.

    Args:
        vocab_size: Rows of the embedding and output matrices ``V``, mask id included (GPT-2: 50258).
        hidden_dim: Width ``H``.
        cond_dim: Width of the conditioning vector.
        n_blocks: Number of blocks.
        n_heads: Attention heads (head dimension ``H / n_heads``, 64 for MDLM small).
        model_length: Sequence length it was trained on (rotary itself has no maximum).
        dropout: Residual dropout while training (MDLM: 0.1).
        time_conditioning: Feed sigma to ``sigma_map``; off (sigma zeroed) in MDLM's and SDTT's runs.
        mlp_ratio: Feed-forward width as a multiple of ``H``.
    """

    #: Published sizes (hidden_dim, n_blocks, n_heads): MDLM small/medium, SDTT large.
    SIZES: ClassVar[dict[str, tuple[int, int, int]]] = {
        "small": (768, 12, 12),
        "medium": (1024, 24, 16),
        "large": (1536, 24, 16),
    }

    def __init__(
        self,
        vocab_size: int = 50258,
        hidden_dim: int = 768,
        cond_dim: int = 128,
        n_blocks: int = 12,
        n_heads: int = 12,
        model_length: int = 1024,
        dropout: float = 0.1,
        time_conditioning: bool = False,
        mlp_ratio: int = 4,
    ) -> None:
        super().__init__()
        if hidden_dim % n_heads or (hidden_dim // n_heads) % 2:
            raise ValueError(f"MDLMDiT: hidden_dim={hidden_dim} / n_heads={n_heads} must be an even integer.")
        self.vocab_size, self.model_length = vocab_size, model_length
        self.time_conditioning = time_conditioning
        self.vocab_embed = TokenEmbedding(hidden_dim, vocab_size)
        self.sigma_map = SigmaEmbedding(cond_dim)
        self.rotary_emb = RotaryFrequencies(hidden_dim // n_heads)
        self.blocks = nn.ModuleList(
            DiTBlock(hidden_dim, n_heads, cond_dim, mlp_ratio, dropout) for _ in range(n_blocks)
        )
        self.output_layer = DiTFinalLayer(hidden_dim, vocab_size, cond_dim)
        # ExtraTokenInjection sets this (B, H) token; see the class docstring.
        self.latent_token: Tensor | None = None
        self.latent_width = hidden_dim

    @classmethod
    def sized(cls, size: str, **kwargs: Any) -> MDLMDiT:
        """A DiT of a published size: ``"small"`` (169.6M), ``"medium"`` or SDTT's ``"large"``."""
        if size not in cls.SIZES:
            raise ValueError(f"MDLMDiT.sized: size='{size}' is not one of {sorted(cls.SIZES)}.")
        hidden, blocks, heads = cls.SIZES[size]
        return cls(hidden_dim=hidden, n_blocks=blocks, n_heads=heads, **kwargs)

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        if not self.time_conditioning:
            sigma = torch.zeros_like(sigma)
        h = self.vocab_embed(x)  # (B, L, H)
        c = F.silu(self.sigma_map(sigma))  # (B, cond_dim)
        length = x.shape[1]
        cos, sin = self.rotary_emb.tables(length)  # (L, Dh) each
        if self.latent_token is not None:
            h = torch.cat([h, self.latent_token.to(h.dtype).unsqueeze(1)], 1)  # (B, L + 1, H)
            cos = torch.cat([cos, cos.new_ones(1, cos.shape[1])])  # identity rotation: no position
            sin = torch.cat([sin, sin.new_zeros(1, sin.shape[1])])
        for block in self.blocks:
            h = block(h, cos, sin, c)
        return self.output_layer(h[:, :length], c)  # (B, L, V)
