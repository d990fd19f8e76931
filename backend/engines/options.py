"""Typed, ranged options of each engine (pydantic; no torch, no pycolmap).

The service validates a job's engine options against these before the job is queued, so a bad
value gets a 422 naming the option instead of reaching native code (``overlap=0`` used to abort
the whole server process inside a pycolmap check), and the CLI validates its flags the same way.
Frame selection (start, stride, max_frames) is not here: every engine takes it, and the task's
own params carry it.

Strict types: lax pydantic took JSON ``true`` as the integer 1 and ``"5"`` as 5, so
``{"overlap": true}`` reached COLMAP as a 1-frame window; a JSON client sends numbers as numbers.
"""

from __future__ import annotations

import math
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Matrix3 = list[list[float]]


class EngineOptions(BaseModel):
    """What every engine accepts."""

    model_config = ConfigDict(extra="forbid", strict=True)
    K: Optional[Matrix3] = Field(None, description="known 3x3 intrinsics in the input's pixels "
                                                     "(pixel centres at integers); held fixed")
    fps: Optional[float] = Field(None, gt=0.0, le=1000.0, description="frame rate to record (default: the video's)")

    @field_validator("K")
    @classmethod
    def _intrinsics(cls, K):
        if K is None:
            return K
        if len(K) != 3 or any(len(row) != 3 for row in K):
            raise ValueError("K must be a 3x3 matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]")
        if not all(math.isfinite(v) for row in K for v in row):
            raise ValueError("K must hold finite numbers")
        if not (0 < K[0][0] < 1e6 and 0 < K[1][1] < 1e6 and abs(K[0][2]) < 1e6 and abs(K[1][2]) < 1e6):
            raise ValueError("K needs positive focal lengths and principal points under 1e6 px")
        # The engines read fx, fy, cx, cy only: a skew or another bottom row would be ignored
        # silently, so it is refused instead.
        if max(abs(K[0][1]), abs(K[1][0]), abs(K[2][0]), abs(K[2][1]), abs(K[2][2] - 1.0)) > 1e-6:
            raise ValueError("K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew)")
        return K


Features = Literal["sift", "disk", "aliked"]
# auto's candidates, in order of preference (ties go to the first): see backend/engines/auto.py.
AUTO_CANDIDATES = ("aliked", "sift")


def _features_available(schema: dict) -> None:
    """The served schema (/v1/health) says which learned features cannot run here, and why."""
    from .features import LEARNED, unavailable_reason

    reasons = {kind: reason for kind in LEARNED if (reason := unavailable_reason(kind))}
    if reasons:
        schema["unavailable"] = reasons


def _check_features(kind: str) -> str:
    # Refused before the job is queued (a 422 naming what is missing), never swapped for SIFT.
    from .features import unavailable_reason

    reason = unavailable_reason(kind)
    if reason:
        raise ValueError(f"{kind} features are not available here: {reason}")
    return kind


class KnownIntrinsicsOptions(EngineOptions):
    """A known focal length (in pixels, or in mm with the sensor width), held or as a prior."""

    focal_px: Optional[float] = Field(None, gt=0.0, lt=1e6, description="known focal length in the input's pixels; "
                                                                         "principal point at the frame's centre")
    focal_mm: Optional[float] = Field(None, gt=0.0, le=10000.0, description="known focal length in mm (with sensor_mm)")
    sensor_mm: Optional[float] = Field(None, gt=0.0, le=1000.0,
                                       description="width in mm of the sensor area the frame shows (with focal_mm)")
    refine_intrinsics: bool = Field(False, description="use the known K / focal length as a prior that bundle "
                                                       "adjustment refines, instead of holding it fixed")

    @model_validator(mode="after")
    def _one_focal(self):
        given = [k for k in ("K", "focal_px", "focal_mm") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of K, focal_px or focal_mm (with sensor_mm), not {' and '.join(given)}")
        if (self.focal_mm is None) != (self.sensor_mm is None):
            raise ValueError("focal_mm and sensor_mm go together (focal in px = focal_mm / sensor_mm * width)")
        if self.refine_intrinsics and not given:
            raise ValueError("refine_intrinsics needs a known K, focal_px or focal_mm to start from")
        return self


class _ColmapCommon(KnownIntrinsicsOptions):
    """What the colmap engine and each of auto's candidates take."""

    max_keypoints: int = Field(2048, ge=64, le=16384, description="learned features: keypoints per frame")
    learned_image_size: int = Field(1024, ge=64, le=4096, description="learned features: frames are resized "
                                                                       "(up or down) to this longer side")
    mapper: Literal["auto", "global", "incremental"] = Field(
        "auto", description="GLOMAP (global), incremental, or auto: GLOMAP plus incremental when needed (always "
                            "on clips of up to 64 frames, where each mapper also maps the matches verified again "
                            "with the self-calibrated focal length)")
    camera_model: Optional[Literal["SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV"]] = Field(
        None, description="COLMAP camera model (default: chosen by lens: SIMPLE_PINHOLE, or PINHOLE with known "
                          "intrinsics, and RADIAL for the distorted camera); SIMPLE_RADIAL, RADIAL and OPENCV "
                          "estimate lens distortion")
    lens: Literal["auto", "pinhole", "distorted"] = Field(
        "auto", description="lens distortion: auto (default) solves a pinhole and a radially distorted camera on "
                            "the same matches and keeps the distortion only when the footage needs it (it moves "
                            "the image by more than 0.5 px, lowers the reprojection error by 5 % and is a "
                            "plausible lens); pinhole never estimates it; distorted always keeps it. A kept "
                            "distortion is in every camera's dist, with the frames undistorted for the pinhole "
                            "camera")
    calibrate: bool = Field(True, description="self-calibrate the focal length from the view graph")
    max_image_size: int = Field(1600, ge=64, le=16384, description="SIFT: frames are downscaled to this side")
    max_num_features: int = Field(8192, ge=64, le=65536, description="SIFT features per frame")
    peak_threshold: Optional[float] = Field(None, gt=0.0, le=1.0, description="SIFT contrast threshold")
    overlap: int = Field(10, ge=1, le=1000, description="sequential matching window in frames")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="COLMAP's random seed")
    num_threads: int = Field(-1, ge=-1, le=1024, description="threads for features and matching (-1: all); "
                                                              "learned features: torch's CPU threads")
    mapper_threads: int = Field(1, ge=-1, le=1024, description="threads for mapping")

    @model_validator(mode="after")
    def _lens_and_model(self):
        # checked here too (the engine checks again): a contradiction is a 422, not a failed job
        if self.camera_model in ("SIMPLE_PINHOLE", "PINHOLE") and self.lens == "distorted":
            raise ValueError(f"lens 'distorted' estimates distortion, but camera_model {self.camera_model} has none")
        if self.camera_model in ("SIMPLE_RADIAL", "RADIAL", "OPENCV") and self.lens == "pinhole":
            raise ValueError(f"lens 'pinhole' estimates no distortion, but camera_model {self.camera_model} does")
        return self

    @model_validator(mode="after")
    def _one_focal_model(self):
        if self.K is not None and self.camera_model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL") and \
                abs(self.K[0][0] - self.K[1][1]) > 1e-3 * max(self.K[0][0], self.K[1][1]):
            raise ValueError(f"camera_model {self.camera_model} has one focal length, but K's fx and fy differ: "
                             "use PINHOLE or OPENCV")
        return self


class ColmapOptions(_ColmapCommon):
    features: Features = Field(
        "sift", description="sift (COLMAP), or learned keypoints matched by LightGlue: disk or aliked",
        json_schema_extra=_features_available)

    @field_validator("features")
    @classmethod
    def _available(cls, v):
        return _check_features(v)


class AutoOptions(_ColmapCommon):
    """The colmap engine's options, given to every colmap candidate, and the candidates themselves."""

    candidates: list[Literal["sift", "disk", "aliked", "unified"]] = Field(
        list(AUTO_CANDIDATES), min_length=1, max_length=4,
        description="colmap feature variants (sift, disk, aliked) and/or the unified model (unified) to solve "
                    "with, in order of preference (ties go to the first); the one whose cameras explain the colmap "
                    "candidates' verified matches best is kept. With unified, list it first (unified,sift): it "
                    "measured better that way on synthetic clips",
        json_schema_extra=_features_available)

    @field_validator("candidates")
    @classmethod
    def _candidates(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("a candidate is named twice")
        for kind in v:
            if kind == "unified":
                _check_unified()
            else:
                _check_features(kind)
        return v


def _check_unified() -> None:
    # the registry imports this module: look it up only when a candidate asks for it
    from . import get_spec

    reason = get_spec("unified").unavailable_reason()
    if reason:
        raise ValueError(f"the unified candidate is not available here: {reason}")


class UnifiedOptions(EngineOptions):
    window: Optional[int] = Field(None, ge=2, le=1024, description="frames per model window (default: the model's)")
    window_stride: Optional[int] = Field(None, ge=1, le=1024, description="window stride (default: half a window)")
    t: float = Field(5.0, ge=0.0, le=1000.0, description="geometry noise level, of 1000")
    cameras: Literal["points", "rays"] = Field("points", description="cameras by PnP on the point maps, or from rays")
    align: bool = Field(True, description="global alignment of the windows' cameras")
    photometric: bool = Field(True, description="photometric refinement of the cameras")

    @model_validator(mode="after")
    def _windows_overlap(self):
        # Each window is chained to the world through the frames it shares with the previous
        # one (pipelines/v2c.py): a stride of a whole window or more shares none.
        if self.window is not None and self.window_stride is not None and self.window_stride >= self.window:
            raise ValueError(f"window_stride ({self.window_stride}) must be less than window ({self.window}): "
                             "consecutive windows must share frames")
        return self


class GeometryOptions(EngineOptions):
    """A feed-forward geometry model (the geometry role, ``backend.hub.geometry``) as the solver."""

    model: Optional[str] = Field(None, min_length=1, max_length=1000,
                                 description="catalogue id or model folder in the hub's layout "
                                             "(default: the shipped parallax-tiny)")
    resolution: Optional[int] = Field(None, ge=28, le=4096,
                                      description="longer side a hub model processes frames at (Depth Anything 3: "
                                                  "504, its authors'); the unified model uses its own size")
