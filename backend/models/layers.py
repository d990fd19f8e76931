"""Building blocks shared by the STDiT backbone and the geometry decoder.

Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` so the GPU picks
flash / memory-efficient kernels on its own; everything else is plain ``nn.Linear``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention; self-attention when ``context`` is None, else cross-attention."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None, qk_norm: bool = True):
        super().__init__()
        assert dim % heads == 0, f"hidden size {dim} is not divisible by {heads} heads"
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(context_dim or dim, 2 * dim)
        self.to_out = nn.Linear(dim, dim)
        # RMS-normalised queries/keys keep attention logits bounded in bf16 training.
        head_dim = dim // heads
        self.norm_q = nn.RMSNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.norm_k = nn.RMSNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        ctx = x if context is None else context
        q = self.to_q(x).view(b, n, self.heads, -1).transpose(1, 2)
        k, v = self.to_kv(ctx).view(b, ctx.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k = self.norm_q(q), self.norm_k(k)
        attn_mask = None
        if mask is not None:  # (b, m) True where the context token is real
            attn_mask = mask[:, None, None, :].to(torch.bool)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.to_out(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x * (1 + scale) + shift``; shift/scale broadcast over the token axis."""
    return x * (1 + scale) + shift


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Fixed sine/cosine embedding of (possibly fractional) positions: (N,) -> (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=positions.device) / half)
    angles = positions.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def sincos_2d(dim: int, h: int, w: int, device=None) -> torch.Tensor:
    """(h*w, dim) embedding: half the channels encode the row, half the column."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.cat([sincos_1d(dim // 2, ys.flatten()), sincos_1d(dim // 2, xs.flatten())], dim=-1)
