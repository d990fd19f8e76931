"""Camera pose from 3D-2D correspondences with PnP-RANSAC (OpenCV), and from a world point map.

OpenCV runs on the CPU in float64; inputs may be torch tensors (any device) or numpy arrays.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .cameras import invert_pose, pixel_grid
from .rotations import as_tensor


def solve_pnp_ransac(points3d, pixels, K, reproj_threshold: float = 2.0, iterations: int = 1000,
                     confidence: float = 0.999, refine: bool = True, seed: int = 0):
    """World points (N, 3) seen at pixels (N, 2) by a camera with intrinsics K (3, 3).

    Returns (c2w (4, 4) float64 tensor, inlier mask (N,) bool tensor), or (None, None) when
    OpenCV finds no pose. Inliers are refined with Levenberg-Marquardt when ``refine``.
    """
    import cv2

    X = np.ascontiguousarray(as_tensor(points3d).cpu().numpy(), dtype=np.float64).reshape(-1, 3)
    uv = np.ascontiguousarray(as_tensor(pixels).cpu().numpy(), dtype=np.float64).reshape(-1, 2)
    Km = as_tensor(K).cpu().numpy().astype(np.float64)
    if len(X) < 6:
        return None, None
    cv2.setRNGSeed(seed)
    ok, rvec, tvec, inliers = cv2.solvePnPRansac(
        X, uv, Km, None, iterationsCount=iterations, reprojectionError=reproj_threshold,
        confidence=confidence, flags=cv2.SOLVEPNP_SQPNP)
    if not ok or inliers is None or len(inliers) < 6:
        return None, None
    idx = inliers[:, 0]
    if refine:
        rvec, tvec = cv2.solvePnPRefineLM(X[idx], uv[idx], Km, None, rvec, tvec)
    R, _ = cv2.Rodrigues(rvec)
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = R, tvec[:, 0]
    mask = np.zeros(len(X), bool)
    mask[idx] = True
    return invert_pose(torch.from_numpy(w2c)), torch.from_numpy(mask)


def pose_from_pointmap_pnp(pointmap_world: torch.Tensor, K, weights: torch.Tensor | None = None,
                           max_points: int = 4096, reproj_threshold: float | None = None, seed: int = 0, **kw):
    """c2w of the camera that sees world point map (H, W, 3) at its own pixel grid.

    weights (H, W): pixels with weight <= 0 are skipped; at most ``max_points`` pixels are used
    (a regular subsample keeps the spread). The RANSAC threshold defaults to 2% of the image size.
    Returns (c2w, inlier fraction) or (None, 0.0).
    """
    H, W = pointmap_world.shape[:2]
    X = pointmap_world.reshape(-1, 3)
    uv = pixel_grid(H, W, dtype=torch.float64, device=X.device).reshape(-1, 2)
    keep = torch.isfinite(X).all(-1)
    if weights is not None:
        keep &= weights.reshape(-1) > 0
    idx = torch.nonzero(keep)[:, 0]
    if len(idx) > max_points:
        idx = idx[torch.linspace(0, len(idx) - 1, max_points, device=idx.device).long()]
    thr = reproj_threshold if reproj_threshold is not None else 0.02 * max(H, W)
    c2w, inl = solve_pnp_ransac(X[idx], uv[idx], K, reproj_threshold=max(thr, 0.5), seed=seed, **kw)
    if c2w is None:
        return None, 0.0
    return c2w, float(inl.double().mean())


def intrinsics_from_pointmap(pointmap: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """K (3, 3) float64 of the square S x S frame a point map (S, S, 3) in its own camera's
    coordinates was seen from: the focal fitted to it (``focal.estimate_focal``), or a 60 deg
    field of view when that fit fails; the principal point at the centre."""
    from .focal import estimate_focal

    S = pointmap.shape[0]
    focal = float(estimate_focal(pointmap, weights=weights))
    if not math.isfinite(focal) or focal <= 0:
        focal = S / (2 * math.tan(math.radians(30)))
    return torch.tensor([[focal, 0, (S - 1) / 2], [0, focal, (S - 1) / 2], [0, 0, 1.0]], dtype=torch.float64)


def poses_from_pointmaps_pnp(pointmaps: torch.Tensor, K, weights: torch.Tensor | None = None,
                             max_points: int = 1024) -> torch.Tensor:
    """c2w (F, 4, 4) float64 of F frames whose point maps (F, H, W, 3) are in frame 0's camera
    coordinates: frame 0 is the identity, each other frame is placed by PnP-RANSAC on its point
    map (:func:`pose_from_pointmap_pnp`, seed = frame index), and a frame PnP fails on takes
    its nearest placed neighbour's pose (never NaN downstream)."""
    n = pointmaps.shape[0]
    c2w = torch.full((n, 4, 4), float("nan"), dtype=torch.float64)
    c2w[0] = torch.eye(4, dtype=torch.float64)
    for f in range(1, n):
        pose, _ = pose_from_pointmap_pnp(pointmaps[f], K, weights=None if weights is None else weights[f],
                                         max_points=max_points, seed=f)
        if pose is not None:
            c2w[f] = pose
    ok = torch.isfinite(c2w).flatten(1).all(-1)
    placed = torch.nonzero(ok)[:, 0]
    for f in torch.nonzero(~ok)[:, 0]:
        c2w[f] = c2w[placed[(placed - f).abs().argmin()]]
    return c2w
