"""The three roles a Parallax pipeline takes, as interfaces (DESIGN section 11, issue 16).

Pipelines take roles, never concrete classes: whatever has these attributes and methods fills
a role, whether it is the unified model (ours), a hub model (``backend.hub``) or a test fake.

- **generator** (:class:`Generator`): makes video. Text to video, first-last-frame
  interpolation, image to video. Filled by
  ``backend.pipelines.unified_roles.UnifiedGenerator`` (the unified model, T2V with keyframes;
  ``backend.pipelines.pair_roles.UnifiedInterpolator`` is the same class under its InterPose
  name) and by the hub adapters of ``backend.hub.generators`` (Wan T2V, Wan first-last-frame,
  LTX-Video keyframes, CogVideoX), which ``backend.hub.generators.load_generator(resolved)``
  builds.
- **geometry** (:class:`Geometry`): a clip in, per-frame depth, cameras and confidence out
  (:class:`GeometryPrediction`). Filled by ``backend.pipelines.unified_roles.UnifiedGeometry``
  (the unified model's V2C, ``backend.pipelines.v2c``) and by the hub geometry model that
  ``backend.hub.geometry.load_geometry(resolved)`` builds.
- **solver** (:class:`Solver`): a clip in, a ``solve`` bundle of cameras (and points) out. Filled
  by the engines of the ``backend.engines`` registry (``EngineSpec``: colmap, auto, unified).

T2V+C in one pass (the video and its cameras from the same denoising passes) needs a model with
our geometry heads: a generator whose ``supports`` holds ``"t2v+c"``. With any other generator
``generate`` runs T2V, then the geometry role on the frames, and the bundle's ``source`` names
the model that filled each role (``source["generator"]``, ``source["geometry"]``).

Conventions (DESIGN section 2): frames are (F, H, W, 3) uint8 RGB; cameras are OpenCV
camera-to-world 4x4 matrices with the world the first frame's camera; intrinsics are in pixels of
the frames the role was given (pixel centres at integer coordinates).

This module imports numpy only, so the server and the CLI can name the roles cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, Union, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # names for the annotations only; the roles import nothing of the backend
    from .bundle import Bundle
    from .runtime import Progress

ProgressLike = Union["Progress", Callable[[float, str], Optional[bool]], None]

# The tasks a role can do; ``Generator.supports`` and the catalogue's ``ModelEntry.tasks`` use
# these names.
GENERATOR_TASKS = ("t2v", "t2v+c", "flf2v", "i2v", "keyframes")
GEOMETRY_TASKS = ("v2c", "geometry")


@runtime_checkable
class Generator(Protocol):
    """A video generator.

    Attributes:
        name (`str`): what fills the role, e.g. ``"unified"``, ``"wan-t2v"``, ``"ltx-condition"``
            (the loader name of a hub model), written into bundles.
        model_id (`str`): the model's catalogue id or folder, written into bundles.
        max_frames (`int`): the most frames one call can make.
        supports (`frozenset[str]`): the tasks of :data:`GENERATOR_TASKS` this model does; a
            method for a task it lacks raises ``NotImplementedError`` naming the task.
    """

    name: str
    model_id: str
    max_frames: int
    supports: frozenset

    def frames_for(self, frames: int) -> int:
        """The frame count this model makes when asked for ``frames`` (e.g. Wan: 4k+1, LTX:
        8k+1, CogVideoX: 8k+1; the unified model: any count up to ``max_frames``). Pipelines
        call it first, so they can say what they will get before any work starts."""

    def text_to_video(self, prompt: str, frames: int, seed: int = 0, steps: Optional[int] = None,
                      guidance: Optional[float] = None, progress: ProgressLike = None) -> np.ndarray:
        """A video from a prompt.

        Args:
            prompt (`str`): what the shot shows and how the camera moves.
            frames (`int`): frames wanted; the model makes ``frames_for(frames)``.
            seed (`int`): the random seed (same seed and arguments: same video).
            steps (`int`, *optional*): denoising steps (None: the model's default).
            guidance (`float`, *optional*): classifier-free guidance scale (None: the model's default).
            progress: a ``backend.runtime.Progress`` or ``callback(fraction, label)``; reported once
                per denoising step; a cancel raises ``backend.runtime.Cancelled`` within a step.

        Returns:
            `np.ndarray` of shape (F, H, W, 3), uint8.
        """

    def interpolate(self, first: np.ndarray, last: np.ndarray, frames: int, seed: int = 0, prompt: str = "",
                    progress: ProgressLike = None) -> np.ndarray:
        """A video whose first frame is ``first`` and whose last is ``last`` ((h, w, 3) uint8
        each), ``frames`` long (exactly: InterPose reads its first and last frames as A and B,
        so a model that rounds frame counts is asked for one it accepts). Steps and guidance are
        the generator's own (set when it was built). Returns (frames, H, W, 3) uint8, in the
        model's resolution; the caller resizes."""

    def image_to_video(self, image: np.ndarray, frames: int, seed: int = 0, prompt: str = "",
                       progress: ProgressLike = None) -> np.ndarray:
        """A video whose first frame is ``image`` ((h, w, 3) uint8). Returns (F, H, W, 3) uint8."""

    # A generator whose ``supports`` holds "keyframes" (the unified model, LTX-Video) also has
    # ``keyframes(images: dict[int, (h, w, 3) uint8], frames, seed=0, prompt="", progress=None)``:
    # a video through given frames at chosen indices. It is not part of the protocol, since
    # most models have no such mode.


@dataclass
class GeometryPrediction:
    """What the geometry role returns for a clip of F frames of H x W pixels.

    Attributes:
        depth (`np.ndarray` (F, H, W) float32): z-depth along each frame's optical axis, in the
            scale of the first frame's camera (arbitrary unit, shared by all frames); 0 where
            unknown.
        c2w (`np.ndarray` (F, 4, 4) float64): OpenCV camera-to-world, world = the first frame's
            camera (``c2w[0]`` is the identity); NaN rows for frames without a pose.
        K (`np.ndarray` (F, 3, 3) float64): intrinsics in pixels of the given frames.
        conf (`np.ndarray` (F, H, W) float32): confidence, higher is surer; 0 where unknown. Its
            scale is the model's own (the unified model's C >= 1, see ``assemble.CONFIDENT``);
            ``conf_threshold`` says which values are confident.
        conf_threshold (`float`): points with ``conf > conf_threshold`` are worth keeping.
        points (`np.ndarray` (F, H, W, 3) float32, *optional*): world point maps where the model
            predicts them directly (else they follow from depth, K and c2w).
        extras (`dict`): anything else the model reports (timings, windows...), JSON-safe.
    """

    depth: np.ndarray
    c2w: np.ndarray
    K: np.ndarray
    conf: np.ndarray
    conf_threshold: float = 0.0
    points: Optional[np.ndarray] = None
    extras: dict = None

    def __post_init__(self):
        if self.extras is None:
            self.extras = {}

    def validate(self, frames: int, height: int, width: int) -> "GeometryPrediction":
        """Check shapes and dtypes against the clip given (ValueError naming the bad field)."""
        want = {"depth": (frames, height, width), "c2w": (frames, 4, 4), "K": (frames, 3, 3),
                "conf": (frames, height, width)}
        if self.points is not None:
            want["points"] = (frames, height, width, 3)
        for name, shape in want.items():
            got = np.shape(getattr(self, name))
            if tuple(got) != shape:
                raise ValueError(f"geometry prediction: {name} has shape {tuple(got)}, expected {shape}")
        if not np.isfinite(self.K).all() or (self.K[:, 0, 0] <= 0).any() or (self.K[:, 1, 1] <= 0).any():
            raise ValueError("geometry prediction: intrinsics must be finite with positive focal lengths")
        return self


@runtime_checkable
class Geometry(Protocol):
    """A feed-forward geometry model: a clip in, depth, cameras and confidence out.

    Attributes:
        name (`str`): what fills the role (``"unified"``, ``"depth-anything-3"``...), written into bundles.
        model_id (`str`): the model's catalogue id or folder.
    """

    name: str
    model_id: str

    def predict(self, frames: np.ndarray, K: Optional[np.ndarray] = None,
                progress: ProgressLike = None) -> GeometryPrediction:
        """Geometry of a clip.

        Args:
            frames (`np.ndarray` (F, H, W, 3) uint8): the clip, F >= 1 (a model that needs two
                frames for cameras says so with a ValueError).
            K (`np.ndarray` (3, 3), *optional*): known intrinsics in pixels of ``frames`` (all
                frames); None: estimated.
            progress: a ``backend.runtime.Progress`` or ``callback(fraction, label)``; a cancel
                raises ``backend.runtime.Cancelled``.
        """


@runtime_checkable
class Solver(Protocol):
    """A camera solver: the engines of ``backend.engines`` (the ``EngineSpec`` registry)."""

    name: str

    def solve(self, frames: Any, progress: ProgressLike = None, **options) -> "Bundle":
        """Cameras (and points) of a clip as a ``solve`` bundle; ``frames`` as the engines take
        them (an array, image paths, a video or image-folder path)."""


def check_video(video: Any, frames: Optional[int] = None, who: str = "generator") -> np.ndarray:
    """``video`` as a (F, H, W, 3) uint8 array, or a ValueError naming ``who`` and what is
    wrong (a role's output is checked before a bundle is built from it)."""
    arr = np.asarray(video)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"{who} returned frames of shape {arr.shape} and dtype {arr.dtype}; "
                         "expected (F, H, W, 3) uint8")
    if frames is not None and len(arr) != frames:
        raise ValueError(f"{who} returned {len(arr)} frames, asked for {frames}")
    return arr


def describe(role: Any) -> dict:
    """``{"name", "model_id"}`` of a role filler, for a bundle's ``source``."""
    return {"name": str(getattr(role, "name", type(role).__name__)), "model_id": str(getattr(role, "model_id", ""))}
