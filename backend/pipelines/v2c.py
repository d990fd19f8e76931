"""V2C: cameras (and depth, points) of a given clip from the unified model (JOG3R sec. 3.2).

1. Resize the clip to the model's frame size; noise it to a small level (t = 5 of 1000:
   JOG3R samples t in [0, 5] at test time) with a fixed seed; one forward pass that stops at
   block b; the geometry branch gives X^{f,1}, confidence, disparity and rays per frame.
2. Cameras: focal from frame 1's own point map X^{1,1} (least squares + Weiszfeld, geometry
   core), shared by all frames; each frame's c2w by PnP-RANSAC of X^{f,1} at its pixels; then,
   when the geometry core provides it, DUSt3R-style global alignment with JOG3R's temporal
   terms refines poses, depth and focal. Last, a photometric refinement moves the poses so that
   the frames, warped into each other through that depth, agree (``geometry/photometric.py``:
   the point maps fix rotation well but not the small baselines' directions; the pixels do).
3. Clips longer than the model's window go through overlapping windows (Geo4D sec. 3.3):
   each window is solved in its own first-frame coordinates and chained to the previous one
   by a confidence-weighted robust Sim(3) on the overlapping frames' point maps.

:class:`UnifiedEngine` is what the engine registry points at ("unified").
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..bundle import Bundle, CameraFrame, DepthFrame, PointFrame
from .common import Cancelled, LazyModel, Progress, Timer, as_frames, report, resize_frames

GEOMETRY_T = 5.0  # of 1000 (sigma 0.005)
CAMERAS = "points"  # per-frame cameras from the ray head ("rays") or PnP on the point maps ("points")
PHOTOMETRIC = True  # refine the cameras photometrically (measured: held-out mAA@30 up, see RESULTS.md)


@torch.no_grad()
def predict_window(model, frames_small: torch.Tensor, t: float = GEOMETRY_T, seed: int = 0,
                   dtype=None) -> dict:
    """frames_small: (F, S, S, 3) uint8 on the model's device -> geometry maps (F, S, S, ...)."""
    from ..models.autoencoder import frames_to_tensor

    dev = next(model.parameters()).device
    x0 = frames_to_tensor(frames_small[None].to(dev))
    g = torch.Generator(device=dev).manual_seed(seed)
    noise = torch.randn(x0.shape, generator=g, device=dev)
    sigma = t / 1000.0
    xt = (1 - sigma) * x0 + sigma * noise
    with torch.autocast(dev.type, dtype=dtype or torch.bfloat16, enabled=dev.type == "cuda"):
        out = model(xt, torch.full((1,), t, device=dev), geometry=True, geometry_only=True)
    return {k: v[0].float() for k, v in out.geometry.items()}


def solve_window(points: torch.Tensor, conf: torch.Tensor, K: Optional[torch.Tensor] = None,
                 align: bool = True, rays: Optional[torch.Tensor] = None, callback=None,
                 frames: Optional[torch.Tensor] = None, refine_callback=None) -> dict:
    """Cameras of one window from its point maps X^{f,1} (F, S, S, 3) and confidence (F, S, S).

    With ``rays`` (F, S, S, 6), the ray head's Plücker maps, each frame's camera comes from its
    rays (centre: the point they meet at; rotation: Kabsch to the canonical rays), scaled into
    the point map's units; the point maps then give only the focal. Else PnP-RANSAC of X^{f,1}
    per frame, refined (``align``) by the global alignment with JOG3R's temporal terms.
    Returns c2w (F, 4, 4) float64 in the window's first-frame coordinates, K (pixels of the
    S x S frames), and the points (possibly refined by global alignment).
    ``callback(it, n_iters, loss)`` is the alignment's (returning False cancels it).
    ``frames`` (F, S, S, 3) uint8, the window's frames at the point maps' size: given, the
    cameras are then refined photometrically (``refine_callback`` is that stage's callback).
    """
    from ..geometry.focal import estimate_focal
    from ..geometry.pnp import pose_from_pointmap_pnp

    n, S = points.shape[0], points.shape[1]
    device = points.device  # the alignment runs where the network ran (CUDA graphs on a GPU)
    known_K = K is not None
    pts = points.double().cpu()
    w = conf.double().cpu()
    w = torch.where(w > 1.5, w - 1.0, torch.zeros_like(w))  # C = 1 + exp(c): keep C > 1.5
    if K is None:
        focal = float(estimate_focal(pts[0], weights=w[0]))
        if not math.isfinite(focal) or focal <= 0:
            focal = S / (2 * math.tan(math.radians(30)))
        K = torch.tensor([[focal, 0, (S - 1) / 2], [0, focal, (S - 1) / 2], [0, 0, 1.0]], dtype=torch.float64)
    K = torch.as_tensor(K, dtype=torch.float64)
    if rays is not None:
        result = {"c2w": _cameras_from_rays(rays, pts, w), "K": K, "points": pts.float(), "conf": conf.float().cpu()}
        return _photometric(result, frames, device, refine_callback)
    c2w = torch.full((n, 4, 4), float("nan"), dtype=torch.float64)
    c2w[0] = torch.eye(4, dtype=torch.float64)
    for f in range(1, n):
        pose, _ = pose_from_pointmap_pnp(pts[f], K, weights=w[f], max_points=1024, seed=f)
        if pose is not None:
            c2w[f] = pose
    c2w = _fill_unsolved(c2w)
    result = {"c2w": c2w, "K": K, "points": pts.float(), "conf": conf.float().cpu()}
    if align:
        aligned = _global_alignment(result, known_focal=known_K, device=device, callback=callback)
        if aligned is not None and torch.isfinite(aligned["c2w"]).all() and torch.isfinite(aligned["points"]).all():
            result = aligned  # else keep the PnP cameras (alignment diverged)
    return _photometric(result, frames, device, refine_callback)


def _photometric(window: dict, frames: Optional[torch.Tensor], device, callback=None) -> dict:
    """Refine the window's cameras photometrically on its own depth (each frame's points in its
    camera); the points then follow their frame's refined camera, so depth maps are unchanged.
    No ``frames``: the window as it is."""
    from ..geometry.alignment import AlignmentCancelled
    from ..geometry.cameras import invert_pose, transform_points
    from ..geometry.photometric import refine_cameras

    if frames is None:
        return window
    c2w = window["c2w"].double()
    cam = transform_points(invert_pose(c2w), window["points"].double())
    weights = (window["conf"].double() > 1.5) & (cam[..., 2] > 0)
    try:
        res = refine_cameras(frames, cam[..., 2], weights.double(), window["K"], c2w, device=device, callback=callback)
    except AlignmentCancelled:
        raise Cancelled("cancelled during the photometric refinement") from None
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


def _fill_unsolved(c2w: torch.Tensor) -> torch.Tensor:
    """A frame PnP failed on takes its nearest solved neighbour's pose (never NaN downstream)."""
    ok = torch.isfinite(c2w).flatten(1).all(-1)
    if ok.all():
        return c2w
    idx = torch.nonzero(ok)[:, 0]
    for f in torch.nonzero(~ok)[:, 0]:
        c2w[f] = c2w[idx[(idx - f).abs().argmin()]]
    return c2w


def _global_alignment(window: dict, known_focal: bool = False, device=None, callback=None) -> Optional[dict]:
    """Refine with the geometry core's DUSt3R-style global alignment over the window (one
    group: every frame's X^{f,1} in frame 1's camera), with JOG3R's temporal terms L_fl and
    L_tranl (weights from the geometry core's tests), initialised as the core does (PnP)."""
    try:
        from ..geometry.alignment import AlignmentCancelled, global_align
    except ImportError:  # geometry core without alignment: keep the PnP cameras
        return None
    n = window["points"].shape[0]
    try:
        res = global_align(window["points"], window["conf"], torch.arange(n), torch.zeros(n, dtype=torch.long),
                           focal=float(window["K"][0, 0]) if known_focal else None, optimize_focal=not known_focal,
                           w_focal_smooth=1.0, w_transl_smooth=0.03, n_iters=300, device=device, callback=callback)
    except AlignmentCancelled:
        raise Cancelled("cancelled during the global alignment") from None
    return {"c2w": res.c2w.double().cpu(), "K": res.K[0].double().cpu(), "points": res.points.float().cpu(),
            "conf": window["conf"], "alignment_s": sum(res.timings.values())}


def _alignment_progress(progress: Progress, lo: float, hi: float, label: str):
    """An alignment callback that reports every 25 iterations (so a cancel lands within 25) and
    stops the alignment once ``progress`` says the job is cancelled."""
    if progress is None:
        return None

    def callback(it: int, n: int, loss: float):
        if it % 25 == 0 or it == n - 1:
            return progress(lo + (hi - lo) * (it + 1) / n, f"{label} {it + 1}/{n}") is not False
        return None

    return callback


def _chain(prev_world_pts: torch.Tensor, cur_pts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sim(3) (4x4) taking the current window's coordinates to the world, from overlap frames."""
    from ..geometry.procrustes import robust_umeyama, similarity_matrix

    src = cur_pts.reshape(-1, 3).double()
    dst = prev_world_pts.reshape(-1, 3).double()
    w = weights.reshape(-1).double()
    if (w > 0).sum() < 16:  # no confident overlap (an untrained model): weigh every point alike
        w = torch.ones_like(w)
    s, R, t, _ = robust_umeyama(src, dst, w)
    return similarity_matrix(s, R, t)


class UnifiedEngine(LazyModel):
    """The unified model as a camera solver: ``solve(frames, progress=None, **options) -> Bundle``.

    ``frames``: (F, H, W, 3) uint8, a list of such arrays or of image paths, or a video /
    image-folder path. Frame selection, as every engine: ``start``, ``stride`` (use every n-th
    frame), ``max_frames``. Options: ``window`` (frames per model window, default the model's),
    ``window_stride`` (default half the window), ``t`` (geometry noise level, default 5), ``K``
    (known 3x3 intrinsics in the input frames' pixels: skips focal estimation), ``cameras``
    ("rays": from the ray head; "points": PnP on the point maps, default: measured better),
    ``align`` (global alignment of the "points" cameras, default True), ``photometric``
    (refine the cameras by direct image alignment, default True), ``fps``.
    """

    name = "unified"

    def solve(self, frames, progress: Progress = None, *, start: int = 0, stride: int = 1,
              max_frames: Optional[int] = None, window: Optional[int] = None, window_stride: Optional[int] = None,
              t: float = GEOMETRY_T, K=None, cameras: str = CAMERAS, align: bool = True,
              photometric: bool = PHOTOMETRIC, fps: Optional[float] = None) -> Bundle:
        if cameras not in ("rays", "points"):
            raise ValueError(f"cameras must be 'rays' or 'points', not {cameras!r}")
        timer = Timer(self.device)
        report(progress, 0.0, "loading model")
        with timer("load"):
            model = self.model
        frames = as_frames(frames, start=start, stride=stride, max_frames=max_frames)
        n, H, W = frames.shape[:3]
        if n < 2:
            raise ValueError(f"solving cameras needs at least 2 frames, got {n}")
        S = model.config.sample_size * (1 if model.config.space == "pixel" else 8)
        win = min(int(window or model.config.num_frames), n)
        step = int(window_stride or max(1, win // 2))
        starts = list(range(0, max(1, n - win + 1), step))
        if starts[-1] + win < n:
            starts.append(n - win)
        K_in = K
        K_small = None
        if K_in is not None:  # input pixels -> model pixels (pixel centres at integers)
            K_in = torch.as_tensor(np.asarray(K_in), dtype=torch.float64)
            sx, sy = S / W, S / H
            K_small = torch.tensor([[K_in[0, 0] * sx, 0, (K_in[0, 2] + 0.5) * sx - 0.5],
                                    [0, K_in[1, 1] * sy, (K_in[1, 2] + 0.5) * sy - 0.5], [0, 0, 1]], dtype=torch.float64)
        with timer("resize"):
            small = resize_frames(frames, S).to(self.device)
        c2w_world = torch.full((n, 4, 4), float("nan"), dtype=torch.float64)
        pts_world = torch.zeros(n, S, S, 3)
        conf_all = torch.zeros(n, S, S)
        focals = []
        for wi, s0 in enumerate(starts):
            lo, label = 0.05 + 0.9 * wi / len(starts), f"window {wi + 1}/{len(starts)}"
            report(progress, lo, label)
            with timer("network"):
                maps = predict_window(model, small[s0:s0 + win], t=float(t))
            with timer("alignment"):
                span = 0.9 / len(starts)
                cb = _alignment_progress(progress, lo, lo + span / 2, f"{label}: alignment")
                refine_cb = _alignment_progress(progress, lo + span / 2, lo + span, f"{label}: photometric refinement")
                sol = solve_window(maps["points"], maps["conf"], K_small, align=bool(align),
                                   rays=maps["rays"] if cameras == "rays" else None, callback=cb,
                                   frames=small[s0:s0 + win] if photometric else None, refine_callback=refine_cb)
                T = torch.eye(4, dtype=torch.float64)
                # chain to the world through the frames this window shares with the last
                shared = [f for f in range(s0, s0 + win) if torch.isfinite(c2w_world[f]).all()] if wi > 0 else []
                if shared:
                    loc = [f - s0 for f in shared]
                    weights = (conf_all[shared] - 1).clamp_min(0) * (sol["conf"][loc] - 1).clamp_min(0)
                    T = _chain(pts_world[shared], sol["points"][loc], weights)
                scale = torch.linalg.det(T[:3, :3]).abs() ** (1 / 3)
                for f in range(win):
                    g = s0 + f
                    if g in shared:
                        continue  # keep the earlier window's estimate for shared frames
                    c = T @ sol["c2w"][f]
                    c[:3, :3] = c[:3, :3] / scale
                    c2w_world[g] = c
                    pts_world[g] = (sol["points"][f].double() @ T[:3, :3].T + T[:3, 3]).float()
                    conf_all[g] = sol["conf"][f]
                focals.append(float(sol["K"][0, 0]))
        report(progress, 0.97, "writing")
        focal_small = float(np.median(focals))
        fx = focal_small * W / S if K_in is None else float(K_in[0, 0])
        fy = focal_small * H / S if K_in is None else float(K_in[1, 1])
        cx = (W - 1) / 2 if K_in is None else float(K_in[0, 2])
        cy = (H - 1) / 2 if K_in is None else float(K_in[1, 2])
        cams = [CameraFrame(i, c2w_world[i].numpy(), fx, fy, cx, cy) for i in range(n)]
        small_cpu = small.cpu()
        points, depth = [], []
        for i in range(n):
            c2w = c2w_world[i].float()
            keep = conf_all[i] > 1.5
            points.append(PointFrame(pts_world[i][keep].numpy(), small_cpu[i][keep].numpy(),
                                     conf_all[i][keep].numpy().astype(np.float16)))
            cam_pts = (pts_world[i] - c2w[:3, 3]) @ c2w[:3, :3]  # world -> camera: R^T (x - c)
            d = F.interpolate(cam_pts[..., 2][None, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0]
            cf = F.interpolate(conf_all[i][None, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0]
            depth.append(DepthFrame(d.clamp_min(0).numpy(), cf.numpy().astype(np.float16)))
        mean_conf = float(conf_all.mean())
        report(progress, 1.0, "done")
        return Bundle(task="solve", width=W, height=H, frame_count=n, fps=float(fps or 24.0),
                      engine=self.name, model_id=self.model_id, frames=list(frames.numpy()), cameras=cams,
                      points=points, depth=depth,
                      scores={"confidence": mean_conf, "windows": len(starts)},
                      timings={k: round(v, 4) for k, v in timer.timings.items()},
                      source={"frames": n, "model_frame_size": S, "geometry_t": float(t), "start": start, "stride": stride})
