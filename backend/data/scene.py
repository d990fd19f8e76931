"""Scene descriptions for the synthetic 4D data engine: plain numpy, no torch, no bpy.

``sample_scene(seed, ...)`` turns a seed into a :class:`SceneSpec`: the room or open ground,
the primitives with their materials and per-frame poses, the lights, the camera path and K,
and the motion label. Both renderers read the same spec: the batched torch ray caster
(``backend.data.synth``) and the Blender Cycles exporter (``tools.cycles_set``, which
runs in Blender's Python without torch). Its parts live beside it: ``materials``,
``primitives``, ``camera_paths``; captions come from ``captions.make_caption``, which is given
the pixel counts each renderer saw, so a caption only names what is in the clip.

Scene world: metres, z up, floor at z = 0. Cameras are camera-to-world 4x4 matrices with
OpenCV camera axes (x right, y down, z forward). The renderers re-express everything in the
frame-0 camera (DESIGN section 2) when they write outputs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .camera_paths import CAMERA_MOTIONS, COMBOS, camera_ok, camera_path, intrinsics_for, motion_label
from .materials import Material, list_textures, sample_material
from .primitives import place_objects
from .vectors import clamp


@dataclass
class Light:
    kind: str  # "point" (position) or "sun" (direction the light travels)
    vector: np.ndarray  # (3,)
    color: np.ndarray  # (3,) intensity: point lights are divided by distance squared


@dataclass
class SceneSpec:
    seed: int
    frames: int
    width: int
    height: int
    setting: str  # "room" or "open"
    room_size: np.ndarray  # (3,) width (x), depth (y), wall height (z); open: ground radius in [0]
    ceiling: bool
    floor: Material
    walls: Material
    ceiling_material: Material
    sky_top: np.ndarray  # (3,) colour at the zenith
    sky_horizon: np.ndarray  # (3,) colour at the horizon
    ambient: np.ndarray  # (3,)
    lights: list  # list[Light], 1 or 2
    prims: list  # list[Primitive]
    c2w: np.ndarray  # (F, 4, 4) scene world, OpenCV camera axes
    K: np.ndarray  # (3, 3)
    motion: str  # camera motion label, e.g. "dolly in + pan left"
    motion_parts: list  # the parts of the label with their verbs for captions
    frame_stride: int = 1
    textures: list = field(default_factory=list)  # texture files the materials index into

    @property
    def moving_mask(self) -> np.ndarray:
        return np.array([p.moving for p in self.prims], dtype=bool)


def sample_scene(seed: int, frames: int = 16, height: int = 128, width: int = 128,
                 textures: Optional[list[str] | str] = None, intrinsics: Optional[dict] = None,
                 dynamic: Optional[bool] = None, n_objects: Optional[int] = None,
                 motion: Optional[str] = None) -> SceneSpec:
    """The scene for ``seed`` (same seed and arguments, same scene).

    textures: a folder or a list of image files (None: procedural patterns only).
    intrinsics: dict(fx, fy, cx, cy) overriding the sampled camera for all frames.
    dynamic: True forces 1-4 moving objects, False none, None random (0-4).
    n_objects: force the number of primitives (3-15 when None).
    motion: force a camera motion, e.g. "orbit" or "dolly+pan" (random when None).
    """
    if isinstance(textures, (str, os.PathLike)):
        textures = list_textures(textures)
    textures = list(textures or [])
    rng = np.random.default_rng([int(seed), 0x5EED])
    setting = "room" if rng.random() < 0.6 else "open"
    stride = int(rng.choice([1, 1, 2, 3, 4]))

    if setting == "room":
        room = np.array([rng.uniform(6, 12), rng.uniform(6, 12), rng.uniform(2.6, 4.0)])
        ceiling = bool(rng.random() < 0.6)
        area = min(rng.uniform(1.0, 2.4), min(room[:2]) / 2 - 2.2)
    else:
        room = np.array([60.0, 60.0, 0.0])
        ceiling = False
        area = rng.uniform(1.0, 2.4)
    floor = sample_material(rng, textures, "floor")
    walls = sample_material(rng, textures, "wall")
    ceil = sample_material(rng, textures, "ceiling", patterns=("solid", "noise"))
    ceil.color_a = clamp(0.6 + 0.35 * ceil.color_a, 0, 1)

    # Sky: a gradient from a pale horizon to a deeper zenith.
    sky_top = clamp(np.array([0.25, 0.45, 0.85]) + rng.normal(0, 0.06, 3), 0, 1)
    sky_horizon = clamp(np.array([0.75, 0.82, 0.9]) + rng.normal(0, 0.04, 3), 0, 1)

    if n_objects is None:
        n_obj = int(rng.integers(3, 16))
    else:
        n_obj = int(n_objects)
    if dynamic is None:
        n_moving = int(rng.choice([0, 0, 1, 1, 2, 3, 4]))
    elif dynamic:
        n_moving = int(rng.integers(1, 5))
    else:
        n_moving = 0
    n_moving = min(n_moving, n_obj)
    area *= max(1.0, math.sqrt(n_obj / 7))  # crowded scenes spread out
    if setting == "room":  # and the room grows to keep space for the camera around them
        room[:2] = np.maximum(room[:2], 2 * (area + 2.2))
    prims = place_objects(rng, n_obj, n_moving, frames, stride, area, textures)

    # Lights: 1-2 (point lights under a room's ceiling; suns outdoors) plus ambient.
    lights = []
    n_lights = int(rng.integers(1, 3))
    for li in range(n_lights):
        strength = rng.uniform(0.6, 1.0) * (1.0 if li == 0 else 0.5)
        tint = clamp(1 + rng.normal(0, 0.06, 3), 0.8, 1.2)
        if setting == "room":
            p = np.array([rng.uniform(-0.35, 0.35) * room[0], rng.uniform(-0.35, 0.35) * room[1],
                          room[2] - rng.uniform(0.6, 1.0)])
            lights.append(Light("point", p, strength * tint * (p[2] ** 2 + 4.0)))
        else:
            elev, az = math.radians(rng.uniform(25, 70)), rng.uniform(0, 2 * math.pi)
            d = -np.array([math.cos(elev) * math.cos(az), math.cos(elev) * math.sin(az), math.sin(elev)])
            lights.append(Light("sun", d, strength * tint))
    ambient = rng.uniform(0.18, 0.35) * clamp(1 + rng.normal(0, 0.05, 3), 0.8, 1.2)

    # Camera: K, then a path that stays inside the room and clear of every object.
    fov = rng.uniform(35, 90)
    K = intrinsics_for(width, height, fov)
    if intrinsics:
        K = np.array([[intrinsics["fx"], 0, intrinsics["cx"]], [0, intrinsics["fy"], intrinsics["cy"]], [0, 0, 1.0]])
    c2w, labels = None, []
    for attempt in range(40):
        if motion is not None:
            parts = motion.split("+")
        else:
            r = rng.random()
            if r < 0.08:
                parts = ["static"]
            elif r < 0.62:
                parts = [CAMERA_MOTIONS[rng.integers(len(CAMERA_MOTIONS) - 2)]]
            else:
                parts = list(COMBOS[rng.integers(len(COMBOS))])
            if rng.random() < 0.15 and "static" not in parts:
                parts.append("handheld")
            if attempt >= 30:  # crowded scene: settle for a gentle motion
                parts = ["pan"]
        max_r = (min(room[:2]) / 2 - 0.5) if setting == "room" else area + 2.5
        min_r = area + 0.9
        dist = rng.uniform(min_r, max(min_r + 0.1, max_r))
        az = rng.uniform(0, 2 * math.pi)
        eye0 = np.array([dist * math.cos(az), dist * math.sin(az), rng.uniform(0.5, 2.0)])
        if setting == "room":
            eye0[2] = min(eye0[2], room[2] - 0.5)
        target = np.array([rng.uniform(-0.4, 0.4) * area, rng.uniform(-0.4, 0.4) * area, rng.uniform(0.1, 0.7)])
        c2w_try, labels_try = camera_path(rng, frames, stride, eye0, target, parts)
        if camera_ok(c2w_try, prims, setting, room):
            c2w, labels = c2w_try, labels_try
            break
    if c2w is None:  # give up on motion: a static camera that is known to be valid is better than none
        for _ in range(100):
            dist = rng.uniform(area + 0.9, area + 3)
            az = rng.uniform(0, 2 * math.pi)
            eye0 = np.array([dist * math.cos(az), dist * math.sin(az), 1.2])
            c2w, labels = camera_path(rng, frames, stride, eye0, np.array([0, 0, 0.3]), ["static"])
            if camera_ok(c2w, prims, setting, room):
                break
        else:
            prims = []

    return SceneSpec(seed=int(seed), frames=frames, width=width, height=height, setting=setting,
                     room_size=room, ceiling=ceiling, floor=floor, walls=walls, ceiling_material=ceil,
                     sky_top=sky_top, sky_horizon=sky_horizon, ambient=ambient, lights=lights, prims=prims,
                     c2w=c2w, K=K, motion=motion_label(labels), motion_parts=labels, frame_stride=stride,
                     textures=textures)


def _sample_scene_args(args: tuple) -> SceneSpec:
    """``sample_scene(*args)``: a picklable entry point for process pools."""
    return sample_scene(*args)
