"""The ``pair_pose`` task: the relative pose of two images (InterPose, DESIGN section 6).

Inputs: two images, A then B. The pipeline (``backend.pipelines.pair_pose``) generates in-between
videos with the generator role (the unified model, or a first-last-frame hub model named by
``params.generator``), estimates B's pose from A on frame subsets of each and keeps the
most self-consistent answer. The job's bundle is a directory the pipeline writes in the job's
work folder: the ``pair_pose`` bundle with the selected video as a ``generate`` bundle in its
``generated/`` folder (the server validates and zips the whole folder). The unified model is
loaded once per server process and kept in ``ctx.cache`` (shared with ``generate``'s pipeline
when that was loaded first); progress is reported per denoising step and per subset batch, and
a cancel stops the job within a step.

No torch at import time: ``/v1/health`` only checks that the modules and the weights exist.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from . import JobContext, Task
from .generate import MAX_SEED, MODEL_WINDOW, check


class PairPoseParams(BaseModel):
    # strict: JSON true is not the integer 1, nor "5" the integer 5
    model_config = ConfigDict(extra="forbid", strict=True)
    videos: int = Field(4, ge=0, le=32, description="generated in-between videos; 0: the pair-only estimate")
    frames: int = Field(MODEL_WINDOW, ge=3, le=MODEL_WINDOW,
                        description=f"frames per generated video (3 to the model's window, {MODEL_WINDOW})")
    k: Optional[int] = Field(None, ge=3, le=MODEL_WINDOW,
                             description="frames per subset, A and B included (default: a video's frames but 3)")
    subsets: int = Field(10, ge=1, le=64, description="random frame subsets per video (plus one uniform)")
    steps: int = Field(25, ge=1, le=100, description="denoising steps per video")
    guidance: float = Field(5.0, ge=0.0, le=20.0, description="classifier-free guidance (0: prompts ignored)")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of the first video (video i uses seed + i)")
    generator: str = Field("unified", min_length=1, max_length=1000,
                           description="video generator: unified (the shipped model), or the catalogue id or "
                                       "folder of a first-last-frame model (python -m backend models list)")
    estimator: Literal["unified", "colmap"] = Field("unified", description="pose estimator")
    intrinsics: Optional[list[float]] = Field(None, min_length=4, max_length=4,
                                              description="fx, fy, cx, cy of the camera of both images, in "
                                                          "pixels (default: estimated)")

    @field_validator("intrinsics")
    @classmethod
    def _positive_focal(cls, v):
        if v is not None:
            if any(x != x or abs(x) == float("inf") for x in v):
                raise ValueError("intrinsics must be finite numbers")
            if v[0] <= 0 or v[1] <= 0:
                raise ValueError("intrinsics: the focal lengths fx and fy must be positive")
        return v

    @field_validator("generator")
    @classmethod
    def _known_generator(cls, v: str) -> str:
        """unified, a catalogue id or an existing folder, checked before the job is queued."""
        import os

        from ...hub.catalogue import catalogue

        if v != "unified" and v not in catalogue() and not os.path.isdir(os.path.expanduser(v)):
            raise ValueError(f"generator {v!r} is neither 'unified', a catalogue id (python -m backend models list) "
                             "nor a model folder")
        return v

    @model_validator(mode="after")
    def _k_fits(self):
        if self.videos and self.k is not None and self.k > self.frames:
            raise ValueError(f"k ({self.k} frames per subset) cannot exceed frames per video ({self.frames})")
        return self


def _roles(ctx: JobContext, p: PairPoseParams):
    """The generator and estimator: the unified ones on this server process's one copy of the
    model; a hub generator loaded once and kept (the generate task's cache, one at a time)."""
    from ...pipelines.pair_roles import ColmapPoseEstimator, UnifiedInterpolator, UnifiedPoseEstimator
    from .generate import hub_generator, pipeline

    t2v = pipeline(ctx)  # the generate task's loaded T2V pipeline (loaded here if not yet)
    if p.generator == "unified":
        gen = UnifiedInterpolator(pipe=t2v, steps=p.steps, guidance=p.guidance)
    else:
        gen = hub_generator(ctx, p.generator)
        if "flf2v" not in gen.supports:
            raise ValueError(f"generator {p.generator!r} ({gen.name}) cannot make a video between two images; "
                             "pair-pose needs a first-last-frame model")
    est = UnifiedPoseEstimator(share=t2v) if p.estimator == "unified" else ColmapPoseEstimator()
    return gen, est


def run(ctx: JobContext):
    """The job: returns the folder of the written bundle (pair + generated/)."""
    from ...pipelines.pair_pose import PairPosePipeline, prepare_views, write_result

    p: PairPoseParams = ctx.params
    a, b = (str(u.path) for u in ctx.inputs)
    prepare_views(a, b, p.intrinsics)  # a bad image fails the job before the model loads
    from ...pipelines.pair_roles import video_frames

    gen, est = _roles(ctx, p)
    frames = p.frames if p.generator == "unified" else video_frames(gen, p.frames)  # Wan 4k+1, LTX 8k+1
    pipe = PairPosePipeline(gen, est, videos=p.videos, frames=frames, k=p.k, random_subsets=p.subsets, seed=p.seed)
    result = pipe(a, b, K=p.intrinsics, progress=ctx.progress)
    ctx.progress.check()
    return write_result(result, ctx.work_dir / "bundle")


TASK = Task("pair_pose", "relative camera pose of two images with little overlap (InterPose: generated "
                         "in-between videos, the most self-consistent answer); inputs: image A, image B",
            run, PairPoseParams, input_kinds=("image",), min_inputs=2, max_inputs=2, check=check, video_alone=False)
