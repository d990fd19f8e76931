"""Camera engines (the *solver* role): a clip in, a result bundle of cameras (and points) out.

Every engine is a class with a ``name`` and
``solve(frames, progress=None, *, start, stride, max_frames, **options) -> backend.bundle.Bundle``,
where ``frames`` is a list of (H, W, 3) uint8 images, a list of image paths or a video /
image-folder path, and ``progress`` is a :class:`backend.runtime.Progress` (or a plain
``callback(fraction, label)``); a cancel raises :class:`backend.runtime.Cancelled`.

The registry below is typed and in process: an :class:`EngineSpec` holds the engine's options
model (validated before any work starts) and a loader that imports its module only when the
engine is built, so listing engines is cheap and pycolmap or torch load only when one runs.
Adding an engine is one ``register(EngineSpec(...))``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable, Optional

from .base import EngineError, NothingRegistered, TooFewFrames
from .options import AutoOptions, ColmapOptions, EngineOptions, GeometryOptions, UnifiedOptions


@dataclass(frozen=True)
class EngineSpec:
    name: str
    description: str
    load: Callable[[], type]  # imports and returns the engine class
    options: type[EngineOptions]
    requires: tuple[str, ...] = ()  # Python modules it needs at run time (checked for /v1/health)
    # What else it needs (weight files, versions), checked cheaply without importing the engine:
    # returns why it cannot run here, or None.
    check: Optional[Callable[[], Optional[str]]] = None

    def unavailable_reason(self) -> Optional[str]:
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            return f"missing Python module(s): {', '.join(missing)}"
        return self.check() if self.check is not None else None

    def build(self, **init):
        return self.load()(**init)


ENGINES: dict[str, EngineSpec] = {}


def register(spec: EngineSpec) -> None:
    ENGINES[spec.name] = spec


def get_spec(name: str) -> EngineSpec:
    try:
        return ENGINES[name]
    except KeyError:
        raise EngineError(f"unknown engine {name!r}; available: {', '.join(sorted(ENGINES))}") from None


def get_engine(name: str, **init):
    """Build the engine called ``name`` (importing its module now)."""
    return get_spec(name).build(**init)


def _colmap() -> type:
    from .colmap import ColmapEngine

    return ColmapEngine


def _auto() -> type:
    from .auto import AutoEngine

    return AutoEngine


def _learned_default() -> Optional[str]:
    """auto's default candidates include ALIKED + LightGlue: without them it is not the engine
    it says it is (it would be colmap with SIFT, twice as slow)."""
    from .features import unavailable_reason
    from .options import AUTO_CANDIDATES

    reasons = [r for c in AUTO_CANDIDATES if (r := unavailable_reason(c))]
    return "; ".join(reasons) or None


def _geometry() -> type:
    from .geometry import GeometryEngine

    return GeometryEngine


def _unified() -> type:
    from ..pipelines.v2c import UnifiedEngine

    return UnifiedEngine


register(EngineSpec("colmap", "structure from motion with pycolmap (SIFT, or DISK / ALIKED + LightGlue with "
                              "features=...; GLOMAP or incremental mapping)",
                    _colmap, ColmapOptions, requires=("pycolmap", "PIL")))
register(EngineSpec("auto", "colmap with ALIKED + LightGlue and with SIFT; keeps the cameras that explain both's "
                            "verified matches best (a consistency score, recorded in the bundle)",
                    _auto, AutoOptions, requires=("pycolmap", "PIL", "torch", "kornia"), check=_learned_default))
register(EngineSpec("unified", "the unified model's V2C: point maps of model windows, aligned",
                    _unified, UnifiedOptions, requires=("torch", "diffusers", "safetensors")))
register(EngineSpec("geometry", "a feed-forward geometry model (model=catalogue id or folder: Depth Anything 3, or "
                                "the unified model by default): depth, cameras and confidence per frame in one pass",
                    _geometry, GeometryOptions, requires=("torch", "safetensors")))

__all__ = ["ENGINES", "EngineError", "EngineSpec", "NothingRegistered", "TooFewFrames", "get_engine", "get_spec",
           "register"]
