"""Reconstruct a dynamic scene with a hub geometry model (``reconstruct --model ID_OR_PATH``).

A feed-forward geometry model such as Depth Anything 3 already gives every frame's depth,
camera and confidence in one consistent world (its own chunking handles long clips), so there
are no unified-model windows to fuse: the prediction is taken as it is, and the dynamic flag
comes from the same free-space test as the unified path (``geometry.dynamic``), run on the
point grid the bundle's points use. The bundle's ``engine`` is ``geometry`` and its
``source["geometry"]`` names the model; its scores carry the keys the unified path's do (one
"window" per chunk of the model) so that the CLI summary and the panels read both alike.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..bundle import Bundle
from ..runtime import Progress
from .geometry_bundle import point_stride, prediction_parts

ENGINE = "geometry"


def reconstruct_with_geometry(geometry, frames, progress=None, *, start: int = 0, stride: int = 1,
                              max_frames=None, fps=None, K=None) -> Bundle:
    """``Bundle(task="reconstruct")`` of ``frames`` (a path, image paths or (F, H, W, 3) uint8)
    from ``geometry`` (anything filling ``backend.roles.Geometry``)."""
    from ..geometry.dynamic import dynamic_mask
    from ..roles import describe
    from .reconstruct import STATIC_TRAVEL, _memory, _name, _read

    progress = Progress.of(progress, device=getattr(geometry, "device", None))
    progress(0.0, "reading")
    clip = _read(frames, start, stride, max_frames)
    video = np.stack(clip.frames)
    n, H, W = video.shape[:3]
    pred = geometry.predict(video, K=None if K is None else np.asarray(K, np.float64),
                            progress=progress.span(0.02, 0.85, "geometry"))
    pred.validate(n, H, W)
    step = point_stride(H, W)
    span = progress.span(0.85, 0.95, "dynamic mask")
    span(0.0)
    with progress.timed("dynamic"):
        depth = torch.as_tensor(pred.depth[:, ::step, ::step].copy())
        K_grid = torch.as_tensor(pred.K).clone()
        K_grid[:, :2] /= step
        c2w = torch.as_tensor(pred.c2w)
        posed = torch.isfinite(c2w).flatten(1).all(-1)
        dyn = torch.zeros(depth.shape, dtype=torch.bool)
        if int(posed.sum()) >= 2:
            dyn[posed], _ = dynamic_mask(depth[posed], c2w[posed], K_grid[posed])
    span(1.0)
    progress(0.96, "writing")
    with progress.timed("assemble"):
        cams, points, depth_parts = prediction_parts(pred, video, dynamic=dyn.numpy())
    kept = pred.conf[:, ::step, ::step] > pred.conf_threshold
    dynamic_fraction = float(dyn.numpy()[kept].mean()) if kept.any() else 0.0
    travel = _travel(pred)
    chunks = pred.extras.get("chunks") or [[0, n]]
    static = travel < STATIC_TRAVEL
    message = (f"reconstructed {n} frames with {describe(geometry)['name']} ({geometry.model_id}) in "
               f"{len(chunks)} chunk(s)"
               + (f"; the camera barely moves ({100 * travel:.1f} % of the median depth): only object motion "
                  "marks points dynamic" if static else ""))
    progress(1.0, "done")
    return Bundle(
        task="reconstruct", width=W, height=H, frame_count=n, fps=float(fps or clip.fps), engine=ENGINE,
        model_id=geometry.model_id, frames=list(video), cameras=cams, points=points, depth=depth_parts,
        scores={"confidence": float(np.mean(pred.conf)), "alignment_residual": None,
                "dynamic_fraction": dynamic_fraction,
                "windows": [{"start": int(a), "chunk": i, "reliable": True, "used": True}
                            for i, (a, _) in enumerate(chunks)],
                "window_reliability": [True] * len(chunks), "dropped_windows": [], "chunks": len(chunks),
                "camera_travel": travel if math.isfinite(travel) else None, "static_camera": static,
                "message": message, "memory": _memory(getattr(geometry, "device", "cpu"))},
        timings={k: round(v, 4) for k, v in progress.timings.items()},
        source={"input": _name(frames, clip), "frame_indices": list(clip.indices), "fps": float(fps or clip.fps),
                "start": start, "stride": stride, "geometry": describe(geometry), "geometry_extras": pred.extras})


def _travel(pred) -> float:
    """Largest camera distance from frame 0's, over the median depth (as the unified path's)."""
    d = pred.depth[pred.depth > 0]
    med = float(np.median(d)) if d.size else 1.0
    centres = pred.c2w[:, :3, 3]
    ok = np.isfinite(centres).all(-1)
    if not ok.any():
        return float("nan")
    return float(np.linalg.norm(centres[ok] - centres[0], axis=-1).max()) / max(med, 1e-12)


def resolve_reconstructor(model, device=None, resolution=None):
    """What ``reconstruct --model`` runs: ``(geometry, None)`` for a hub geometry model, or
    ``(None, model_path)`` for our own checkpoint (the unified path; None: the shipped one).
    ValueError when the model cannot be had (the catalogue's message says how to get it)."""
    if model is None:
        return None, None
    from ..hub.catalogue import ModelNotAvailable, resolve_model
    from ..hub.geometry import is_unified, load_geometry, transformer_folder

    try:
        resolved = resolve_model(model)
    except ModelNotAvailable as e:
        raise ValueError(str(e)) from None
    if is_unified(resolved):
        return None, transformer_folder(resolved.path)
    return load_geometry(resolved, device=device, resolution=resolution), None
