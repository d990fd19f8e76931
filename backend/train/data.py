"""Training data on the fly from the synthetic 4D engine (``backend.data.synth``).

Each process renders its own clips from seeds no other process or step uses, skipping the
engine's held-out split, so data never repeats and never leaks into evaluation.
"""

from __future__ import annotations

import torch

TRAIN_SEED_BASE = 1_000_000  # far from the small seeds people use by hand


def _synth():
    try:
        from ..data import synth
    except ImportError as e:  # pragma: no cover - depends on the data branch
        raise ImportError("training needs the synthetic data engine backend/data/synth.py") from e
    return synth


def train_seeds(step: int, rank: int, world: int, batch: int) -> list[int]:
    """Distinct seeds per (step, process); the engine's held-out range starts at 1e9, far above."""
    from ..data.scene import is_heldout

    start = TRAIN_SEED_BASE + (step * world + rank) * batch
    seeds = [s for s in range(start, start + batch)]
    assert not any(is_heldout(s) for s in seeds), "training seed ran into the held-out split"
    return seeds


def render(seeds: list[int], frames: int, size: int, device) -> dict:
    """Render clips; returns tensors on ``device`` plus captions."""
    clip = _synth().render_batch(seeds, frames=frames, height=size, width=size, device=str(device))
    return {
        "rgb": clip.rgb.to(device), "depth": clip.depth.to(device), "points": clip.points.to(device),
        "rays": clip.rays.to(device), "c2w": clip.c2w.to(device), "K": clip.K.to(device),
        "captions": list(clip.captions),
    }
