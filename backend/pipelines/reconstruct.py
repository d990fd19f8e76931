"""Reconstruct a dynamic scene (Geo4D, DESIGN section 6): per-frame cameras, video depth, world
points and a per-point dynamic flag from one clip.

1. The clip is checked (at least 2 frames of at least 32 px, some texture, within the frame
   limit), resized to the model's square frames and cut into sliding windows of the model's
   length at stride 4 (Geo4D sec. 3.3; a clip shorter than a window is one shorter window).
2. Per window one pass of the unified model at the geometry noise level gives point maps
   X^{f,1}, confidence, disparity and ray maps (``v2c.predict_window``).
3. Windows are fused by the geometry core's multi-modal alignment (``geometry.align4d``): point
   maps, then jointly with disparity, ray trajectory and smoothness (Geo4D eq. 4-10); windows
   failing the authors' reliability test are dropped and reported.
4. Long clips stream: windows are predicted chunk by chunk (``geometry.chunks``, 64 frames by
   default), each chunk aligned alone and chained to the previous one by a similarity on the
   frames they share; only a chunk's windows are held at a time.
5. The dynamic flag: pixels whose point the aligned cameras cannot explain as static
   (``geometry.dynamic``: free-space violations in neighbouring frames).

A static camera is reconstructed all the same (the point maps still give depth; moving objects
are still flagged), and the bundle says so in ``scores["static_camera"]`` and
``scores["message"]``: refusing would lose a tripod shot's depth. A one-colour clip is refused
(nothing to estimate depth from).
"""

from __future__ import annotations

import math
import os
import resource
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..bundle import Bundle
from ..geometry.align4d import FIRST, JOINT, ModalityWeights, align_windows
from ..geometry.alignment import sliding_window_starts
from ..geometry.cameras import crop_intrinsics, resize_intrinsics
from ..geometry.chunks import chain_similarity, plan_chunks
from ..geometry.dynamic import dynamic_mask
from ..geometry.optim import AdamSettings
from ..io_video import DEFAULT_MAX_FRAMES, check_solvable, load_clip
from ..runtime import Progress
from .assemble import CONFIDENT, camera_frames, confidence_weights, pointmap_parts
from .common import LazyModel, SquareCrop, resize_frames, square_crop
from .v2c import GEOMETRY_T, predict_window

WINDOW_STRIDE = 4  # Geo4D's inference stride
CHUNK_FRAMES = 64  # frames aligned together; a chunk of 64 at stride 4 holds 13 windows
MAX_FRAMES = DEFAULT_MAX_FRAMES  # the readers' own limit, applied to in-memory clips as well
# Camera travel (largest distance from frame 0's centre) over the median depth below which the
# camera counts as static. Measured on held-out clips of 32 frames: a static camera (seed
# 1000000008) reconstructs with a travel of 0.044 (the model's noise), a truck (1000000009) 0.56;
# the held-out split's median true baseline is 0.115 (backend/train/RUNS.md).
STATIC_TRAVEL = 0.05
# Network, alignment and the rest as shares of a chunk's progress (measured on the CPU: a
# 16-frame window's pass ~2-4 s, a 48-frame chunk's 650 alignment iterations ~25-40 s).
NETWORK_SHARE = 0.3


@dataclass
class Reconstruction:
    """A reconstruction at the model's map size S (what the bundle and the evaluation read)."""

    frames: torch.Tensor  # (F, H, W, 3) uint8, the input frames used
    crop: SquareCrop  # the centred square of the frames the model sees
    small: torch.Tensor  # (F, S, S, 3) uint8: that square at the model's size
    c2w: torch.Tensor  # (F, 4, 4) float64, world = frame 0's camera
    K: torch.Tensor  # (F, 3, 3) pixels of the S x S maps
    depth: torch.Tensor  # (F, S, S)
    points: torch.Tensor  # (F, S, S, 3) world
    conf: torch.Tensor  # (F, S, S)
    dynamic: torch.Tensor  # (F, S, S) bool
    windows: list  # per window: start, chunk, disparity_delta, rpe_rot, reliable, used
    residual: float  # alignment residual (mean over chunks, units of the median depth)
    chunks: int
    travel: float  # camera travel / median depth
    timings: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)

    @property
    def static_camera(self) -> bool:
        return self.travel < STATIC_TRAVEL

    @property
    def dropped(self) -> list:
        return [w["start"] for w in self.windows if not w["used"]]


class Reconstructor(LazyModel):
    """The unified model as a 4D reconstructor: ``reconstruct(frames, progress=None, **options)
    -> Bundle(task="reconstruct")``; the model loads on first use and stays loaded."""

    name = "geo4d"

    def reconstruct(self, frames, progress=None, **options) -> Bundle:
        progress = Progress.of(progress, device=self.device)
        rec = self.reconstruct_maps(frames, progress, **options)
        progress(0.98, "writing")
        with progress.timed("assemble"):
            bundle = to_bundle(rec, self.model_id)
        progress(1.0, "done")
        bundle.timings = {k: round(v, 4) for k, v in progress.timings.items()}
        return bundle

    def reconstruct_maps(self, frames, progress=None, *, start: int = 0, stride: int = 1,
                         max_frames: Optional[int] = None, window: Optional[int] = None,
                         window_stride: Optional[int] = None, chunk_frames: int = CHUNK_FRAMES,
                         iterations: int = JOINT.n_iters, weights: ModalityWeights = ModalityWeights(),
                         t: float = GEOMETRY_T, fps: Optional[float] = None,
                         cache: Optional[dict] = None) -> Reconstruction:
        """The reconstruction as tensors (module docstring). ``cache``: window maps by start frame,
        read and filled (the evaluation hands one dict to two alignments of a clip so the network
        runs once); None: a window's maps are dropped once the chunks needing them are aligned.
        ``window_stride``: frames between window starts, below the window's length so that
        windows overlap (default Geo4D's 4, or half a window shorter than 8 frames)."""
        progress = Progress.of(progress, device=self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        progress(0.0, "reading")
        clip = _read(frames, start, stride, max_frames)
        if window_stride is not None and window_stride < 1:
            raise ValueError(f"window_stride must be >= 1, got {window_stride}")
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        progress(0.01, "loading model")
        with progress.timed("load"):
            model = self.model
        video = torch.as_tensor(np.stack(clip.frames), dtype=torch.uint8)
        n, H, W = video.shape[:3]
        S = model.config.sample_size * (1 if model.config.space == "pixel" else 8)
        longest = int(model.config.num_frames)
        if window is not None and not 2 <= window <= longest:
            raise ValueError(f"window must be 2 to the model's {longest} frames, got {window}")
        win = min(int(window or longest), n)  # a clip shorter than a window: one shorter window
        if window_stride is None:
            window_stride = min(WINDOW_STRIDE, max(1, win // 2))
        if window_stride >= win and n > win:
            raise ValueError(f"window_stride {window_stride} leaves the {win}-frame windows without shared frames; "
                             f"use at most {win - 1}")
        starts = sliding_window_starts(n, win, window_stride)
        plan = plan_chunks(starts, win, max(int(chunk_frames), win))
        # The model sees the centred square at the footage's own aspect (as V2C: one focal holds
        # for both axes); cameras hold for the whole frame, depth and points cover the square.
        crop = square_crop(H, W)
        with progress.timed("resize"):
            small = resize_frames(video[:, crop.top:crop.top + crop.side, crop.left:crop.left + crop.side], S)
        joint = AdamSettings(n_iters=int(iterations), lr=JOINT.lr, lr_min=JOINT.lr_min, schedule=JOINT.schedule)
        first = AdamSettings(n_iters=max(1, round(iterations * FIRST.n_iters / JOINT.n_iters)), lr=JOINT.lr,
                             lr_min=JOINT.lr_min, schedule=JOINT.schedule)  # the point-map stage, in proportion
        maps = cache if cache is not None else {}
        needed_after = {i: max(c for c, ch in enumerate(plan) if i in ch) for i in range(len(starts))}

        c2w = torch.full((n, 4, 4), float("nan"), dtype=torch.float64)
        K = torch.zeros(n, 3, 3, dtype=torch.float64)
        depth, conf = torch.zeros(n, S, S), torch.zeros(n, S, S)
        points = torch.zeros(n, S, S, 3)
        windows, residuals = [], []
        total_windows = sum(len(ch) for ch in plan)
        done = 0
        for c, chunk in enumerate(plan):
            lo = 0.02 + 0.9 * done / total_windows
            hi = 0.02 + 0.9 * (done + len(chunk)) / total_windows
            done += len(chunk)
            span = progress.span(lo, hi, f"chunk {c + 1}/{len(plan)}" if len(plan) > 1 else "")
            net = span.span(0.0, NETWORK_SHARE)
            for k, i in enumerate(chunk):
                net(k / len(chunk), f"network: window {i + 1}/{len(starts)}")
                if starts[i] not in maps:
                    with progress.timed("network"):
                        maps[starts[i]] = _predict(model, small, starts[i], win, t)
            c0 = starts[chunk[0]]
            frames_local = torch.stack([torch.arange(starts[i], starts[i] + win) for i in chunk]) - c0
            stack = {key: torch.stack([maps[starts[i]][key] for i in chunk]) for key in maps[starts[chunk[0]]]}
            with progress.timed("alignment"):
                res = align_windows(stack["points"], stack["conf"], frames_local, disparity=stack["disparity"],
                                    rays=stack["rays"], weights=weights, first=first, joint=joint,
                                    device=self.device, progress=span.span(NETWORK_SHARE, 1.0, "alignment"))
            residuals.append(res.residual)
            for rep in res.windows:
                i = chunk[rep["index"]]
                windows.append({"start": starts[i], "chunk": c, **{k: v for k, v in rep.items() if k != "index"}})
            _place_chunk(res, c0, starts[chunk[0]] + win // 2 if c else 0, c2w, K, depth, conf, points)
            if cache is None:  # stream: keep only the windows a later chunk still needs
                for i in chunk:
                    if needed_after[i] == c:
                        maps.pop(starts[i], None)
        span = progress.span(0.92, 0.97, "dynamic mask")
        span(0.0)
        with progress.timed("dynamic"):
            dyn, _ = dynamic_mask(depth, c2w, K)
        span(1.0)
        travel = _travel(c2w, depth)
        return Reconstruction(
            frames=video, crop=crop, small=small, c2w=c2w, K=K, depth=depth, points=points, conf=conf, dynamic=dyn,
            windows=_dedupe(windows), residual=float(np.mean(residuals)), chunks=len(plan), travel=travel,
            timings=dict(progress.timings), memory=_memory(self.device),
            source={"input": _name(frames, clip), "frame_indices": list(clip.indices), "fps": float(fps or clip.fps),
                    "start": start, "stride": stride, "model_frame_size": S,
                    "model_view": {"left": crop.left, "top": crop.top, "side": crop.side}, "window": win,
                    "window_stride": window_stride, "chunk_frames": chunk_frames, "iterations": iterations,
                    "geometry_t": float(t), "weights": asdict(weights)})


def reconstruct(frames, progress=None, *, model=None, model_path=None, device=None, **options) -> Bundle:
    """``Reconstructor(model, model_path, device).reconstruct(frames, progress, **options)``."""
    return Reconstructor(model=model, model_path=model_path, device=device).reconstruct(frames, progress, **options)


# ---------------------------------------------------------------------------------------------


def _read(frames, start: int, stride: int, max_frames: Optional[int]):
    """The clip, checked: frames ``start, start + stride, ...`` (at most ``max_frames``), within
    the frame limit, at least 2 frames of at least 32 px with texture (``io_video``'s checks,
    the camera solvers'; a clip that does not change is allowed: its depth is still wanted)."""
    if max_frames is not None and not 2 <= max_frames <= MAX_FRAMES:
        raise ValueError(f"max_frames must be 2 to {MAX_FRAMES}, got {max_frames}")
    clip = load_clip(frames, start=start, stride=stride, max_frames=max_frames or MAX_FRAMES + 1)
    if len(clip.frames) > MAX_FRAMES:
        raise ValueError(f"{clip.source}: more than {MAX_FRAMES} frames after start {start} and stride {stride}; "
                         "reconstruct takes at most that many: pass max_frames or a larger stride")
    if len(clip.frames) < 2:
        raise ValueError(f"{clip.source}: reconstructing a scene needs at least 2 frames, got {len(clip.frames)}"
                         f"{f' (start {start}, stride {stride})' if start or stride > 1 else ''}")
    check_solvable(clip, min_frames=2, require_change=False)
    return clip


def _predict(model, small: torch.Tensor, s0: int, win: int, t: float) -> dict:
    dev = next(model.parameters()).device
    out = predict_window(model, small[s0:s0 + win].to(dev), t=t)
    return {k: out[k].cpu() for k in ("points", "conf", "disparity", "rays")}


def _place_chunk(res, c0: int, keep_from: int, c2w, K, depth, conf, points) -> None:
    """Write a chunk's frames into the clip's arrays, mapped into the clip's world by the Sim(3)
    on the frames it shares with what is already placed. Shared frames before ``keep_from``
    keep the earlier chunk's estimate; from there on this chunk's (nearer its own windows)."""
    n_local = res.c2w.shape[0]
    glob = torch.arange(c0, c0 + n_local)
    placed = torch.isfinite(c2w[glob]).flatten(1).all(-1)
    if placed.any():
        shared = glob[placed]
        w = confidence_weights(conf[shared].double()) * confidence_weights(res.confidence[placed].double())
        T = chain_similarity(points[shared], res.points[placed], w)
    else:
        T = torch.eye(4, dtype=torch.float64)
    s = float(torch.linalg.det(T[:3, :3]).abs() ** (1 / 3))
    cams = T @ res.c2w
    cams[:, :3, :3] /= s
    pts = res.points.double() @ T[:3, :3].T + T[:3, 3]
    write = glob >= keep_from
    idx = glob[write]
    c2w[idx] = cams[write]
    K[idx] = res.K[write].double()
    depth[idx] = (res.depth[write] * s).float()
    conf[idx] = res.confidence[write].float()
    points[idx] = pts[write].float()


def _dedupe(windows: list) -> list:
    """A window shared by two chunks is reported once, as its later chunk used it (the chunk
    whose frames it mostly fills)."""
    last = {}
    for w in windows:
        last[w["start"]] = w
    return [last[s] for s in sorted(last)]


def _travel(c2w: torch.Tensor, depth: torch.Tensor) -> float:
    d = depth[depth > 0]
    med = float(d.median()) if d.numel() else 1.0
    centres = c2w[:, :3, 3]
    return float((centres - centres[:1]).norm(dim=-1).max()) / max(med, 1e-12)


def _memory(device) -> dict:
    """Peak host RSS of the process so far (the kernel's high-water mark: it includes whatever
    the process did before this run) and, on CUDA, the peak GPU memory allocated since the run
    began, in MB."""
    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.device(device).type == "cuda":
        out["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def _name(frames, clip) -> str:
    if isinstance(frames, (str, os.PathLike)):
        return Path(frames).name
    if isinstance(frames, (list, tuple)) and frames and isinstance(frames[0], (str, os.PathLike)):
        return f"{len(frames)} images from {Path(frames[0]).parent.name or '.'}"
    return clip.source


def to_bundle(rec: Reconstruction, model_id: str = "") -> Bundle:
    """The result bundle of a reconstruction (task "reconstruct")."""
    n, H, W = rec.frames.shape[:3]
    S, crop = rec.small.shape[1], rec.crop
    K = crop_intrinsics(resize_intrinsics(rec.K, crop.side / S), -crop.left, -crop.top)  # model square -> frame
    cams = camera_frames(rec.c2w, K)
    pts, depth = pointmap_parts(rec.c2w, rec.points, rec.conf, rec.small, out_size=(crop.side, crop.side),
                                dynamic=rec.dynamic)
    depth = [crop.paste(d, H, W) for d in depth]
    kept = rec.conf > CONFIDENT
    dynamic_fraction = float(rec.dynamic[kept].double().mean()) if kept.any() else 0.0
    dropped = rec.dropped
    message = (f"reconstructed {n} frames from {len(rec.windows)} windows"
               + (f" in {rec.chunks} chunks" if rec.chunks > 1 else "")
               + (f"; dropped {len(dropped)} unreliable window(s) starting at frames {dropped}" if dropped else "")
               + (f"; the camera barely moves ({100 * rec.travel:.1f} % of the median depth): depth comes from the "
                  "network alone and only object motion marks points dynamic" if rec.static_camera else ""))
    scores = {
        "confidence": float(rec.conf.mean()),
        "alignment_residual": _finite(rec.residual),
        "dynamic_fraction": dynamic_fraction,
        "windows": [{k: _finite(v) for k, v in w.items()} for w in rec.windows],
        "window_reliability": [bool(w["reliable"]) for w in rec.windows],
        "dropped_windows": dropped,
        "chunks": rec.chunks,
        "camera_travel": _finite(rec.travel),
        "static_camera": rec.static_camera,
        "message": message,
        "memory": rec.memory,
    }
    src = rec.source
    return Bundle(task="reconstruct", width=W, height=H, frame_count=n, fps=src.get("fps", 24.0), engine=Reconstructor.name,
                  model_id=model_id, frames=list(rec.frames.numpy()), cameras=cams, points=pts, depth=depth,
                  scores=scores, timings={k: round(v, 4) for k, v in rec.timings.items()}, source=src)


def _finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
