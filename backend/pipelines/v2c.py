"""V2C: cameras (and depth, points) of a given clip from the unified model (JOG3R sec. 3.2).

1. Resize the clip to the model's frame size; noise it to a small level (t = 5 of 1000:
   JOG3R samples t in [0, 5] at test time) with a fixed seed; one forward pass that stops at
   block b; the geometry branch gives X^{f,1}, confidence, disparity and rays per frame.
2. Cameras of each window from its point maps (``pointmap_cameras.py``, shared with T2V+C):
   focal, PnP, global alignment with JOG3R's temporal terms, photometric refinement.
3. Clips longer than the model's window go through overlapping windows (Geo4D sec. 3.3):
   each window is solved in its own first-frame coordinates and chained to the previous one
   by a confidence-weighted robust Sim(3) on the overlapping frames' point maps.

:class:`UnifiedEngine` is what the engine registry points at ("unified").
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..bundle import Bundle
from ..geometry.alignment import sliding_window_starts
from ..geometry.cameras import crop_intrinsics, resize_intrinsics
from ..io_video import check_solvable, load_clip
from ..runtime import Progress
from .assemble import CONFIDENT, camera_frames, pointmap_parts
from .common import LazyModel, resize_frames, square_crop
from .pointmap_cameras import cameras_from_pointmaps

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
        progress = Progress.of(progress, device=self.device)
        clip = load_clip(frames, start=start, stride=stride, max_frames=max_frames)
        check_solvable(clip, min_frames=2)  # before the model loads: bad input costs nothing
        progress(0.0, "loading model")
        with progress.timed("load"):
            model = self.model
        frames = torch.as_tensor(np.stack(clip.frames))
        n, H, W = frames.shape[:3]
        S = model.config.sample_size * (1 if model.config.space == "pixel" else 8)
        win = min(int(window or model.config.num_frames), n)
        starts = sliding_window_starts(n, win, int(window_stride or max(1, win // 2)))
        # The model sees square frames with one focal. Squashing 540x360 footage into a square
        # made its focal mean different things along x and y (fx 648, fy 432 where the truth is
        # 495.6 for both), so it sees the centred square instead, at the footage's own aspect;
        # cameras hold for the whole frame, depth and points cover that square.
        crop = square_crop(H, W)
        to_model = lambda K_: resize_intrinsics(crop_intrinsics(K_, crop.left, crop.top), S / crop.side)  # noqa: E731
        K_small = None
        if K is not None:  # input pixels -> model pixels (pixel centres at integers)
            K = torch.as_tensor(np.asarray(K), dtype=torch.float64)
            K_small = to_model(K)
        with progress.timed("resize"):
            small = resize_frames(frames[:, crop.top:crop.top + crop.side, crop.left:crop.left + crop.side], S)
            small = small.to(self.device)
        c2w_world = torch.full((n, 4, 4), float("nan"), dtype=torch.float64)
        pts_world = torch.zeros(n, S, S, 3)
        conf_all = torch.zeros(n, S, S)
        focals = []
        for wi, s0 in enumerate(starts):
            lo, hi = 0.05 + 0.9 * wi / len(starts), 0.05 + 0.9 * (wi + 1) / len(starts)
            window_progress = progress.span(lo, hi, f"window {wi + 1}/{len(starts)}")
            window_progress(0.0)
            with progress.timed("network"):
                maps = predict_window(model, small[s0:s0 + win], t=float(t))
            with progress.timed("alignment"):
                sol = cameras_from_pointmaps(maps["points"], maps["conf"], K_small, align=bool(align),
                                             rays=maps["rays"] if cameras == "rays" else None,
                                             frames=small[s0:s0 + win] if photometric else None,
                                             progress=window_progress)
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
        progress(0.97, "writing")
        if K is None:  # the model's square frame -> the input's pixels: one focal, centred
            f_small, c_small = float(np.median(focals)), (S - 1) / 2
            K_small = torch.tensor([[f_small, 0, c_small], [0, f_small, c_small], [0, 0, 1]], dtype=torch.float64)
            K = crop_intrinsics(resize_intrinsics(K_small, crop.side / S), -crop.left, -crop.top)
        cams = camera_frames(c2w_world, K)
        points, depth = pointmap_parts(c2w_world, pts_world, conf_all, small.cpu(), out_size=(crop.side, crop.side))
        depth = [crop.paste(d, H, W) for d in depth]
        counts = [len(p.xyz) for p in points]
        progress(1.0, "done")
        return Bundle(task="solve", width=W, height=H, frame_count=n, fps=float(fps or clip.fps),
                      engine=self.name, model_id=self.model_id, frames=list(frames.numpy()), cameras=cams,
                      points=points, depth=depth,
                      scores={"confidence": float(conf_all.mean()), "windows": len(starts), "registered": n,
                              "points_per_frame": counts, "frames_without_points": [i for i, c in enumerate(counts)
                                                                                    if c == 0],
                              "confident_fraction": float((conf_all > CONFIDENT).float().mean())},
                      timings={k: round(v, 4) for k, v in progress.timings.items()},
                      source={"input": clip.source, "frame_indices": clip.indices, "frames": n,
                              "model_frame_size": S, "model_view": {"left": crop.left, "top": crop.top,
                                                                    "side": crop.side},
                              "geometry_t": float(t), "start": start, "stride": stride})
