"""The geometry branch: DUSt3R-style decoder(s) on block-b features and linear heads.

Two decoder layouts (config ``decoder_mode``), compared in ``backend/train/RUNS.md``:

- ``"global"``: one decoder whose blocks attend over all frames' tokens at once (JOG3R's
  "single decoder with full 3D attention"); frame 1 is marked by a learned reference embedding.
- ``"pair"``: DUSt3R's two-decoder layout on the pairs (1, f): a reference decoder for frame 1
  and a second decoder for frame f, each block with self-attention, cross-attention to the
  other view, and an MLP. Costs F pair passes.

The head is DUSt3R's linear head: one ``nn.Linear`` per token to ``patch*patch*channels``
values, then pixel shuffle back to full resolution. Channels: point map X^{f,1} (3) with
DUSt3R's activation ``x/|x| * expm1(|x|)``, confidence ``1 + exp(c)``, disparity (softplus,
defined up to scale and shift), and a Plücker ray map (unit direction d, moment c x d; 6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Attention, Mlp

HEAD_CHANNELS = {"points": 3, "conf": 1, "disparity": 1, "rays": 6}


class DecoderBlock(nn.Module):
    """Pre-norm transformer block; optional cross-attention to another view's tokens."""

    def __init__(self, dim: int, heads: int, cross: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.cross = cross
        if cross:
            self.norm_x = nn.LayerNorm(dim)
            self.norm_ctx = nn.LayerNorm(dim)
            self.cross_attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim)

    def forward(self, x, other=None):
        x = x + self.attn(self.norm1(x))
        if self.cross:
            x = x + self.cross_attn(self.norm_x(x), self.norm_ctx(other))
        return x + self.mlp(self.norm2(x))


def activate(raw: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split the head's raw (..., 11) channels and apply DUSt3R/Geo4D activations."""
    pts, conf, disp, rays = raw.split([3, 1, 1, 6], dim=-1)
    norm = pts.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    points = pts / norm * torch.expm1(norm.clamp(max=20.0))  # clamp: expm1 overflows in bf16 past ~88
    d, m = rays.split([3, 3], dim=-1)
    d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    return {
        "points": points,
        "conf": 1.0 + torch.exp(conf.squeeze(-1).clamp(max=30.0)),
        "disparity": F.softplus(disp.squeeze(-1)),
        "rays": torch.cat([d, m], dim=-1),
    }


class GeometryBranch(nn.Module):
    def __init__(self, in_dim: int, dim: int, heads: int, depth: int, patch: int, mode: str, max_frames: int):
        super().__init__()
        if mode not in ("global", "pair"):
            raise ValueError(f"decoder_mode must be 'global' or 'pair', got {mode!r}")
        self.mode, self.patch = mode, patch
        self.proj = nn.Linear(in_dim, dim)
        if mode == "global":
            self.ref_embed = nn.Parameter(torch.zeros(dim))
            self.blocks = nn.ModuleList(DecoderBlock(dim, heads, cross=False) for _ in range(depth))
        else:
            # The reference stream's last update would feed nothing (the heads read frame f's
            # stream), so it has one block fewer; frame f's last block reads ref's previous state.
            self.ref_blocks = nn.ModuleList(DecoderBlock(dim, heads, cross=True) for _ in range(depth - 1))
            self.blocks = nn.ModuleList(DecoderBlock(dim, heads, cross=True) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, patch * patch * sum(HEAD_CHANNELS.values()))

    def forward(self, feats: torch.Tensor, grid: tuple[int, int]) -> dict[str, torch.Tensor]:
        """feats: (B, F, S, D) block-b tokens (S = h*w patches). Returns per-pixel maps
        points (B,F,H,W,3), conf (B,F,H,W), disparity (B,F,H,W), rays (B,F,H,W,6)."""
        b, f, s, _ = feats.shape
        x = self.proj(feats)
        if self.mode == "global":
            x = x.clone()
            x[:, 0] = x[:, 0] + self.ref_embed
            x = x.reshape(b, f * s, -1)
            for blk in self.blocks:
                x = blk(x)
            x = x.reshape(b, f, s, -1)
        else:
            # Pairs (1, f) for every f (f = 1 included, so X^{1,1} comes from the same decoder).
            ref = x[:, :1].expand(b, f, s, -1).reshape(b * f, s, -1)
            cur = x.reshape(b * f, s, -1)
            for i, blk in enumerate(self.blocks):
                new_cur = blk(cur, ref)
                if i < len(self.ref_blocks):
                    ref = self.ref_blocks[i](ref, cur)
                cur = new_cur
            x = cur.reshape(b, f, s, -1)
        raw = self.head(self.norm(x))  # (B, F, S, p*p*11)
        h, w = grid
        p = self.patch
        c = sum(HEAD_CHANNELS.values())
        raw = raw.reshape(b * f, h, w, c * p * p).permute(0, 3, 1, 2)
        raw = F.pixel_shuffle(raw, p)  # (B*F, c, H, W); channel-major order matches pixel_shuffle
        raw = raw.reshape(b, f, c, h * p, w * p).permute(0, 1, 3, 4, 2).float()
        return activate(raw)
