"""ParallaxSTDiT: a spatial-temporal diffusion transformer with a DUSt3R-style geometry branch.

Shape (OpenSora 1.0 STDiT, as JOG3R uses it): the clip is cut into (1, p, p) patches; every
block runs spatial self-attention (tokens of one frame), temporal self-attention (one patch
position across frames), cross-attention to the caption tokens, and an MLP, with adaLN
(shift/scale/gate) modulation from the timestep embedding. The output of block ``b``
(``geometry_block``, 1-based) also feeds :class:`GeometryBranch` (DUSt3R decoder + linear
pixel-shuffle heads: point map X^{f,1} + confidence, disparity, Plücker rays).

Differences from OpenSora 1.0, and why:
- Per-frame timesteps and a per-frame clean/noisy mask (``frame_mask``): clean frames get
  timestep 0 plus a learned "given" embedding, so one network does text-to-video (all
  noisy), keyframe interpolation (first and last clean) and geometry from a given clip (all
  frames at a small noise level). adaLN modulation is therefore per frame.
- Flow matching (velocity prediction, diffusers ``FlowMatchEulerDiscreteScheduler``)
  instead of DDPM epsilon prediction: simpler loss, few-step sampling.
- RMS-normalised queries/keys for stable bf16 training from scratch.

Space: the ``tiny`` config works in **pixel space** (64x64 RGB in [-1, 1], patch 4). No
pretrained VAE can be downloaded here and training one would eat the GPU budget; at 64x64
with patch 4 a frame is 16x16 = 256 tokens, the same sequence as a 128x128 frame through
an 8x VAE with patch 2, and the geometry heads see true pixels, which makes point-map
supervision exact. The ``opensora-1.0`` config works on 4-channel SD-VAE latents
(diffusers ``AutoencoderKL``, see :mod:`backend.models.autoencoder`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .geometry_head import GeometryBranch
from .layers import Attention, Mlp, modulate, sincos_1d, sincos_2d


@dataclass
class STDiTOutput(BaseOutput):
    """sample: (B, C, F, H, W) predicted velocity (noise - clean); geometry: dict of maps
    (see GeometryBranch) for the batch rows asked for, or None."""

    sample: Optional[torch.Tensor] = None
    geometry: Optional[dict] = None


class STDiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn_spatial = Attention(dim, heads)
        self.norm_t = nn.LayerNorm(dim, eps=1e-6)
        self.attn_temporal = Attention(dim, heads)
        self.norm_c = nn.LayerNorm(dim, eps=1e-6)
        self.cross_attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio)
        # PixArt-style: a per-block learned offset added to the shared timestep projection.
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim**0.5)

    def forward(self, x, t6, y, y_mask):
        """x: (B, F, S, D); t6: (B, F, 6, D) per-frame modulation; y: (B, L, D) caption."""
        b, f, s, d = x.shape
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            (self.scale_shift_table[None, None] + t6).unsqueeze(3).unbind(2))  # each (B, F, 1, D)
        # spatial: tokens of one frame
        h = modulate(self.norm1(x), shift_msa, scale_msa).reshape(b * f, s, d)
        x = x + gate_msa * self.attn_spatial(h).reshape(b, f, s, d)
        # temporal: one patch position across frames
        h = self.norm_t(x).transpose(1, 2).reshape(b * s, f, d)
        x = x + gate_msa * self.attn_temporal(h).reshape(b, s, f, d).transpose(1, 2)
        # cross-attention to the caption, all tokens of the clip at once
        x = x + self.cross_attn(self.norm_c(x).reshape(b, f * s, d), y, y_mask).reshape(b, f, s, d)
        h = modulate(self.norm2(x), shift_mlp, scale_mlp)
        return x + gate_mlp * self.mlp(h)


class ParallaxSTDiT(ModelMixin, ConfigMixin):
    """Video DiT + geometry branch. See the module docstring; configs in ``configs.py``.

    The config holds the transformer only. ``caption_channels`` and ``model_max_length`` stay:
    they are the width of the caption tokens it cross-attends to and the length of its learned
    null caption (parameter shapes). The text encoder and the VAE are pipeline components
    (``components.py``; ``pipeline_parallax.ParallaxPipeline``). Checkpoints written before
    carry ``text_encoder`` and ``vae`` keys in config.json: diffusers keeps them as hidden
    config entries, and ``components.components_of`` still reads them.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        sample_size: int = 64,  # H = W of the model's input (pixels for tiny, latents otherwise)
        num_frames: int = 16,
        in_channels: int = 3,
        patch_size: tuple = (1, 4, 4),
        hidden_size: int = 256,
        depth: int = 8,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        caption_channels: int = 384,
        model_max_length: int = 32,
        geometry_block: int = 6,
        decoder_mode: str = "global",
        decoder_dim: int = 256,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        geometry_patch: int = 4,  # output pixels per token side (patch * VAE factor for latents)
        space: str = "pixel",  # "pixel" or "latent" (the VAE itself is a pipeline component)
    ):
        super().__init__()
        if patch_size[0] != 1:
            raise ValueError("only temporal patch 1 is supported (STDiT 1.0 uses (1, 2, 2))")
        if not 1 <= geometry_block <= depth:
            raise ValueError(f"geometry_block {geometry_block} outside 1..{depth}")
        p = patch_size[1]
        self.patch = p
        self.x_embedder = nn.Linear(in_channels * p * p, hidden_size)
        self.t_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.t_embedder = TimestepEmbedding(256, hidden_size)
        self.clean_embed = nn.Parameter(torch.zeros(hidden_size))  # marks given (clean) frames
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))
        self.y_proj = nn.Sequential(nn.Linear(caption_channels, hidden_size), nn.GELU(approximate="tanh"),
                                    nn.Linear(hidden_size, hidden_size))
        # Learned "empty prompt": used for classifier-free guidance and for the geometry task.
        self.null_caption = nn.Parameter(torch.randn(model_max_length, caption_channels) / caption_channels**0.5)
        self.blocks = nn.ModuleList(STDiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.final_norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.final_table = nn.Parameter(torch.randn(2, hidden_size) / hidden_size**0.5)
        self.final_linear = nn.Linear(hidden_size, p * p * in_channels)
        self.geometry = GeometryBranch(hidden_size, decoder_dim, decoder_heads, decoder_depth,
                                       geometry_patch, decoder_mode, num_frames)
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # adaLN-zero: every block starts as the identity; output starts at zero velocity.
        nn.init.zeros_(self.t_block[1].weight)
        nn.init.zeros_(self.t_block[1].bias)
        nn.init.zeros_(self.final_linear.weight)
        nn.init.zeros_(self.final_linear.bias)
        for blk in self.blocks:
            nn.init.zeros_(blk.cross_attn.to_out.weight)

    # ------------------------------------------------------------------------------------
    def caption_tokens(self, encoder_hidden_states, encoder_attention_mask, batch: int, drop=None):
        """Project caption tokens; rows with ``drop`` True (or no caption) use the null caption."""
        null = self.null_caption[None].expand(batch, -1, -1)
        if encoder_hidden_states is None:
            y, mask = null, torch.ones(batch, null.shape[1], dtype=torch.bool, device=null.device)
        else:
            y = encoder_hidden_states.to(null.dtype)
            mask = (torch.ones(y.shape[:2], dtype=torch.bool, device=y.device) if encoder_attention_mask is None
                    else encoder_attention_mask.bool())
            if y.shape[1] != null.shape[1]:  # pad / cut to model_max_length so the null swap lines up
                L = null.shape[1]
                y = torch.nn.functional.pad(y, (0, 0, 0, max(0, L - y.shape[1])))[:, :L]
                mask = torch.nn.functional.pad(mask, (0, max(0, L - mask.shape[1])))[:, :L]
            if drop is not None:
                y = torch.where(drop[:, None, None], null, y)
                mask = torch.where(drop[:, None], torch.ones_like(mask), mask)
        return self.y_proj(y), mask

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        encoder_attention_mask: Optional[torch.Tensor] = None,
        frame_mask: Optional[torch.Tensor] = None,
        drop_caption: Optional[torch.Tensor] = None,
        geometry: bool = False,
        geometry_rows: Optional[torch.Tensor] = None,
        geometry_only: bool = False,
        return_dict: bool = True,
    ):
        """
        sample: (B, C, F, H, W) noisy clip (clean where ``frame_mask``).
        timestep: (B,) or (B, F) flow-matching time in [0, 1000] (sigma * 1000).
        encoder_hidden_states / encoder_attention_mask: (B, L, caption_channels) / (B, L);
            None means the empty prompt (learned null caption).
        frame_mask: (B, F) bool, True where the frame is given clean.
        drop_caption: (B,) bool, classifier-free-guidance dropout (training).
        geometry: also run the geometry branch on block ``geometry_block``'s output, for the
            batch rows ``geometry_rows`` (all rows when None).
        geometry_only: stop after block ``geometry_block`` (V2C needs no velocity).
        """
        cfg = self.config
        b, c, f, H, W = sample.shape
        p = self.patch
        h, w = H // p, W // p
        # patchify: (B, C, F, H, W) -> (B, F, h*w, C*p*p)
        x = sample.permute(0, 2, 3, 4, 1).reshape(b, f, h, p, w, p, c)
        x = x.permute(0, 1, 2, 4, 3, 5, 6).reshape(b, f, h * w, p * p * c)
        x = self.x_embedder(x.to(self.dtype))
        pos = sincos_2d(cfg.hidden_size, h, w, device=x.device)[None, None] + \
            sincos_1d(cfg.hidden_size, torch.arange(f, device=x.device))[None, :, None]
        x = x + pos.to(x.dtype)

        t = timestep.to(x.device).float()
        t = t[:, None].expand(b, f) if t.ndim == 1 else t
        if frame_mask is not None:
            t = torch.where(frame_mask, torch.zeros_like(t), t)
        temb = self.t_embedder(self.t_proj(t.reshape(-1)).to(x.dtype)).reshape(b, f, -1)
        if frame_mask is not None:
            temb = temb + frame_mask[..., None].to(temb.dtype) * self.clean_embed
        t6 = self.t_block(temb).reshape(b, f, 6, -1)
        y, y_mask = self.caption_tokens(encoder_hidden_states, encoder_attention_mask, b, drop_caption)

        geo = None
        for i, blk in enumerate(self.blocks, start=1):
            x = blk(x, t6, y, y_mask)
            if geometry and i == cfg.geometry_block:
                feats = x if geometry_rows is None else x[geometry_rows]
                geo = self.geometry(feats, (h, w))
                if geometry_only:
                    return STDiTOutput(sample=None, geometry=geo) if return_dict else (None, geo)
        shift, scale = (self.final_table[None, None] + temb[:, :, None]).unbind(2)
        x = self.final_linear(modulate(self.final_norm(x), shift[:, :, None], scale[:, :, None]))
        # unpatchify -> (B, C, F, H, W)
        x = x.reshape(b, f, h, w, p, p, c).permute(0, 6, 1, 2, 4, 3, 5).reshape(b, c, f, H, W)
        return STDiTOutput(sample=x, geometry=geo) if return_dict else (x, geo)
