"""A geometry role's prediction (``backend.roles.GeometryPrediction``) -> result-bundle parts.

Depth and confidence go into the bundle at the frames' size. World points are depth
unprojected through each frame's camera, on a grid at most ``POINT_GRID`` pixels on the longer
side (a 1080p depth map would be two million points per frame), kept where the model's own
confidence passes its threshold (``GeometryPrediction.conf_threshold``).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..bundle import DepthFrame, PointFrame
from .assemble import camera_frames

POINT_GRID = 256  # longer side of the grid points are taken on


def point_stride(height: int, width: int, grid: int = POINT_GRID) -> int:
    """Pixel step of the point grid for frames of ``height`` x ``width``."""
    return max(1, -(-max(height, width) // grid))


def prediction_parts(pred, frames: np.ndarray, dynamic: Optional[np.ndarray] = None):
    """(cameras, points, depth) bundle parts of ``pred`` for ``frames`` (F, H, W, 3) uint8.

    ``dynamic`` (F, h, w) bool on the point grid (see :func:`point_stride`): each point's flag
    (reconstruct); None leaves it unknown. Frames without a pose (NaN c2w) get no points."""
    from ..geometry.cameras import depth_to_pointmap

    n, H, W = frames.shape[:3]
    step = point_stride(H, W)
    cams = camera_frames(torch.as_tensor(pred.c2w), torch.as_tensor(pred.K))
    points, depth = [], []
    for i in range(n):
        d = torch.as_tensor(pred.depth[i][::step, ::step], dtype=torch.float64)
        K = torch.as_tensor(pred.K[i], dtype=torch.float64).clone()
        K[:2] /= step  # the grid's pixel (u * step) -> u: centres at integers on both
        c2w = torch.as_tensor(pred.c2w[i], dtype=torch.float64)
        conf = pred.conf[i][::step, ::step]
        keep = (conf > pred.conf_threshold) & (pred.depth[i][::step, ::step] > 0)
        if not torch.isfinite(c2w).all():
            keep = np.zeros_like(keep)
        xyz = depth_to_pointmap(d, K, c2w).numpy() if keep.any() else np.zeros(d.shape + (3,))
        flag = None if dynamic is None else np.asarray(dynamic[i])[keep].astype(bool)
        points.append(PointFrame(xyz[keep].astype(np.float32), frames[i][::step, ::step][keep], _half(conf[keep]), flag))
        depth.append(DepthFrame(np.asarray(pred.depth[i], np.float32), _half(pred.conf[i])))
    return cams, points, depth


def _half(conf) -> np.ndarray:
    """Confidence as the bundle's float16; a model's exp-activated confidence can pass its range."""
    return np.clip(np.nan_to_num(np.asarray(conf, np.float32)), 0.0, 65000.0).astype(np.float16)
