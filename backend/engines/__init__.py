"""Camera engines: turn a clip into a result bundle of cameras (and sparse points).

Every engine is a class with a ``name`` and a method
``solve(frames, progress=None, **options) -> backend.bundle.Bundle`` where ``frames`` is a list
of (H, W, 3) uint8 images or a source path (video, image folder) and ``progress`` is an
optional ``callable(fraction, stage)``; returning ``False`` from it cancels the solve
(:class:`Cancelled` is raised at the next check).

Engines are listed here by import path and imported only when asked for, so listing them is
cheap and an engine's heavy dependencies (pycolmap, torch) load only when it runs. Adding an
engine is one line in :data:`ENGINES`.
"""

from __future__ import annotations

import importlib

from .base import Cancelled, EngineError, NothingRegistered, TooFewFrames

# name -> "module:Class", the module relative to this package
ENGINES = {
    "colmap": ".colmap:ColmapEngine",
    "unified": "..pipelines.v2c:UnifiedEngine",
}

__all__ = ["ENGINES", "Cancelled", "EngineError", "NothingRegistered", "TooFewFrames", "get_engine", "solve"]


def get_engine(name: str, **init_options):
    """Instantiate the engine called ``name`` (importing its module now)."""
    try:
        target = ENGINES[name]
    except KeyError:
        raise EngineError(f"unknown engine {name!r}; available: {', '.join(sorted(ENGINES))}") from None
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name, __package__)
    return getattr(module, class_name)(**init_options)


def solve(engine: str, frames, progress=None, **options):
    """``get_engine(engine).solve(frames, progress, **options)``."""
    return get_engine(engine).solve(frames, progress=progress, **options)
