"""``generate`` over roles: a shot from a prompt with any generator, and its cameras from a
geometry role (issue 16; DESIGN section 11).

- A generator that does T2V+C (``"t2v+c" in generator.supports``: the unified model) with no
  other geometry asked for: the video and its cameras come from the same denoising passes
  (``t2v.generate_bundle``).
- Any other generator: T2V (or image-to-video / first-last-frame when images are given), then
  the geometry role on the generated frames (the unified model's V2C unless another is given).

Either way ``bundle.source`` names the model that filled each role: ``source["generator"]`` and
``source["geometry"]`` (``{"name", "model_id"}``, geometry None for a video without cameras),
and ``source["one_pass"]`` says whether the cameras came from the generator's own passes.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..bundle import Bundle, DepthFrame, PointFrame
from ..roles import GeometryPrediction, check_video, describe
from ..runtime import Progress

# Points kept per frame when a geometry role gives dense depth (a 480p frame has 400k pixels;
# 16k per frame keeps a 81-frame shot's bundle near 40 MB while the unified model's 64 px maps give 4k).
MAX_POINTS_PER_FRAME = 16384
DEFAULT_FPS = 8.0  # the unified model's clips


def generate_shot(generator, prompt: str, frames: Optional[int] = None, seed: int = 0, steps: Optional[int] = None,
                  guidance: Optional[float] = None, camera: bool = True, images: Optional[list] = None,
                  geometry=None, progress=None) -> Bundle:
    """A ``generate`` bundle from a generator role and, for cameras, a geometry role.

    Args:
        generator: fills ``backend.roles.Generator``.
        prompt (`str`): the shot.
        frames (`int`, *optional*): frames wanted (None: :func:`frames_wanted`); the generator's
            ``frames_for`` says what it makes of the count.
        seed, steps, guidance: sampling (None: the generator's defaults).
        camera (`bool`): also the cameras, depth and points.
        images (`list`, *optional*): (h, w, 3) uint8 images: one is the first frame, two the first
            and the last.
        geometry: fills ``backend.roles.Geometry`` (None: the unified model's V2C, sharing the
            generator's model when the generator is the unified one).
        progress: a ``backend.runtime.Progress`` or ``callback(fraction, label)``.
    """
    progress = Progress.of(progress)
    images = list(images or [])
    if len(images) > 2:
        raise ValueError(f"generate takes at most two images (the first and last frames), got {len(images)}")
    n = generator.frames_for(frames_wanted(generator, frames))
    if images and not ({"i2v", "flf2v"} & set(generator.supports)):
        raise ValueError(f"{generator.name} ({generator.model_id}) makes video from text only; it takes no images")
    if len(images) == 2 and "flf2v" not in generator.supports:
        raise ValueError(f"{generator.name} ({generator.model_id}) cannot interpolate between two images")
    if geometry is None and "t2v+c" in generator.supports:  # the unified model: its own pipeline, cameras or not
        return _one_pass(generator, prompt, n, seed, steps, guidance, images, camera, progress)
    gen_span = progress.span(0.0, 0.7 if camera else 1.0, "")
    with progress.timed("generation"):
        if not images:
            video = generator.text_to_video(prompt, n, seed=seed, steps=steps, guidance=guidance, progress=gen_span)
        elif len(images) == 1:
            video = generator.image_to_video(images[0], n, seed=seed, prompt=prompt, progress=gen_span)
        else:
            video = generator.interpolate(images[0], images[1], n, seed=seed, prompt=prompt, progress=gen_span)
    video = check_video(video, n, who=f"generator {generator.name}")
    F, H, W = video.shape[:3]
    b = Bundle(task="generate", width=W, height=H, frame_count=F, fps=float(getattr(generator, "fps", DEFAULT_FPS)),
               engine=generator.name, model_id=generator.model_id, frames=list(video),
               source={"prompt": prompt, "seed": seed, "steps": steps or getattr(generator, "steps", None),
                       "guidance": guidance if guidance is not None else getattr(generator, "guidance", None),
                       "generator": describe(generator), "geometry": None, "one_pass": False,
                       "keyframes": len(images)})
    if camera:
        if geometry is None:
            geometry = default_geometry(generator)
        with progress.timed("geometry"):
            pred = geometry.predict(video, progress=progress.span(0.7, 0.98, "cameras"))
        pred.validate(F, H, W)
        b.cameras, b.points, b.depth = prediction_parts(pred, video)
        b.source["geometry"] = describe(geometry)
        good = pred.conf[pred.conf > 0]
        b.scores["confidence"] = float(good.mean()) if good.size else 0.0
    b.timings = {k: round(v, 4) for k, v in progress.timings.items()}
    progress(1.0, "done")
    return b


def frames_wanted(generator, frames: Optional[int]) -> int:
    """The frame count to ask for: as given, else 16 (a 2-second shot at 8 fps; a hub model
    rounds it to its own count, Wan's 17) or the unified model's window when smaller."""
    return int(frames) if frames is not None else min(16, int(generator.max_frames))


def default_geometry(generator):
    """The unified model's V2C, on the generator's own model when the generator is unified."""
    from .common import LazyModel
    from .unified_roles import UnifiedGeometry

    pipe = getattr(generator, "pipe", None)
    return UnifiedGeometry(share=pipe) if isinstance(pipe, LazyModel) else UnifiedGeometry(device=None)


def _one_pass(generator, prompt, n, seed, steps, guidance, images, camera, progress) -> Bundle:
    """T2V(+C) with the unified model: video and cameras from the same passes."""
    from .t2v import generate_bundle

    keyframes = None
    if images:
        keyframes = {0: images[0]} if len(images) == 1 else {0: images[0], n - 1: images[1]}
    b = generate_bundle(generator.pipe, prompt, frames=n, seed=seed, camera=camera,
                        steps=int(steps or generator.steps),
                        guidance=generator.guidance if guidance is None else float(guidance), keyframes=keyframes,
                        progress=progress)
    b.source.update({"generator": describe(generator), "geometry": describe(generator) if camera else None,
                     "one_pass": bool(camera), "keyframes": len(images)})
    return b


def prediction_parts(pred: GeometryPrediction, video: np.ndarray) -> tuple[list, list, list]:
    """Bundle cameras, points and depth from a geometry prediction of ``video`` (F, H, W, 3).

    Points: each frame's confident pixels (``conf > conf_threshold`` and depth > 0) lifted to the
    world by depth, K and c2w (or the prediction's own world point maps), on a regular pixel grid
    of at most :data:`MAX_POINTS_PER_FRAME`; a frame without a pose gets no points."""
    import torch

    from ..geometry.cameras import depth_to_pointmap
    from .assemble import camera_frames

    F, H, W = video.shape[:3]
    cams = camera_frames(torch.as_tensor(pred.c2w, dtype=torch.float64), torch.as_tensor(pred.K, dtype=torch.float64))
    step = max(1, math.ceil(math.sqrt(H * W / MAX_POINTS_PER_FRAME)))
    points, depth = [], []
    for f in range(F):
        d = np.nan_to_num(np.asarray(pred.depth[f], dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        c = np.nan_to_num(np.asarray(pred.conf[f], dtype=np.float32), nan=0.0)
        depth.append(DepthFrame(np.clip(d, 0, None), np.clip(c, 0, 65000).astype(np.float16)))
        c2w = np.asarray(pred.c2w[f], dtype=np.float64)
        if not np.isfinite(c2w).all():
            points.append(PointFrame(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), np.zeros(0, np.float16)))
            continue
        if pred.points is not None:
            xyz = np.asarray(pred.points[f], dtype=np.float32)
        else:
            xyz = depth_to_pointmap(torch.from_numpy(d).double(), torch.as_tensor(pred.K[f], dtype=torch.float64),
                                    torch.from_numpy(c2w)).float().numpy()
        keep = np.zeros((H, W), bool)
        keep[::step, ::step] = True
        keep &= (c > pred.conf_threshold) & (d > 0) & np.isfinite(xyz).all(-1)
        points.append(PointFrame(xyz[keep], np.asarray(video[f])[keep], np.clip(c[keep], 0, 65000).astype(np.float16)))
    return cams, points, depth
