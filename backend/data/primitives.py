"""Primitives of the synthetic scenes: the six kinds, their sizes, per-frame object motion, and
rejection-sampled placement on the floor (numpy only: Blender imports it too)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .materials import Material, sample_material
from .vectors import norm_last, rot_axis, rot_axis_batch, rot_z, unit

KINDS = ("box", "sphere", "cylinder", "cone", "capsule", "torus")
OBJECT_MOTIONS = ("linear", "circular", "bouncing", "rotating")


@dataclass
class Primitive:
    kind: str  # one of KINDS
    size: np.ndarray  # (3,) kind parameters, see KIND_SIZE_DOC
    material: Material
    rot: np.ndarray  # (F, 3, 3) object-to-world rotation per frame
    pos: np.ndarray  # (F, 3) object centre per frame
    motion: str = "static"  # "static" or a '+'-joined subset of OBJECT_MOTIONS
    radius: float = 0.0  # bounding-sphere radius

    @property
    def moving(self) -> bool:
        return self.motion != "static"

    def noun(self) -> str:
        if self.kind == "box" and np.ptp(self.size) < 1e-6:
            return "cube"
        return self.kind


KIND_SIZE_DOC = """size per kind (object frame, z is the object's axis):
box (hx, hy, hz) half extents; sphere (r, -, -); cylinder (r, h, -) radius and half height;
cone (r, h, -) base radius at z=-h, apex at z=+h; capsule (r, h, -) radius, half length of the
segment on z; torus (R, r, -) major and minor radius, ring in the xy plane."""


def _sample_primitive_shape(rng: np.random.Generator) -> tuple[str, np.ndarray, float, float]:
    """(kind, size, bounding radius, height of the centre above the floor when resting)."""
    kind = KINDS[rng.integers(len(KINDS))]
    s = float(np.exp(rng.uniform(math.log(0.18), math.log(0.55))))  # characteristic size
    if kind == "box":
        size = s * (np.ones(3) if rng.random() < 0.3 else rng.uniform(0.5, 1.2, 3))
        return kind, size, math.sqrt(size.dot(size)), float(size[2])
    if kind == "sphere":
        return kind, np.array([s, 0, 0]), s, s
    if kind in ("cylinder", "cone"):
        r, h = s * rng.uniform(0.5, 1.0), s * rng.uniform(0.6, 1.3)
        return kind, np.array([r, h, 0]), float(math.hypot(r, h)), h
    if kind == "capsule":
        r, h = s * rng.uniform(0.35, 0.6), s * rng.uniform(0.4, 0.9)
        return kind, np.array([r, h, 0]), r + h, r + h
    R, r = s * rng.uniform(0.6, 0.9), s * rng.uniform(0.18, 0.35)
    return kind, np.array([R, r, 0]), R + r, r


def _object_motion(rng, kind_of_motion: str, frames: int, stride: int, centre: np.ndarray, rest_z: float,
                   base_rot: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (rot, pos) for one object's motion. Time runs in source frames: f * stride."""
    t = np.arange(frames, dtype=np.float64) * stride
    pos = np.repeat(centre[None], frames, axis=0).astype(np.float64)
    rot = np.repeat(base_rot[None], frames, axis=0)
    parts = kind_of_motion.split("+")
    if "linear" in parts:
        speed = rng.uniform(0.012, 0.05)  # metres per source frame
        ang = rng.uniform(0, 2 * math.pi)
        pos[:, :2] += (t - t.mean())[:, None] * speed * np.array([math.cos(ang), math.sin(ang)])
    if "circular" in parts:
        rad = rng.uniform(0.25, 0.7)
        w = rng.choice([-1, 1]) * rng.uniform(0.03, 0.12)  # rad per source frame
        ph = rng.uniform(0, 2 * math.pi)
        pos[:, 0] += rad * (np.cos(ph + w * t) - math.cos(ph))
        pos[:, 1] += rad * (np.sin(ph + w * t) - math.sin(ph))
    if "bouncing" in parts:
        height = rng.uniform(0.15, 0.6)
        period = rng.uniform(8, 24)
        ph = rng.uniform(0, period)
        pos[:, 2] = rest_z + height * np.abs(np.sin(math.pi * (t + ph) / period))
    if "rotating" in parts:
        axis = np.array([0, 0, 1.0]) if rng.random() < 0.7 else unit(rng.normal(size=3))
        w = rng.choice([-1, 1]) * rng.uniform(0.04, 0.15)
        rot = rot_axis_batch(axis, w * t) @ base_rot
        if abs(axis[2]) < 0.99:  # tumbling: lift so the bounding sphere clears the floor
            pos[:, 2] = np.maximum(pos[:, 2], radius + 0.02)
    return rot, pos


def place_objects(rng, n_obj: int, n_moving: int, frames: int, stride: int, area: float,
                   textures: list[str]) -> list[Primitive]:
    """Rejection-sample objects on the floor so their bounding discs do not overlap in any frame."""
    prims: list[Primitive] = []
    all_pos, all_rad = np.zeros((0, frames, 3)), np.zeros((0, 1))
    for i in range(n_obj):
        for _attempt in range(30):
            kind, size, radius, rest_z = _sample_primitive_shape(rng)
            yaw = rng.uniform(0, 2 * math.pi)
            base = rot_z(yaw)
            if kind == "torus" and rng.random() < 0.4:  # a standing ring
                base = base @ rot_axis([1, 0, 0], math.pi / 2)
                rest_z = size[0] + size[1]
            if kind in ("cylinder", "capsule") and rng.random() < 0.25:  # lying on its side
                base = base @ rot_axis([1, 0, 0], math.pi / 2)
                rest_z = size[0]
            xy = rng.uniform(-area, area, 2)
            centre = np.array([xy[0], xy[1], rest_z])
            motion = "static"
            if i < n_moving:
                motion = OBJECT_MOTIONS[rng.integers(len(OBJECT_MOTIONS))]
                if motion != "rotating" and rng.random() < 0.35:
                    motion += "+rotating"
            rot, pos = _object_motion(rng, motion, frames, stride, centre, rest_z, base, radius)
            if np.abs(pos[:, :2]).max() > area + 1.0:
                continue
            if prims:  # 3D bounding spheres, every frame (0.9: boxes rarely fill their sphere)
                gap = norm_last(all_pos - pos) - 0.9 * (all_rad + radius)
                if gap.min() < 0.02:
                    continue
            prims.append(Primitive(kind, size, sample_material(rng, textures), rot, pos, motion, radius))
            all_pos = np.stack([p.pos for p in prims])
            all_rad = np.array([p.radius for p in prims])[:, None]
            break
    return prims
