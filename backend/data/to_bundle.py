"""Synthetic clips as ground truth on disk: a rendered clip -> a result bundle
(``backend.bundle.Bundle``, task ``ground_truth``) and its full ground truth as numpy arrays
(the ``gt/ground_truth.npz`` beside each bundle)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..bundle import Bundle, CameraFrame, DepthFrame, PointFrame

if TYPE_CHECKING:
    from .synth import ClipBatch


def clip_to_bundle(batch: ClipBatch, i: int = 0, fps: float = 24.0) -> Bundle:
    """Clip ``i`` of ``batch`` as a ground-truth result bundle (task ``ground_truth``)."""
    rgb = batch.rgb[i].cpu().numpy()
    depth = batch.depth[i].cpu().numpy()
    pts_cam0 = batch.points[i].cpu().numpy()
    c2w = batch.c2w[i].cpu().numpy().astype(np.float64)
    K = batch.K[i].cpu().numpy().astype(np.float64)
    F, H, W = depth.shape
    # Re-orthonormalise in float64: the float32 rotation must pass the bundle's rotation check.
    for f in range(F):
        U, _, Vt = np.linalg.svd(c2w[f, :3, :3])
        c2w[f, :3, :3] = U @ Vt
    cams = [CameraFrame(index=f, c2w=c2w[f], fx=float(K[f, 0, 0]), fy=float(K[f, 1, 1]),
                        cx=float(K[f, 0, 2]), cy=float(K[f, 1, 2])) for f in range(F)]
    points, depths = [], []
    for f in range(F):
        valid = np.isfinite(depth[f])
        xyz = pts_cam0[f][valid].astype(np.float32)  # world = frame-0 camera already
        points.append(PointFrame(xyz=xyz, rgb=rgb[f][valid], conf=np.ones(len(xyz), np.float16)))
        depths.append(DepthFrame(depth=depth[f].astype(np.float32), conf=valid.astype(np.float16)))
    return Bundle(task="ground_truth", width=W, height=H, frame_count=F, fps=float(fps), engine="synthetic",
                  model_id="parallax-synth", frames=[rgb[f] for f in range(F)], cameras=cams, points=points,
                  depth=depths, source={"seed": int(batch.seeds[i]), "caption": batch.captions[i],
                                        "motion": batch.motions[i]})


def clip_ground_truth(batch: ClipBatch, i: int = 0) -> dict:
    """Clip ``i``'s full ground truth as numpy arrays (for the ``gt/`` npz beside a bundle)."""
    out = {k: getattr(batch, k)[i].cpu().numpy() for k in ("depth", "points", "rays", "c2w", "K", "dynamic_mask")}
    if batch.object_ids is not None:
        out["object_ids"] = batch.object_ids[i].cpu().numpy()
    return out
