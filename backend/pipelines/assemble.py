"""Model outputs -> result-bundle parts: the one place point maps become bundle cameras, points
and depth (V2C and T2V+C share it), and the confidence convention that decides what is kept."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..bundle import CameraFrame, DepthFrame, PointFrame

# The geometry head's confidence is C = 1 + exp(c) >= 1 (DUSt3R's). Points with C <= 1.5 are
# left out of bundles and get no weight in camera fitting: on held-out clips they are the
# sky / far background whose point maps the model cannot place.
CONFIDENT = 1.5


def confidence_weights(conf: torch.Tensor) -> torch.Tensor:
    """Fitting weights from confidence: C - 1 where C > CONFIDENT, else 0."""
    return torch.where(conf > CONFIDENT, conf - 1.0, torch.zeros_like(conf))


def camera_frames(c2w, K, scale_to: Optional[tuple[int, int]] = None,
                  map_size: Optional[tuple[int, int]] = None) -> list[CameraFrame]:
    """Bundle cameras from c2w (F, 4, 4) and K (3, 3) or (F, 3, 3), in pixels of ``map_size``
    (height, width) frames; ``scale_to=(height, width)`` maps the intrinsics to the bundle's
    frames (pixel centres at integers)."""
    from ..geometry.cameras import resize_intrinsics

    c2w = torch.as_tensor(c2w)
    K = torch.as_tensor(K, dtype=torch.float64)
    K = K.expand(len(c2w), 3, 3) if K.ndim == 2 else K
    if scale_to is not None:
        if map_size is None:
            raise ValueError("camera_frames: scale_to needs map_size, the size K is given in")
        K = resize_intrinsics(K, scale_to[1] / map_size[1], scale_to[0] / map_size[0])
    return [CameraFrame(index=i, c2w=c2w[i].double().numpy(), fx=float(K[i, 0, 0]), fy=float(K[i, 1, 1]),
                        cx=float(K[i, 0, 2]), cy=float(K[i, 1, 2])) for i in range(len(c2w))]


def pointmap_parts(c2w: torch.Tensor, points: torch.Tensor, conf: torch.Tensor, rgb: torch.Tensor,
                   out_size: Optional[tuple[int, int]] = None,
                   dynamic: Optional[torch.Tensor] = None) -> tuple[list[PointFrame], list[DepthFrame]]:
    """Per-frame bundle points and depth from world point maps (F, S, S, 3) with confidence
    (F, S, S) and colours (F, S, S, 3) uint8 at the maps' size. Points keep C > CONFIDENT; depth
    is each frame's points in its own camera, resized (bilinear) to ``out_size`` (H, W).
    dynamic (F, S, S) bool: each point's flag (4D reconstructions); None leaves it unknown."""
    from ..geometry.cameras import pointmap_to_depth

    points, conf, rgb = points.float().cpu(), conf.float().cpu(), torch.as_tensor(rgb).cpu()
    depth = pointmap_to_depth(points, torch.as_tensor(c2w).float().cpu())  # in each frame's own camera
    pts_out, depth_out = [], []
    for i in range(len(points)):
        keep = conf[i] > CONFIDENT
        pts_out.append(PointFrame(points[i][keep].numpy(), rgb[i][keep].numpy(),
                                  conf[i][keep].numpy().astype(np.float16),
                                  None if dynamic is None else dynamic[i].cpu()[keep].numpy().astype(bool)))
        d, cf = depth[i], conf[i]
        if out_size is not None and tuple(out_size) != tuple(d.shape):
            d = F.interpolate(d[None, None], size=out_size, mode="bilinear", align_corners=False)[0, 0]
            cf = F.interpolate(cf[None, None], size=out_size, mode="bilinear", align_corners=False)[0, 0]
        depth_out.append(DepthFrame(d.clamp_min(0).numpy(), cf.numpy().astype(np.float16)))
    return pts_out, depth_out
