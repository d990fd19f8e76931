"""Cameras of one model window from its point maps: what V2C and T2V+C share (JOG3R sec. 3.2).

Focal from frame 1's own point map X^{1,1} (least squares + Weiszfeld, geometry core), shared by
all frames; each frame's c2w by PnP-RANSAC of X^{f,1} at its pixels; then DUSt3R-style global
alignment with JOG3R's temporal terms refines poses, depth and focal. Last, a photometric
refinement moves the poses so that the frames, warped into each other through that depth, agree
(``geometry/photometric.py``: the point maps fix rotation well but not the small baselines'
directions; the pixels do).
"""

from __future__ import annotations

from typing import Optional

import torch

from ..runtime import Progress
from .assemble import CONFIDENT, confidence_weights

# Progress shares of a window's two optimisations (measured: about equal time on the CPU).
ALIGNMENT_SHARE = 0.5


def cameras_from_pointmaps(points: torch.Tensor, conf: torch.Tensor, K: Optional[torch.Tensor] = None,
                           align: bool = True, rays: Optional[torch.Tensor] = None,
                           frames: Optional[torch.Tensor] = None, progress=None, alignment_iters: int = 300,
                           photometric_iters: Optional[int] = None) -> dict:
    """Cameras of one window from its point maps X^{f,1} (F, S, S, 3) and confidence (F, S, S).

    With ``rays`` (F, S, S, 6), the ray head's Plücker maps, each frame's camera comes from its
    rays (centre: the point they meet at; rotation: Kabsch to the canonical rays), scaled into
    the point map's units; the point maps then give only the focal. Else PnP-RANSAC of X^{f,1}
    per frame, refined (``align``) by the global alignment with JOG3R's temporal terms.
    ``frames`` (F, S, S, 3) uint8, the window's frames at the point maps' size: given, the
    cameras are then refined photometrically. ``progress`` spans both optimisations.
    ``alignment_iters`` (Adam iterations of the global alignment) and ``photometric_iters``
    (per blur level; None: the refinement's default) trade accuracy for time (the CPU preset,
    ``t2v.FAST_CPU``).
    Returns c2w (F, 4, 4) float64 in the window's first-frame coordinates, K (pixels of the
    S x S frames), the points (possibly refined) and their confidence.
    """
    from ..geometry.pnp import intrinsics_from_pointmap, poses_from_pointmaps_pnp

    progress = Progress.of(progress)
    device = points.device  # the alignment runs where the network ran (CUDA graphs on a GPU)
    known_K = K is not None
    pts = points.double().cpu()
    w = confidence_weights(conf.double().cpu())
    K = intrinsics_from_pointmap(pts[0], w[0]) if K is None else torch.as_tensor(K, dtype=torch.float64)
    refine = progress.span(ALIGNMENT_SHARE, 1.0, "photometric refinement")
    if rays is not None:
        result = {"c2w": _cameras_from_rays(rays, pts, w), "K": K, "points": pts.float(), "conf": conf.float().cpu()}
        return _photometric(result, frames, device, refine, photometric_iters)
    c2w = poses_from_pointmaps_pnp(pts, K, w)
    result = {"c2w": c2w, "K": K, "points": pts.float(), "conf": conf.float().cpu()}
    if align:
        aligned = _global_alignment(result, known_K, device, progress.span(0.0, ALIGNMENT_SHARE, "alignment"),
                                    alignment_iters)
        if torch.isfinite(aligned["c2w"]).all() and torch.isfinite(aligned["points"]).all():
            result = aligned  # else keep the PnP cameras (alignment diverged)
    return _photometric(result, frames, device, refine, photometric_iters)


def _photometric(window: dict, frames: Optional[torch.Tensor], device, progress: Progress,
                 iters_per_level: Optional[int] = None) -> dict:
    """Refine the window's cameras photometrically on its own depth (each frame's points in its
    camera); the points then follow their frame's refined camera, so depth maps are unchanged.
    No ``frames``: the window as it is."""
    from ..geometry.cameras import invert_pose, transform_points
    from ..geometry.photometric import refine_cameras

    if frames is None:
        return window
    c2w = window["c2w"].double()
    cam = transform_points(invert_pose(c2w), window["points"].double())
    weights = (window["conf"].double() > CONFIDENT) & (cam[..., 2] > 0)
    extra = {} if iters_per_level is None else {"iters_per_level": int(iters_per_level)}
    res = refine_cameras(frames, cam[..., 2], weights.double(), window["K"], c2w, device=device, progress=progress,
                         **extra)
    if not torch.isfinite(res.c2w).all():
        return window  # keep the cameras it started from
    points = transform_points(res.c2w, cam)
    return {**window, "c2w": res.c2w, "points": points.float(), "photometric_s": sum(res.timings.values())}


def _cameras_from_rays(rays: torch.Tensor, points: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """c2w (F, 4, 4) in frame 1's camera from the ray maps. The head predicts moments in the
    normalised units of training (point scale 1), so centres are scaled by the point maps'
    own average distance to share their world; frame 1 is set to the identity exactly."""
    from ..geometry.cameras import invert_pose
    from ..geometry.rays import rays_to_camera

    c2w, _ = rays_to_camera(rays.double().cpu(), weights.clamp_min(1e-6))
    valid = weights > 0
    scale = points.norm(dim=-1)[valid].mean() if valid.any() else points.norm(dim=-1).mean()
    c2w[:, :3, 3] *= scale
    return invert_pose(c2w[0]) @ c2w  # re-anchor: frame 1 is the origin by definition


def _global_alignment(window: dict, known_focal: bool, device, progress: Progress, n_iters: int = 300) -> dict:
    """Refine with the geometry core's DUSt3R-style global alignment over the window (one
    group: every frame's X^{f,1} in frame 1's camera), with JOG3R's temporal terms L_fl and
    L_tranl (weights from the geometry core's tests), initialised as the core does (PnP)."""
    from ..geometry.alignment import AlignmentLoss, Intrinsics, global_align
    from ..geometry.optim import AdamSettings

    n = window["points"].shape[0]
    res = global_align(window["points"], window["conf"], torch.arange(n), torch.zeros(n, dtype=torch.long),
                       intrinsics=Intrinsics(focal=float(window["K"][0, 0]) if known_focal else None,
                                             optimize_focal=not known_focal),
                       loss=AlignmentLoss(w_focal_smooth=1.0, w_transl_smooth=0.03),
                       adam=AdamSettings(n_iters=int(n_iters)), device=device, progress=progress)
    return {"c2w": res.c2w.double().cpu(), "K": res.K[0].double().cpu(), "points": res.points.float().cpu(),
            "conf": window["conf"], "alignment_s": sum(res.timings.values())}
