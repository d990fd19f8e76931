"""Small analytic scenes for the geometry tests and benchmarks/ga_bench.py: cameras inside a box
room, exact depth by ray casting, and what a network would predict for a pair/window graph.

A test fixture, so it lives with the tests (imported as ``backend_tests.synthetic_geometry``;
tests/conftest.py puts tests/ on sys.path). Not the data engine (``backend/data`` renders
textured scenes); this only needs geometry, so it is exact, fast and deterministic by seed.
"""

from __future__ import annotations

import math

import torch

from backend.geometry.cameras import depth_to_pointmap, intrinsics_matrix, invert_pose, pixel_grid, transform_points
from backend.geometry.rotations import axis_angle_to_matrix, make_transform

ROOM_HALF_EXTENT = (4.0, 3.0, 6.0)


def box_room_depth(c2w: torch.Tensor, K: torch.Tensor, height: int, width: int,
                   half_extent=ROOM_HALF_EXTENT) -> torch.Tensor:
    """Depth (z) maps (F, H, W) of cameras c2w (F, 4, 4), K (F, 3, 3) inside an axis-aligned box."""
    uv = pixel_grid(height, width, dtype=c2w.dtype, device=c2w.device).reshape(-1, 2)
    Kf = K[:, None]
    d_cam = torch.stack([(uv[:, 0] - Kf[..., 0, 2]) / Kf[..., 0, 0],
                         (uv[:, 1] - Kf[..., 1, 2]) / Kf[..., 1, 1], torch.ones_like(uv[:, 0]).expand(len(K), -1)], -1)
    d = d_cam @ c2w[:, :3, :3].transpose(-1, -2)  # world directions whose camera z is 1
    c = c2w[:, None, :3, 3]
    L = torch.tensor(half_extent, dtype=c2w.dtype, device=c2w.device)
    t = torch.where(d > 0, (L - c) / d.clamp_min(1e-12), (-L - c) / d.clamp_max(-1e-12))
    return t.min(-1).values.reshape(len(K), height, width)  # ray parameter = depth (z = 1 per unit)


def smooth_trajectory(n_frames: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """A handheld-like dolly: centres on a gentle curve, yaw/pitch drifting. (F, 4, 4) c2w in world."""
    g = torch.Generator().manual_seed(seed)
    s = torch.linspace(0, 1, n_frames, dtype=dtype)
    a = (torch.rand(6, generator=g, dtype=dtype) - 0.5)
    centres = torch.stack([-1.0 + 2.0 * s + 0.2 * a[0] * torch.sin(3 * s),
                           0.3 * a[1] * s, 0.8 * s + 0.3 * a[2] * s ** 2], -1)
    yaw = math.radians(25) * (s - 0.5) + 0.1 * a[3]
    pitch = math.radians(8) * a[4] * s
    roll = math.radians(3) * a[5] * s
    R = axis_angle_to_matrix(torch.stack([torch.zeros_like(s), yaw, torch.zeros_like(s)], -1)) \
        @ axis_angle_to_matrix(torch.stack([pitch, torch.zeros_like(s), torch.zeros_like(s)], -1)) \
        @ axis_angle_to_matrix(torch.stack([torch.zeros_like(s), torch.zeros_like(s), roll], -1))
    return make_transform(R, centres)


def make_clip(n_frames: int = 16, height: int = 48, width: int = 64, focal: float | None = None, seed: int = 0,
              dtype=torch.float64) -> dict:
    """Ground truth for a clip: c2w relative to frame 0, K, depth, camera-frame and world point maps."""
    c2w = smooth_trajectory(n_frames, seed, dtype)
    f = focal if focal is not None else 0.9 * max(height, width)
    K = intrinsics_matrix(f, f, (width - 1) / 2, (height - 1) / 2).to(dtype).expand(n_frames, 3, 3).clone()
    depth = box_room_depth(c2w, K, height, width)
    # express everything in frame 0's camera (the bundle's world convention)
    c2w = invert_pose(c2w[:1]) @ c2w
    X_cam = depth_to_pointmap(depth, K)
    X_world = transform_points(c2w, X_cam)
    return {"c2w": c2w, "K": K, "depth": depth, "X_cam": X_cam, "X_world": X_world, "focal": f}


def corrupt(X: torch.Tensor, rel_noise: float, outlier_frac: float, generator: torch.Generator):
    """Gaussian noise proportional to distance, and a fraction of points replaced by junk.

    Returns (noisy X, outlier mask). Outliers are the true point moved by 30-100% of its distance
    in a random direction, so they stay plausible (not trivially far away).
    """
    dist = X.norm(dim=-1, keepdim=True)
    Xn = X + rel_noise * dist * torch.randn(X.shape, generator=generator, dtype=X.dtype)
    out = torch.rand(X.shape[:-1], generator=generator, dtype=X.dtype) < outlier_frac
    direction = torch.randn(X.shape, generator=generator, dtype=X.dtype)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    mag = (0.3 + 0.7 * torch.rand(X.shape[:-1] + (1,), generator=generator, dtype=X.dtype)) * dist
    Xn = torch.where(out[..., None], X + mag * direction, Xn)
    return Xn, out


def graph_views(clip: dict, frame: torch.Tensor, group: torch.Tensor, rel_noise: float = 0.01,
                outlier_frac: float = 0.0, seed: int = 0, pose_jitter: float = 0.0, focal_jitter: float = 0.0):
    """What a network would predict for a pair/window graph: view v is frame ``frame[v]`` in the
    camera of its group's first view, at the group's own random scale.

    Noise and outliers as in ``corrupt``; confidences uniform in [1, 10], 1.2 on outliers.
    ``pose_jitter`` (in units of the mean step between frames) moves each frame's camera centre
    and ``focal_jitter`` (relative) stretches its map sideways, independently per frame and the
    same in every group: the frame-to-frame jitter JOG3R's temporal terms are meant to remove.
    Returns pointmaps (V, H, W, 3), confidence (V, H, W).
    """
    g = torch.Generator().manual_seed(seed)
    X_cam, c2w = clip["X_cam"], clip["c2w"]
    n, H, W = X_cam.shape[:3]
    step = (c2w[1:, :3, 3] - c2w[:-1, :3, 3]).norm(dim=-1).mean()
    jit_t = pose_jitter * step * torch.randn(n, 3, generator=g, dtype=X_cam.dtype)
    jit_f = 1 + focal_jitter * torch.randn(n, generator=g, dtype=X_cam.dtype)
    scales = torch.exp(torch.empty(int(group.max()) + 1, dtype=X_cam.dtype).uniform_(-0.7, 0.7, generator=g))
    maps, confs = [], []
    for v in range(len(frame)):
        f, grp = int(frame[v]), int(group[v])
        ref = int(frame[torch.nonzero(group == grp)[0, 0]])
        X = X_cam[f].clone()
        T = c2w[f].clone()
        if f != ref:  # the reference view of a group is its own camera: nothing to jitter
            X[..., :2] *= jit_f[f]
            T[:3, 3] += jit_t[f]
        X = transform_points(invert_pose(c2w[ref]) @ T, X)
        X, out = corrupt(X, rel_noise, outlier_frac, g)
        maps.append(scales[grp] * X)
        conf = 1 + 9 * torch.rand(H, W, generator=g, dtype=X.dtype)
        confs.append(torch.where(out, torch.full_like(conf, 1.2), conf))
    return torch.stack(maps), torch.stack(confs)
