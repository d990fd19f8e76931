"""The ``geometry`` engine: a feed-forward geometry model (the geometry role) as a camera solver.

``solve --engine geometry --model ID_OR_PATH``: the model (a catalogue id such as Depth
Anything 3, or a folder in the hub's layout; default the shipped parallax-tiny) predicts each
frame's depth, camera and confidence in one pass over the clip (chunked as its authors
recommend); the bundle holds those cameras, the depth maps and the confident depth as world
points, and ``source["geometry"]`` names the model. A loaded model is kept per engine for the
next solve (the service holds one engine).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..bundle import Bundle
from ..io_video import check_solvable, load_clip
from ..runtime import Progress, pick_device

DEFAULT_MODEL = "parallax-tiny"


def load_geometry_model(model: Optional[str], device, resolution: Optional[int] = None, download: bool = False):
    """The geometry role for a catalogue id or folder (``backend.hub``); ValueError when it
    cannot be had (the catalogue's message says how to download it)."""
    from ..hub.catalogue import ModelNotAvailable, resolve_model
    from ..hub.geometry import load_geometry

    try:
        resolved = resolve_model(model or DEFAULT_MODEL, download=download)
    except ModelNotAvailable as e:
        raise ValueError(str(e)) from None
    return load_geometry(resolved, device=device, resolution=resolution)


class GeometryEngine:
    """``solve(frames, progress=None, *, start, stride, max_frames, model, resolution, K, fps) -> Bundle``."""

    name = "geometry"

    def __init__(self, device=None):
        self.device = pick_device(device)
        self._loaded: dict = {}

    def geometry(self, model: Optional[str], resolution: Optional[int] = None):
        key = (model or DEFAULT_MODEL, resolution)
        if key not in self._loaded:
            self._loaded = {key: load_geometry_model(key[0], self.device, resolution)}  # one model held at a time
        return self._loaded[key]

    def solve(self, frames, progress=None, *, start: int = 0, stride: int = 1, max_frames: Optional[int] = None,
              model: Optional[str] = None, resolution: Optional[int] = None, K=None,
              fps: Optional[float] = None) -> Bundle:
        from ..pipelines.geometry_bundle import prediction_parts
        from ..roles import describe

        progress = Progress.of(progress, device=self.device)
        clip = load_clip(frames, start=start, stride=stride, max_frames=max_frames)
        check_solvable(clip, min_frames=2)  # before the model loads: bad input costs nothing
        progress(0.0, "loading model")
        with progress.timed("load"):
            geometry = self.geometry(model, resolution)
        video = np.stack(clip.frames)
        n, H, W = video.shape[:3]
        pred = geometry.predict(video, K=None if K is None else np.asarray(K, np.float64),
                                progress=progress.span(0.02, 0.9, "geometry"))
        pred.validate(n, H, W)
        progress(0.92, "writing")
        with progress.timed("assemble"):
            cams, points, depth = prediction_parts(pred, video)
        solved = int(np.isfinite(pred.c2w).reshape(n, -1).all(-1).sum())
        counts = [len(p.xyz) for p in points]
        progress(1.0, "done")
        return Bundle(task="solve", width=W, height=H, frame_count=n, fps=float(fps or clip.fps), engine=self.name,
                      model_id=geometry.model_id, frames=list(video), cameras=cams, points=points, depth=depth,
                      scores={"registered": solved, "confidence": float(np.mean(pred.conf)),
                              "points_per_frame": counts,
                              "frames_without_points": [i for i, c in enumerate(counts) if c == 0]},
                      timings={k: round(v, 4) for k, v in progress.timings.items()},
                      source={"input": clip.source, "frame_indices": clip.indices, "frames": n, "start": start,
                              "stride": stride, "geometry": describe(geometry), "geometry_extras": pred.extras})
