"""The ``reconstruct`` task: a dynamic scene from one clip (Geo4D, DESIGN section 6): per-frame
cameras, video depth, world points with a per-point dynamic flag.

Input: one video, or 2+ images in order (as ``solve``). The reconstructor (the unified model) is
built once per server process and kept in ``ctx.cache``; ``/v1/release`` empties it. Progress
is reported per window and every 25 alignment iterations, so a cancel stops the job within that.
This module imports no torch at import time (``/v1/health`` checks availability cheaply).
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...io_video import DEFAULT_MAX_FRAMES
from . import JobContext, Task, load_once, missing_for_model
from .generate import MODEL_WINDOW, WEIGHTS


class ReconstructParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: int = Field(0, ge=0, le=1_000_000, description="first frame used")
    stride: int = Field(1, ge=1, le=100, description="use every n-th frame")
    max_frames: Optional[int] = Field(None, ge=2, le=DEFAULT_MAX_FRAMES, description="cap on frames used")
    window_stride: int = Field(4, ge=1, le=MODEL_WINDOW - 1,
                               description=f"frames between the starts of the model's {MODEL_WINDOW}-frame windows "
                                           "(Geo4D: 4)")
    chunk_frames: int = Field(64, ge=MODEL_WINDOW, le=1024,
                              description="frames aligned together; longer clips are chained chunk by chunk "
                                          "(memory grows with this, not with the clip)")
    iterations: int = Field(500, ge=10, le=5000, description="Adam iterations of the joint alignment (Geo4D: 500)")
    multimodal: bool = Field(True, description="align point maps with disparity, ray trajectory and smoothness "
                                               "(Geo4D); false: point maps only")
    model: Optional[str] = Field(None, min_length=1, max_length=1000,
                                 description="catalogue id or model folder: a hub geometry model (e.g. Depth Anything "
                                             "3) gives depth, cameras and confidence itself and the window options "
                                             "above do not apply; our own checkpoint runs the windows (default: the "
                                             "shipped parallax-tiny)")

    @model_validator(mode="after")
    def _window_fits_chunk(self):
        if self.chunk_frames < MODEL_WINDOW + self.window_stride:
            raise ValueError(f"chunk_frames ({self.chunk_frames}) must hold two windows: at least "
                             f"{MODEL_WINDOW} + window_stride = {MODEL_WINDOW + self.window_stride}")
        return self


REQUIRES = ("torch", "diffusers", "safetensors")


def check() -> Optional[str]:
    """Why reconstruct cannot run in this environment, or None (for ``/v1/health``)."""
    return missing_for_model(REQUIRES, WEIGHTS)


def reconstructor(ctx):
    """The reconstructor of this server process, loaded on the first job and kept."""
    def build():
        from ...pipelines.reconstruct import Reconstructor

        rec = Reconstructor(device=ctx.device)
        rec.model  # noqa: B018 - load now: the first job's progress then says what takes the time
        return rec

    return load_once(ctx, ("reconstruct", ctx.device), build)


def hub_geometry(ctx, model: str):
    """``(geometry, None)`` for a hub geometry model or ``(None, model_path)`` for our own
    checkpoint, loaded on the first job that names it and kept (one model at a time)."""
    from ...pipelines.reconstruct_geometry import resolve_reconstructor

    key = ("reconstruct-model", model, ctx.device)
    if key not in ctx.cache:
        for old in [k for k in ctx.cache if isinstance(k, tuple) and k[:1] == ("reconstruct-model",)]:
            del ctx.cache[old]  # a second hub model replaces the first: GPU memory holds one
    return load_once(ctx, key, lambda: resolve_reconstructor(model, ctx.device))


def run(ctx: JobContext):
    """The job: returns the reconstruct Bundle."""
    p: ReconstructParams = ctx.params
    first = ctx.inputs[0]
    source = str(first.path) if first.kind == "video" else [str(u.path) for u in ctx.inputs]
    if p.model is not None:
        geometry, model_path = hub_geometry(ctx, p.model)
        if geometry is not None:
            from ...pipelines.reconstruct_geometry import reconstruct_with_geometry

            return reconstruct_with_geometry(geometry, source, progress=ctx.progress, start=p.start, stride=p.stride,
                                             max_frames=p.max_frames)
        if model_path is not None:
            rec = load_once(ctx, ("reconstruct", ctx.device, model_path), lambda: _build(ctx, model_path))
            return _run_unified(rec, source, p, ctx)
    rec = reconstructor(ctx)
    return _run_unified(rec, source, p, ctx)


def _build(ctx, model_path):
    from ...pipelines.reconstruct import Reconstructor

    rec = Reconstructor(model_path=model_path, device=ctx.device)
    rec.model  # noqa: B018 - load now
    return rec


def _run_unified(rec, source, p: ReconstructParams, ctx):
    from ...geometry.align4d import POINTMAP_ONLY, ModalityWeights

    return rec.reconstruct(source, progress=ctx.progress, start=p.start, stride=p.stride, max_frames=p.max_frames,
                           window_stride=p.window_stride, chunk_frames=p.chunk_frames, iterations=p.iterations,
                           weights=ModalityWeights() if p.multimodal else POINTMAP_ONLY)


TASK = Task("reconstruct", "a dynamic scene from a clip (Geo4D): per-frame cameras, depth and points with a "
                           "dynamic flag (one video, or 2+ images in order)",
            run, ReconstructParams, ("video", "image"), 1, DEFAULT_MAX_FRAMES, check=check)
