"""Training data on the fly from the synthetic 4D engine (``backend.data.synth``).

Each process renders its own clips from seeds no other process or step uses, skipping the
engine's held-out split, so data never repeats and never leaks into evaluation.

Prefetching: the trainer asks for ``train_seeds(k, ...)`` then ``render(seeds, ...)`` with k =
0, 1, 2, ... The next request is therefore known, and ``render`` starts the CPU half of it
(numpy scene sampling and packing, ``backend.data.synth.prepare_seeds``) in the background
before rendering the current batch, so that work overlaps rendering and training steps. On a
CUDA device it runs in a worker process (a thread doing numpy work would hold the GIL that every
kernel launch of the training step needs). Clips are bit-identical with and without it (a clip
depends only on its seed). Environment: ``PARALLAX_SYNTH_PREFETCH=0`` turns prefetching off;
``PARALLAX_SYNTH_WORKERS=k`` sets the worker processes (default 1 on CUDA, 0 = in the prefetch
thread on the CPU).
"""

from __future__ import annotations

import atexit
import os
from typing import Optional

TRAIN_SEED_BASE = 1_000_000  # far from the small seeds people use by hand

# seeds of the last train_seeds call -> the seeds the next step will ask for
_next_seeds: dict = {}
_lookahead = None


def _synth():
    try:
        from ..data import synth
    except ImportError as e:  # pragma: no cover - depends on the data branch
        raise ImportError("training needs the synthetic data engine backend/data/synth.py") from e
    return synth


def _seed_range(step: int, rank: int, world: int, batch: int) -> list[int]:
    start = TRAIN_SEED_BASE + (step * world + rank) * batch
    return list(range(start, start + batch))


def train_seeds(step: int, rank: int, world: int, batch: int) -> list[int]:
    """Distinct seeds per (step, process); the engine's held-out range starts at 1e9, far above."""
    from ..data.splits import is_heldout

    seeds = _seed_range(step, rank, world, batch)
    assert not any(is_heldout(s) for s in seeds), "training seed ran into the held-out split"
    _next_seeds.clear()
    _next_seeds[tuple(seeds)] = _seed_range(step + 1, rank, world, batch)
    return seeds


def prefetch_enabled() -> bool:
    return os.environ.get("PARALLAX_SYNTH_PREFETCH", "1") not in ("0", "false", "no", "off")


def _workers(device: str) -> int:
    value = os.environ.get("PARALLAX_SYNTH_WORKERS", "")
    return int(value) if value.strip() else (1 if device.startswith("cuda") else 0)


def _prepare(seeds: tuple, frames: int, size: int, device: str, textures: Optional[str] = None):
    return _synth().prepare_seeds(list(seeds), frames, size, size, device, textures=textures,
                                  workers=_workers(device))


def render(seeds: list[int], frames: int, size: int, device, textures: Optional[str] = None) -> dict:
    """Render clips; returns tensors on ``device`` plus captions. ``textures``: a folder of photos
    that materials may use (the engine's photo pattern), None for procedural patterns only."""
    global _lookahead
    synth = _synth()
    dev = str(device)
    key = (tuple(int(s) for s in seeds), int(frames), int(size), dev, textures)
    prepared = _lookahead.take(key) if _lookahead is not None else None
    if prepared is None:
        prepared = _prepare(*key)
    following: Optional[list] = _next_seeds.get(key[0])
    if following is not None and prefetch_enabled():  # overlap the next batch's CPU work with this one
        if _lookahead is None:
            from ..data.prefetch import Lookahead

            _lookahead = Lookahead()
        nxt = (tuple(following), int(frames), int(size), dev, textures)
        _lookahead.submit(nxt, _prepare, *nxt)
    clip = synth.render_prepared(prepared, device)
    return {
        "rgb": clip.rgb.to(device), "depth": clip.depth.to(device), "points": clip.points.to(device),
        "rays": clip.rays.to(device), "c2w": clip.c2w.to(device), "K": clip.K.to(device),
        "captions": list(clip.captions),
    }


def close_prefetch() -> None:
    """Stop the background thread (it also stops at interpreter exit)."""
    global _lookahead
    if _lookahead is not None:
        _lookahead.close()
        _lookahead = None


atexit.register(close_prefetch)
