"""Pixel <-> model space. ``tiny`` is pixel space (identity, RGB in [-1, 1]); latent configs
use a diffusers ``AutoencoderKL`` (SD-VAE), applied frame by frame as OpenSora 1.0 does."""

from __future__ import annotations

import torch


class PixelSpace:
    """Identity codec: uint8 frames <-> (B, 3, F, H, W) floats in [-1, 1]."""

    scale = 1

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        return video

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z.clamp(-1, 1)


class LatentSpace:
    """SD-VAE codec; ``name`` is a hub id or a local folder (loaded with from_pretrained)."""

    scale = 8

    def __init__(self, name: str, device="cpu", dtype=torch.float32):
        from diffusers import AutoencoderKL

        self.vae = AutoencoderKL.from_pretrained(name, torch_dtype=dtype).to(device).eval()
        self.factor = self.vae.config.scaling_factor

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * f, c, h, w).to(self.vae.dtype)
        z = self.vae.encode(frames).latent_dist.sample() * self.factor
        return z.reshape(b, f, *z.shape[1:]).transpose(1, 2)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = z.shape
        x = self.vae.decode(z.transpose(1, 2).reshape(b * f, c, h, w).to(self.vae.dtype) / self.factor).sample
        return x.reshape(b, f, *x.shape[1:]).transpose(1, 2).clamp(-1, 1)


def codec_for(config, device="cpu", dtype=torch.float32):
    if config.space == "pixel":
        return PixelSpace()
    from .components import components_of

    return LatentSpace(components_of(config).vae, device=device, dtype=dtype)


def frames_to_tensor(rgb: torch.Tensor) -> torch.Tensor:
    """(B, F, H, W, 3) uint8 -> (B, 3, F, H, W) float in [-1, 1]."""
    return rgb.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def tensor_to_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, F, H, W) in [-1, 1] -> (B, F, H, W, 3) uint8."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1)
