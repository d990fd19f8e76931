"""Synthetic footage through a distorting lens, with the distortion known exactly.

A lens with OpenCV's model maps the pinhole image point ``x`` (normalised) to the shot pixel
``K (x (1 + k1 r^2 + k2 r^4 + k3 r^6) + tangential)``. Footage with known ``dist`` is made by
rendering the pinhole clip once on a canvas wide enough for every shot pixel's ray, and then
sampling it, for each shot pixel, where that pixel's undistorted ray lands
(``cv2.undistortPoints``). The canvas has the clip's focal length and a principal point moved by
the margin, so its centre crop *is* the pinhole clip at the requested size (the same rays to
float precision): one render gives both the distorted footage and its pinhole ground truth.

Only the sampling is approximate (bilinear, one resampling of the rendered image); the geometry
is exact up to ``cv2.undistortPoints``' iteration (well under 0.01 px for |k| < 0.3).

    clip = render_distorted_clip(0, (-0.15, 0.05, 0.0, 0.0), frames=16, height=192, width=256)
    clip.frames      # as shot through the lens (what a solver sees)
    clip.pinhole     # the same frames through a pinhole with clip.K (what undistortion should give)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


@dataclass
class DistortedClip:
    """A rendered clip as shot through a lens, with its pinhole ground truth."""

    frames: list  # (H, W, 3) uint8 as shot (distorted)
    pinhole: list  # (H, W, 3) uint8 the same views through a pinhole camera with K
    K: np.ndarray  # (3, 3) pixel intrinsics, pixel centres at integers
    dist: np.ndarray  # OpenCV (k1, k2, p1, p2[, k3])
    c2w: np.ndarray  # (F, 4, 4) float64, world = frame 0's camera
    seed: int
    motion: str


def shot_to_pinhole_map(K: np.ndarray, dist: Sequence[float], width: int, height: int) -> np.ndarray:
    """(H, W, 2) float64: for every pixel of the shot (distorted) frame, where its ray meets
    the pinhole image with the same K (pixel centres at integers, as cv2 and the bundle)."""
    import cv2

    uv = np.stack(np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64)), -1)
    # cv2's iterative inversion stops after 5 steps by default: 50 steps bring it to ~1e-6 px
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-10)
    K = np.asarray(K, np.float64)
    out = cv2.undistortPoints(uv.reshape(-1, 1, 2), K, np.asarray(dist, np.float64), P=K, criteria=criteria)
    return out.reshape(height, width, 2)


def distort_frames(canvas: Sequence[np.ndarray], where: np.ndarray, offset: tuple[int, int]) -> list:
    """Shot frames sampled from pinhole ``canvas`` frames: shot pixel (u, v) takes the canvas
    at ``where[v, u] + offset`` (bilinear)."""
    import cv2

    map_x = (where[..., 0] + offset[0]).astype(np.float32)
    map_y = (where[..., 1] + offset[1]).astype(np.float32)
    return [cv2.remap(np.ascontiguousarray(f), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            for f in canvas]


def render_distorted_clip(seed: int, dist: Sequence[float], frames: int = 16, height: int = 192, width: int = 256,
                          textures: Optional[str] = None, motion: Optional[str] = "orbit",
                          fov_deg: Optional[float] = None, device="cpu") -> DistortedClip:
    """Clip ``seed`` of the synthetic engine (static scene) as shot through a lens with OpenCV
    distortion ``dist`` (k1, k2, p1, p2[, k3]), and through a pinhole (see the module doc).

    ``fov_deg``: horizontal field of view of the pinhole part (default: the scene's sampled
    one). ``textures``: a folder of photos (None: the engine's procedural patterns)."""
    from .scene import sample_scene
    from .synth import render_clip

    dist = np.asarray(dist, dtype=np.float64)
    if dist.shape not in ((4,), (5,)) or not np.isfinite(dist).all():
        raise ValueError(f"dist must be 4 or 5 finite OpenCV coefficients (k1, k2, p1, p2[, k3]), got {dist}")
    K = sample_scene(seed, frames, height, width, textures, None, False, None, motion).K.astype(np.float64)
    if fov_deg is not None:
        f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
        K[0, 0] = K[1, 1] = f
    where = shot_to_pinhole_map(K, dist, width, height)
    if not np.isfinite(where).all():
        raise ValueError(f"the distortion {dist.tolist()} does not invert over a {width}x{height} frame")
    # The canvas reaches every shot pixel's ray, plus a pixel for bilinear sampling.
    pad_x = max(0, int(math.ceil(max(-where[..., 0].min(), where[..., 0].max() - (width - 1))))) + 2
    pad_y = max(0, int(math.ceil(max(-where[..., 1].min(), where[..., 1].max() - (height - 1))))) + 2
    intrinsics = {"fx": float(K[0, 0]), "fy": float(K[1, 1]), "cx": float(K[0, 2]) + pad_x,
                  "cy": float(K[1, 2]) + pad_y}
    batch = render_clip(seed=seed, frames=frames, height=height + 2 * pad_y, width=width + 2 * pad_x,
                        textures=textures, intrinsics=intrinsics, dynamic=False, motion=motion, device=device)
    canvas = [np.ascontiguousarray(f) for f in batch.rgb[0].cpu().numpy()]
    pinhole = [np.ascontiguousarray(f[pad_y:pad_y + height, pad_x:pad_x + width]) for f in canvas]
    shot = distort_frames(canvas, where, (pad_x, pad_y))
    return DistortedClip(frames=shot, pinhole=pinhole, K=K, dist=dist, c2w=batch.c2w[0].cpu().numpy().astype(np.float64),
                         seed=int(seed), motion=batch.motions[0])
