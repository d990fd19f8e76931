"""The two roles pose-from-a-pair (``pair_pose.py``) takes, and what fills them today.

- A **generator** makes a video between two images: an object with ``name``, ``model_id``,
  ``max_frames`` and ``interpolate(first, last, frames, seed, prompt, progress) -> (F, H, W, 3)
  uint8`` whose first frame is ``first`` and last is ``last`` (``backend.roles.Generator``).
  The unified model's first-last-frame interpolation (:class:`UnifiedInterpolator`, T2V with
  keyframes), or a hub model that does ``flf2v`` (Wan first-last-frame, LTX-Video keyframes;
  ``backend.hub.generators``), named by catalogue id or folder.
- A **pose estimator** gives the cameras of short clips: ``name``, ``model_id`` and
  ``estimate(clips, K_first, K_last, progress) -> list[ClipCameras]``, each clip's cameras in its
  first frame's camera (NaN where it found none). Today: the unified model's V2C on the clip
  (:class:`UnifiedPoseEstimator`, many clips per forward pass) or COLMAP on the clip's frames
  (:class:`ColmapPoseEstimator`).

The pipeline names neither model: anything with these methods fills a role (the tests use
fakes and tiny random hub models).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..runtime import Progress
from .common import LazyModel, resize_frames
from .unified_roles import UnifiedGenerator
from .v2c import GEOMETRY_T

# The fitting weights of a frame whose confident pixels (C > assemble.CONFIDENT) are fewer than
# MIN_CONFIDENT of it are its TOP_FRACTION most confident pixels instead: on wide baselines the
# far frame's confidence stays under 1.5 everywhere (90th percentile 1.3 on the last frame of a
# real 88-deg in-between video), which left B without a pose, while PnP on its top quarter
# put B's rotation 22 deg from the truth.
MIN_CONFIDENT = 0.05
TOP_FRACTION = 0.25
# Clips per forward pass of the unified estimator: InterPose's 11 subsets of a video go in one
# pass (measured on the 2-core CPU: 11 subsets of 5 frames in one pass 15.9 s, one pass each
# 26.1 s); 16 bounds the memory of a pass at the shipped model's size.
ESTIMATOR_BATCH = 16


@dataclass
class ClipCameras:
    """Cameras of one clip, world = its first frame's camera."""

    c2w: np.ndarray  # (k, 4, 4) float64, c2w[0] = I; NaN rows where the estimator found no pose
    K: np.ndarray  # (3, 3) float64, the first frame's intrinsics in the clip's pixels (given or estimated)

    @property
    def last(self) -> np.ndarray:
        """The last frame's c2w in the first frame's camera (B's pose from A)."""
        return self.c2w[-1]


# ----------------------------------------------------------------------------------------
# Generators


# The unified model's generator role (unified_roles.py), under the name InterPose's callers know.
UnifiedInterpolator = UnifiedGenerator


# ----------------------------------------------------------------------------------------
# Pose estimators


def _scaled(K: Optional[np.ndarray], sx: float, sy: float) -> Optional[torch.Tensor]:
    from ..geometry.cameras import resize_intrinsics

    return None if K is None else resize_intrinsics(torch.as_tensor(np.asarray(K), dtype=torch.float64), sx, sy)


def frame_weights(conf: torch.Tensor) -> torch.Tensor:
    """Per-frame fitting weights from confidence (F, S, S): C - 1 where C > CONFIDENT, or on a
    frame with too few such pixels, C - 1 on its TOP_FRACTION most confident (see above)."""
    from .assemble import confidence_weights

    w = confidence_weights(conf)
    for f in range(len(conf)):
        if (w[f] > 0).double().mean() < MIN_CONFIDENT:
            top = conf[f] >= torch.quantile(conf[f].flatten().float(), 1 - TOP_FRACTION).to(conf.dtype)
            w[f] = torch.where(top, (conf[f] - 1).clamp_min(1e-6), torch.zeros_like(conf[f]))
    return w


class UnifiedPoseEstimator(LazyModel):
    """V2C of short clips with the unified model: one forward pass for up to
    :data:`ESTIMATOR_BATCH` clips, then per clip the focal from the first frame's point map
    (unless given) and each frame's camera by PnP-RANSAC of its point map X^{f,1}.

    ``align``: refine each clip with the global alignment (``pointmap_cameras``), off by default:
    it cost 21 s per 5-frame clip on the 2-core CPU against 0.03 s for PnP, i.e. 4 minutes per
    video of 11 subsets. ``share``: another LazyModel whose model this one uses (the generator's),
    so the two roles hold one copy."""

    name = "unified"

    def __init__(self, model=None, model_path=None, device=None, align: bool = False, t: float = GEOMETRY_T,
                 batch: int = ESTIMATOR_BATCH, share: Optional[LazyModel] = None):
        super().__init__(model, model_path, device if share is None else share.device)
        self.align, self.t, self.batch, self._share = bool(align), float(t), max(1, int(batch)), share

    @property
    def model(self):
        return self._share.model if self._share is not None else super().model

    @property
    def model_id(self) -> str:
        return self._share.model_id if self._share is not None else super().model_id

    @torch.no_grad()
    def _forward(self, model, clips: torch.Tensor) -> dict:
        """clips (B, k, S, S, 3) uint8 -> geometry maps (B, k, S, S, ...), each row with the noise
        ``predict_window`` gives a single clip (seed 0), so batching never changes a result."""
        from ..models.autoencoder import frames_to_tensor

        dev = next(model.parameters()).device
        x0 = frames_to_tensor(clips.to(dev))
        g = torch.Generator(device=dev).manual_seed(0)
        noise = torch.randn(x0.shape[1:], generator=g, device=dev)[None]
        sigma = self.t / 1000.0
        xt = (1 - sigma) * x0 + sigma * noise
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            out = model(xt, torch.full((len(xt),), self.t, device=dev), geometry=True, geometry_only=True)
        return {k: v.float().cpu() for k, v in out.geometry.items()}

    def estimate(self, clips: list, K_first=None, K_last=None, progress=None, last_only: bool = False
                 ) -> list[ClipCameras]:
        """``clips``: (k, h, w, 3) uint8 arrays (k >= 2); ``K_first`` / ``K_last``: 3x3 intrinsics of
        the first / last frame in the clips' pixels (None: estimated; K_last defaults to K_first).
        ``last_only``: place only the last frame (the middle rows stay NaN): InterPose's subsets
        need B's pose alone, and PnP on every middle frame was 90 % of a pair's time on an H200
        (544 PnP-RANSAC calls, 33 of 38 s)."""
        progress = Progress.of(progress, device=self.device)
        if any(len(c) < 2 for c in clips):
            raise ValueError("a clip for pose estimation needs at least 2 frames")
        model = self.model
        cfg = model.config
        S = cfg.sample_size * (1 if cfg.space == "pixel" else 8)
        groups: dict = {}
        for i, c in enumerate(clips):  # clips of one shape share a forward pass
            groups.setdefault(np.shape(c), []).append(i)
        chunks = [(shape, ids[j:j + self.batch]) for shape, ids in groups.items()
                  for j in range(0, len(ids), self.batch)]
        out: list = [None] * len(clips)
        for n, (shape, ids) in enumerate(chunks):
            progress.check()
            h, w = shape[1:3]
            x = torch.stack([resize_frames(torch.as_tensor(np.asarray(clips[i])), S) for i in ids])
            maps = self._forward(model, x)
            for j, i in enumerate(ids):
                out[i] = self._cameras(maps["points"][j], maps["conf"][j], K_first, K_last, h, w, S, last_only)
            progress.step(n, len(chunks), "pose estimation")
        return out

    def _cameras(self, points, conf, K_first, K_last, h, w, S, last_only: bool = False) -> ClipCameras:
        from ..geometry.focal import estimate_focal
        from ..geometry.pnp import pose_from_pointmap_pnp
        from .pointmap_cameras import cameras_from_pointmaps

        sx, sy = S / w, S / h
        Kf = _scaled(K_first, sx, sy)
        Kl = _scaled(K_last, sx, sy) if K_last is not None else Kf
        pts = points.double()
        wts = frame_weights(conf.double())
        if Kf is None:
            f = float(estimate_focal(pts[0], weights=wts[0]))
            if not np.isfinite(f) or f <= 0:  # no confident point: a 60 deg field of view
                f = S / (2 * np.tan(np.radians(30)))
            Kf = torch.tensor([[f, 0, (S - 1) / 2], [0, f, (S - 1) / 2], [0, 0, 1.0]], dtype=torch.float64)
            Kl = Kf
        k = len(pts)
        if self.align:
            sol = cameras_from_pointmaps(points, conf, Kf, align=True)
            c2w = sol["c2w"].double().numpy()
        else:
            c2w = np.full((k, 4, 4), np.nan)
            c2w[0] = np.eye(4)
            for f in range(k - 1 if last_only else 1, k):
                pose, _ = pose_from_pointmap_pnp(pts[f], Kl if f == k - 1 else Kf, weights=wts[f], max_points=1024,
                                                 seed=f)
                if pose is not None:
                    c2w[f] = pose.numpy()
        K = _scaled(Kf.numpy(), 1 / sx, 1 / sy).numpy()
        return ClipCameras(c2w=c2w, K=K)


class ColmapPoseEstimator:
    """COLMAP (pycolmap: SIFT, matching, mapping; ``backend.engines.colmap``) on each clip's
    frames. A clip it cannot register (too little texture or overlap: common on the 64 px
    generated frames) gives NaN cameras, never invented ones."""

    name = "colmap"
    model_id = "pycolmap"

    def __init__(self, **options):
        self.options = options

    def estimate(self, clips: list, K_first=None, K_last=None, progress=None, last_only: bool = False
                 ) -> list[ClipCameras]:
        from ..engines.base import EngineError
        from ..engines.colmap import ColmapEngine
        from ..io_video import VideoError

        progress = Progress.of(progress)
        engine = ColmapEngine()
        known = K_first is not None and (K_last is None or np.allclose(K_first, K_last))
        out = []
        for i, clip in enumerate(clips):
            span = progress.span(i / len(clips), (i + 1) / len(clips), f"colmap {i + 1}/{len(clips)}")
            k = len(clip)
            c2w, K = np.full((k, 4, 4), np.nan), np.full((3, 3), np.nan)
            try:
                b = engine.solve(list(np.asarray(clip)), progress=span, K=np.asarray(K_first) if known else None,
                                 **self.options)
                raw = b.c2w_array()
                K = b.cameras[0].K
                if np.isfinite(raw[0]).all():
                    c2w = np.linalg.inv(raw[0]) @ raw  # NaN rows stay NaN
                    c2w[0] = np.eye(4)
            except (EngineError, VideoError):
                pass  # nothing registered, or nothing to match (flat, tiny): the NaN cameras say so
            out.append(ClipCameras(c2w=c2w, K=K))
        progress(1.0, "colmap done")
        return out


# ----------------------------------------------------------------------------------------
# What the CLI and the service can name


GENERATORS = ("unified",)  # built in; a catalogue id or a model folder names a hub generator
ESTIMATORS = ("unified", "colmap")


def make_generator(generator: str = "unified", model_path=None, device=None, steps: int = 25,
                   guidance: float = 5.0, progress=None):
    """The generator role by name: ``"unified"`` (the unified model on ``model_path``, default the
    shipped one), or a catalogue id / model folder (``backend.hub``: resolved offline, loaded by
    its loader). A model that cannot interpolate between two frames is refused here, before any
    video is asked of it (ValueError; ``backend.hub.catalogue.ModelNotAvailable`` when a catalogue
    model is not downloaded)."""
    if generator in GENERATORS:
        return UnifiedInterpolator(steps=steps, guidance=guidance, model_path=model_path, device=device)
    from ..hub.catalogue import resolve_model
    from ..hub.generators import load_generator

    gen = load_generator(resolve_model(generator), device=device, steps=steps, guidance=guidance, progress=progress)
    if "flf2v" not in gen.supports:
        raise ValueError(f"generator {generator!r} ({gen.name}) cannot make a video between two images "
                         f"(it does: {', '.join(sorted(gen.supports))}); pair-pose needs first-last-frame "
                         "interpolation, e.g. Wan first-last-frame or LTX-Video")
    return gen


def video_frames(generator, frames=None):
    """Frames per generated video for ``generator``: ``frames`` as the model makes it
    (``frames_for``: Wan 4k+1, LTX 8k+1), or by default the unified model's window, and 16 for a hub
    model (17 for Wan): the unified estimator solves a video's subsets in one window."""
    if frames is None and isinstance(generator, UnifiedGenerator):
        return None  # PairPosePipeline's default: the model's window
    return generator.frames_for(frames if frames is not None else min(16, int(generator.max_frames)))


def make_roles(generator: str = "unified", estimator: str = "unified", model_path=None, device=None,
               steps: int = 25, guidance: float = 5.0, align: bool = False):
    """(generator, estimator) by name (see :func:`make_generator`); the unified ones share one
    model. ``model_path``: the unified model's checkpoint (the generator's when it is unified,
    the estimator's always)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown pose estimator {estimator!r}; this build has: {', '.join(ESTIMATORS)}")
    gen = make_generator(generator, model_path=model_path, device=device, steps=steps, guidance=guidance)
    if estimator == "colmap":
        return gen, ColmapPoseEstimator()
    if isinstance(gen, UnifiedGenerator):
        return gen, UnifiedPoseEstimator(share=gen.pipe, align=align)
    return gen, UnifiedPoseEstimator(model_path=model_path, device=device, align=align)
