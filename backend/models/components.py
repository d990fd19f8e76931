"""Where a ParallaxSTDiT checkpoint's pipeline components come from: its text encoder and VAE.

The transformer's config no longer names them (issue 16: a diffusers pipeline folder lists
them in ``model_index.json``). For a bare transformer folder, such as the shipped
``backend/weights/parallax-tiny``, they are found, in order:

1. in the keys ``text_encoder`` / ``vae`` of a checkpoint written before that change
   (diffusers keeps unknown config keys as hidden entries of ``model.config``);
2. from the named config (``configs.COMPONENTS``) whose space and caption width the
   transformer has: 384-channel captions in pixel space are the tiny model's MiniLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .configs import COMPONENTS, CONFIGS


@dataclass(frozen=True)
class Components:
    """text_encoder: ``"minilm"`` (the offline package) or a hub id / folder of a T5 encoder;
    vae: a hub id / folder of the AutoencoderKL (latent space), None in pixel space."""

    text_encoder: str
    vae: Optional[str]


def components_of(config) -> Components:
    """The components of a transformer with ``config`` (a ``model.config``); ValueError when
    neither the config nor a named config says."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    if get("text_encoder") is not None:  # a checkpoint from before the cleanup
        return Components(str(get("text_encoder")), get("vae"))
    for name, cfg in CONFIGS.items():
        if cfg["space"] == get("space", "pixel") and cfg["caption_channels"] == get("caption_channels"):
            return Components(**COMPONENTS[name])
    raise ValueError(f"no text encoder is known for a {get('space')}-space transformer with "
                     f"{get('caption_channels')}-channel captions: load it as a pipeline folder (model_index.json)")
