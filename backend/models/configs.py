"""Named model configurations.

``tiny``: what we train on the synthetic engine and ship (pixel space 64x64, patch 4, 8 STDiT
blocks of width 256, geometry from block 6 = 3/4 of the depth). Shipped in fp16 (see
``backend/weights/parallax-tiny``), which keeps it under 32 MB.

``opensora-1.0``: the OpenSora 1.0 STDiT size JOG3R builds on: 28 blocks, hidden 1152,
16 heads, patch (1, 2, 2) on 4-channel SD-VAE latents of 256x256 frames (32x32 latents),
16 frames, T5-XXL captions (4096 channels, 120 tokens), geometry from block 26 through a
6-block decoder. Describable and instantiable; never trained here.
"""

from __future__ import annotations

CONFIGS: dict[str, dict] = {
    "tiny": dict(
        sample_size=64, num_frames=16, in_channels=3, patch_size=(1, 4, 4),
        hidden_size=256, depth=8, num_heads=4, mlp_ratio=4.0,
        caption_channels=384, model_max_length=32,
        geometry_block=6, decoder_mode="global", decoder_dim=256, decoder_depth=2, decoder_heads=4,
        geometry_patch=4, space="pixel",
    ),
    "opensora-1.0": dict(
        sample_size=32, num_frames=16, in_channels=4, patch_size=(1, 2, 2),
        hidden_size=1152, depth=28, num_heads=16, mlp_ratio=4.0,
        caption_channels=4096, model_max_length=120,
        geometry_block=26, decoder_mode="global", decoder_dim=768, decoder_depth=6, decoder_heads=12,
        geometry_patch=16, space="latent",
    ),
}

# Each config's pipeline components (not the transformer's config: see ``components.py``).
COMPONENTS: dict[str, dict] = {
    "tiny": dict(text_encoder="minilm", vae=None),
    "opensora-1.0": dict(text_encoder="DeepFloyd/t5-v1_1-xxl", vae="stabilityai/sd-vae-ft-ema"),
}


def get_config(name: str, **overrides) -> dict:
    if name not in CONFIGS:
        raise KeyError(f"unknown model config {name!r}; known: {sorted(CONFIGS)}")
    cfg = dict(CONFIGS[name])
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise KeyError(f"unknown config keys {sorted(unknown)}")
    cfg.update(overrides)
    return cfg


def build_model(name: str, **overrides):
    from .stdit import ParallaxSTDiT

    return ParallaxSTDiT(**get_config(name, **overrides))
