"""The rendered clip the solver tests share: seed 0 of the data engine, a static scene with
photo textures (``../shared/textures`` when present), one camera motion. Imported as
``backend_tests.textured_clips`` (tests/conftest.py puts tests/ on sys.path)."""

from __future__ import annotations

import numpy as np
import pytest


def textured_clip(frames: int = 16, height: int = 192, width: int = 256, motion: str = "orbit"):
    """(clip, frames as contiguous (H, W, 3) uint8 arrays, ground-truth c2w (F, 4, 4) float64,
    K (3, 3) float64); skips when the data engine is not installed."""
    synth = pytest.importorskip("backend.data.synth", reason="needs backend.data.synth")
    from backend.eval.datasets import find_shared

    clip = synth.render_clip(seed=0, frames=frames, height=height, width=width, textures=find_shared("textures"),
                             dynamic=False, motion=motion)
    images = [np.ascontiguousarray(f) for f in clip.rgb[0].cpu().numpy()]
    return (clip, images, clip.c2w[0].cpu().numpy().astype(np.float64),
            clip.K[0, 0].cpu().numpy().astype(np.float64))
