"""Which pixels the aligned cameras cannot explain as static: the per-point dynamic flag of a 4D
reconstruction (DESIGN section 6).

Free-space test. Each pixel of frame f is moved, as if static, into neighbouring frames n
through its depth and the two cameras. If n's depth at that pixel is clearly *beyond* the point,
n sees through where the point should be: it was not there at time n. If n's depth is in front
of it, the point is hidden in n and that tells nothing (an object passing in front of static
background leaves the background static). A pixel is dynamic when at least ``min_fraction`` of
the neighbours that see it report the violation. The neighbour's depth is min-pooled first so
that a point on a depth edge, projected a pixel off by small pose errors, meets the nearer
surface rather than the background behind.

What it cannot see: the part of a moving object that still covers its own old pixels in every
neighbour (an object moving less than its size), and objects spinning in place (a quarter of
the synthetic engine's moving objects): their depth never changes. On exact synthetic depth and
cameras (training seeds 7, 8, 9, 11, 48 frames, 64 px) it finds 0-43 % of the true masks at the
settings below with no false positive (at most 75 % with a 15 % threshold and every frame as a
neighbour, a setting the estimated depth cannot afford). An appearance test (texture sliding
along a moving surface) was tried on exact data and flagged 4-17 % of the static pixels at 64 px
(texture aliasing, moving shadows), so it is not used.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .cameras import depth_to_pointmap, invert_pose, project, transform_points

# Frame offsets of the neighbours: near ones see small motions with little parallax error, far
# ones catch slow objects (an object moving less than its own size between near frames still
# covers its old pixels). With the threshold and fraction below, chosen on the reconstructions
# of three *training* seeds (101-103, 32 frames, the shipped model): mean IoU 0.12 against the
# true masks, where +-12 frames gave 0.11 and thresholds 0.10 / 0.15 flagged 5-23 % of the
# static pixels (the estimated depth is not consistent enough between frames for finer tests).
OFFSETS = (-24, -16, -12, -8, -4, -2, 2, 4, 8, 12, 16, 24)


def dynamic_mask(depth: torch.Tensor, c2w: torch.Tensor, K: torch.Tensor, *, offsets=OFFSETS,
                 threshold: float = 0.25, min_fraction: float = 0.2, pool: int = 3,
                 valid: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel dynamic mask (F, H, W) bool and its score (the fraction of seeing neighbours that
    report a violation, (F, H, W) in [0, 1]).

    depth (F, H, W) > 0 where known (elsewhere, e.g. sky, a neighbour sees infinitely far);
    c2w (F, 4, 4); K (F, 3, 3) or (3, 3). threshold: the relative depth difference that counts
    as free space (or as hidden). valid (F, H, W) bool: the pixels to test (default: known depth).
    """
    depth = depth.double()
    n, H, W = depth.shape
    K = torch.as_tensor(K, dtype=torch.float64).expand(n, 3, 3)
    c2w = c2w.double()
    known = (depth > 0) & torch.isfinite(depth)
    valid = known if valid is None else valid.bool() & known
    world = depth_to_pointmap(torch.where(known, depth, torch.ones_like(depth)), K, c2w)  # (F, H, W, 3)
    far = torch.where(known, depth, torch.full_like(depth, float("inf")))
    pooled = -F.max_pool2d(-far[:, None], pool, stride=1, padding=pool // 2)[:, 0] if pool > 1 else far
    seen = torch.zeros(n, H, W, dtype=torch.float64)
    violated = torch.zeros_like(seen)
    for off in offsets:
        if abs(off) >= n:
            continue
        src = torch.arange(max(0, -off), min(n, n - off))  # frames f with a neighbour f + off
        dst = src + off
        cam = transform_points(invert_pose(c2w[dst]), world[src])  # (S, H, W, 3) in the neighbour's camera
        uv, z = project(cam.reshape(len(src), -1, 3), K[dst])
        grid = torch.stack([2 * uv[..., 0] / max(W - 1, 1) - 1, 2 * uv[..., 1] / max(H - 1, 1) - 1], -1)[:, None]
        observed = F.grid_sample(pooled[dst, None], grid, mode="nearest", padding_mode="border",
                                 align_corners=True)[:, 0, 0].reshape(len(src), H, W)
        z = z.reshape(len(src), H, W)
        inside = (uv[..., 0] >= -0.5) & (uv[..., 0] <= W - 0.5) & (uv[..., 1] >= -0.5) & (uv[..., 1] <= H - 0.5)
        sees = valid[src] & (z > 0) & inside.reshape(len(src), H, W)
        # an infinitely far observation (sky) beyond the point is a violation too
        beyond = sees & (observed - z > threshold * z)
        hidden = sees & (z - observed > threshold * z)
        seen[src] += (sees & ~hidden).double()
        violated[src] += beyond.double()
    score = torch.where(seen > 0, violated / seen.clamp_min(1), torch.zeros_like(seen))
    mask = (seen > 0) & (score >= min_fraction) & valid
    return mask, score
