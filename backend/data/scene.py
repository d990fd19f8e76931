"""Scene descriptions for the synthetic 4D data engine: plain numpy, no torch, no bpy.

``sample_scene(seed, ...)`` turns a seed into a :class:`SceneSpec`: the room or open ground,
the primitives with their materials and per-frame poses, the lights, the camera path and K,
and the motion label. Both renderers read the same spec: the batched torch ray caster
(``backend.data.synth``) and the Blender Cycles exporter (``backend.data.cycles_set``, which
runs in Blender's Python without torch). Captions come from :func:`make_caption`, which is
given the pixel counts each renderer saw, so a caption only names what is in the clip.

Scene world: metres, z up, floor at z = 0. Cameras are camera-to-world 4x4 matrices with
OpenCV camera axes (x right, y down, z forward). The renderers re-express everything in the
frame-0 camera (DESIGN section 2) when they write outputs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

# Seeds at or above this value form the held-out split; training never draws them.
HELDOUT_SEED_START = 1_000_000_000
HELDOUT_SEED_COUNT = 1_000_000

KINDS = ("box", "sphere", "cylinder", "cone", "capsule", "torus")
PATTERNS = ("solid", "checker", "stripes", "noise", "bricks", "gradient", "photo")
OBJECT_MOTIONS = ("linear", "circular", "bouncing", "rotating")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")

# name -> linear-ish sRGB albedo in [0, 1]
PALETTE = {
    "red": (0.78, 0.12, 0.10), "orange": (0.90, 0.45, 0.10), "yellow": (0.92, 0.80, 0.15),
    "green": (0.20, 0.62, 0.20), "teal": (0.10, 0.55, 0.55), "blue": (0.15, 0.30, 0.80),
    "purple": (0.50, 0.22, 0.65), "pink": (0.92, 0.50, 0.65), "white": (0.88, 0.88, 0.86),
    "grey": (0.50, 0.50, 0.50), "black": (0.10, 0.10, 0.11), "brown": (0.45, 0.28, 0.14),
}
COLOUR_NAMES = tuple(PALETTE)


@dataclass
class Material:
    pattern: str  # one of PATTERNS
    color_a: np.ndarray  # (3,) albedo
    color_b: np.ndarray  # (3,) second colour (pattern) or mortar (bricks)
    scale: float  # pattern period in metres (photo: metres per texture tile)
    axis: np.ndarray  # (3,) unit vector: stripe / gradient direction
    name_a: str  # colour words for captions
    name_b: str
    photo: Optional[str] = None  # texture file (pattern "photo")
    photo_index: int = -1  # index into the texture list the scene was sampled with
    rotation: float = 0.0  # photo UV rotation (radians)
    offset: np.ndarray = field(default_factory=lambda: np.zeros(2))  # photo UV offset (tiles): random crop
    gain: np.ndarray = field(default_factory=lambda: np.ones(3))  # photo colour jitter, per channel

    def words(self) -> str:
        """A short adjective phrase: 'red', 'red-and-white checkered', 'photo-textured'..."""
        p = self.pattern
        if p == "solid":
            return self.name_a
        if p == "photo":
            return "photo-textured"
        pair = self.name_a if self.name_a == self.name_b else f"{self.name_a}-and-{self.name_b}"
        return {"checker": f"{pair} checkered", "stripes": f"{pair} striped", "noise": f"mottled {self.name_a}",
                "bricks": f"{self.name_a} brick", "gradient": f"{pair} gradient"}[p]


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


# ----------------------------------------------------------------------------------------
# Helpers


def list_textures(folder: Optional[os.PathLike | str]) -> list[str]:
    """Image files under ``folder`` (recursive, sorted so indices are stable); [] for None."""
    if not folder:
        return []
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"texture folder {root} does not exist")
    return sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS)


# The helpers below are hot in scene sampling (tens of calls per scene): they spell out what
# np.linalg.norm / np.cross / np.clip compute, in the same operation order (so results are
# bit-identical), without those functions' per-call overhead.


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / math.sqrt(v.dot(v))  # np.linalg.norm of a vector is sqrt(x . x)


def _norm_last(x: np.ndarray) -> np.ndarray:
    """np.linalg.norm(x, axis=-1): sqrt of the sum of squares along the last axis."""
    return np.sqrt(np.add.reduce(x * x, axis=-1))


def _cross(a: np.ndarray, b) -> np.ndarray:
    """np.cross for (..., 3) arrays, with numpy's own formula."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    out = np.empty(np.broadcast_shapes(a.shape, b.shape))
    out[..., 0] = a1 * b2 - a2 * b1
    out[..., 1] = a2 * b0 - a0 * b2
    out[..., 2] = a0 * b1 - a1 * b0
    return out


_Z_UP = np.array([0.0, 0.0, 1.0])


def _clip(x, lo: float, hi: float) -> np.ndarray:
    """np.clip(x, lo, hi) for finite values."""
    return np.minimum(np.maximum(x, lo), hi)


def rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def rot_axis(axis, a: float) -> np.ndarray:
    """Rodrigues rotation about a unit axis."""
    x, y, z = _unit(axis)
    c, s, C = math.cos(a), math.sin(a), 1 - math.cos(a)
    return np.array([[c + x * x * C, x * y * C - z * s, x * z * C + y * s],
                     [y * x * C + z * s, c + y * y * C, y * z * C - x * s],
                     [z * x * C - y * s, z * y * C + x * s, c + z * z * C]])


def rot_z_batch(a: np.ndarray) -> np.ndarray:
    """(F, 3, 3) rotations about z by angles a (F,)."""
    c, s = np.cos(a), np.sin(a)
    R = np.zeros(a.shape + (3, 3))
    R[..., 0, 0], R[..., 0, 1], R[..., 1, 0], R[..., 1, 1], R[..., 2, 2] = c, -s, s, c, 1
    return R


def rot_axis_batch(axis, a: np.ndarray) -> np.ndarray:
    """(F, 3, 3) rotations about one unit axis by angles a (F,) (Rodrigues)."""
    x, y, z = _unit(axis)
    Kx = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    s, C = np.sin(a)[:, None, None], (1 - np.cos(a))[:, None, None]
    return np.eye(3) + s * Kx + C * (Kx @ Kx)


def look_at_batch(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(F, 4, 4) c2w with OpenCV axes for cameras at eye (F, 3) looking at target (F, 3); z-up world."""
    f = target - eye
    f = f / _norm_last(f)[:, None]
    r = np.stack([f[:, 1], -f[:, 0], np.zeros(len(f))], -1)  # f x (0, 0, 1)
    rn = _norm_last(r)[:, None]
    r = np.where(rn > 1e-6, r / np.maximum(rn, 1e-12), [1.0, 0, 0])
    d = _cross(f, r)
    m = np.zeros((len(f), 4, 4))
    m[:, :3, 0], m[:, :3, 1], m[:, :3, 2], m[:, :3, 3], m[:, 3, 3] = r, d, f, eye, 1
    return m


def look_at(eye, target, roll: float = 0.0) -> np.ndarray:
    """c2w (4x4) with OpenCV axes for a camera at ``eye`` looking at ``target``; z-up world."""
    f = _unit(np.asarray(target, float) - np.asarray(eye, float))
    r = np.cross(f, [0.0, 0.0, 1.0])
    r = _unit(r) if np.linalg.norm(r) > 1e-6 else np.array([1.0, 0, 0])
    d = np.cross(f, r)
    R = np.stack([r, d, f], axis=1)
    if roll:
        R = R @ rot_z(roll)  # rotation about the camera's own z (forward) axis
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = R, eye
    return m


def intrinsics_for(width: int, height: int, fov_deg: float) -> np.ndarray:
    """Square-pixel K whose field of view across the longer image side is ``fov_deg``."""
    f = 0.5 * max(width, height) / math.tan(math.radians(fov_deg) / 2)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])


def sample_train_seeds(n: int, generator=None) -> np.ndarray:
    """``n`` training seeds in [0, HELDOUT_SEED_START): never a held-out seed.

    ``generator``: a numpy Generator, an int seed, or None (fresh entropy). A torch.Generator
    works through ``backend.data.synth.sample_train_seeds``.
    """
    rng = generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)
    return rng.integers(0, HELDOUT_SEED_START, size=n, dtype=np.int64)


def heldout_seeds(n: int, start: int = 0) -> list[int]:
    """The fixed held-out seeds ``HELDOUT_SEED_START + start + i``."""
    if start + n > HELDOUT_SEED_COUNT:
        raise ValueError(f"the held-out range holds {HELDOUT_SEED_COUNT} seeds")
    return [HELDOUT_SEED_START + start + i for i in range(n)]


def is_heldout(seed: int) -> bool:
    return HELDOUT_SEED_START <= seed < HELDOUT_SEED_START + HELDOUT_SEED_COUNT


# ----------------------------------------------------------------------------------------
# Materials


def _colour(rng: np.random.Generator, exclude: tuple = ()) -> tuple[str, np.ndarray]:
    names = [n for n in COLOUR_NAMES if n not in exclude] if exclude else COLOUR_NAMES
    name = names[rng.integers(len(names))]
    c = _clip(np.asarray(PALETTE[name]) * rng.uniform(0.85, 1.1) + rng.normal(0, 0.025, 3), 0.02, 0.98)
    return name, c


def sample_material(rng: np.random.Generator, textures: list[str], surface: str = "object",
                    patterns: Optional[tuple] = None) -> Material:
    """A random procedural or photo material. ``surface``: object, floor, wall or ceiling."""
    if patterns is None:
        if surface == "object":
            patterns, weights = PATTERNS, [0.22, 0.18, 0.16, 0.12, 0.06, 0.1, 0.16]
        elif surface == "floor":
            patterns, weights = PATTERNS, [0.08, 0.3, 0.08, 0.14, 0.14, 0.02, 0.24]
        else:
            patterns, weights = PATTERNS, [0.2, 0.08, 0.18, 0.14, 0.16, 0.06, 0.18]
        if not textures:
            weights = weights[:-1]
            patterns = patterns[:-1]
        weights = np.asarray(weights) / np.sum(weights)
        pattern = patterns[rng.choice(len(patterns), p=weights)]
    else:
        pattern = patterns[rng.integers(len(patterns))]
    name_a, a = _colour(rng)
    if pattern == "bricks":
        name_b, b = "grey", _clip(rng.uniform(0.55, 0.85) * np.ones(3), 0, 1)
    elif pattern == "noise":
        name_b, b = name_a, _clip(a * rng.uniform(0.35, 0.6), 0, 1)
    else:
        name_b, b = _colour(rng, exclude=(name_a,))
    big = surface != "object"
    scale = float(np.exp(rng.uniform(math.log(0.25), math.log(1.2)))) if big else \
        float(np.exp(rng.uniform(math.log(0.08), math.log(0.4))))
    m = Material(pattern=pattern, color_a=a, color_b=b, scale=scale, axis=_unit(rng.normal(size=3)),
                 name_a=name_a, name_b=name_b)
    if pattern == "stripes" and rng.random() < 0.6:
        m.axis = np.eye(3)[rng.integers(3)]  # axis-aligned stripes are common in the real world
    if pattern == "photo":
        m.photo_index = int(rng.integers(len(textures)))
        m.photo = textures[m.photo_index]
        m.scale = float(rng.uniform(1.0, 4.0)) if big else float(rng.uniform(0.3, 1.5))
        m.rotation = float(rng.uniform(0, 2 * math.pi))
        m.offset = rng.uniform(0, 1, 2)
        m.gain = _clip(rng.uniform(0.75, 1.15) * (1 + rng.normal(0, 0.08, 3)), 0.4, 1.4)
    return m


# ----------------------------------------------------------------------------------------
# Primitives and their motion


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
        axis = np.array([0, 0, 1.0]) if rng.random() < 0.7 else _unit(rng.normal(size=3))
        w = rng.choice([-1, 1]) * rng.uniform(0.04, 0.15)
        rot = rot_axis_batch(axis, w * t) @ base_rot
        if abs(axis[2]) < 0.99:  # tumbling: lift so the bounding sphere clears the floor
            pos[:, 2] = np.maximum(pos[:, 2], radius + 0.02)
    return rot, pos


def _place_objects(rng, n_obj: int, n_moving: int, frames: int, stride: int, area: float,
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
                gap = _norm_last(all_pos - pos) - 0.9 * (all_rad + radius)
                if gap.min() < 0.02:
                    continue
            prims.append(Primitive(kind, size, sample_material(rng, textures), rot, pos, motion, radius))
            all_pos = np.stack([p.pos for p in prims])
            all_rad = np.array([p.radius for p in prims])[:, None]
            break
    return prims


# ----------------------------------------------------------------------------------------
# Camera paths

CAMERA_MOTIONS = ("orbit", "dolly", "truck", "pedestal", "crane", "pan", "tilt", "roll", "handheld", "static")
# Pairs that read well together ("dolly in while panning left").
COMBOS = (("dolly", "pan"), ("truck", "pan"), ("orbit", "pedestal"), ("dolly", "tilt"), ("truck", "tilt"),
          ("pedestal", "tilt"), ("orbit", "dolly"), ("dolly", "roll"), ("pan", "tilt"))


def _camera_path(rng, frames: int, stride: int, eye0: np.ndarray, target: np.ndarray,
                 parts: list[str]) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Per-frame c2w for a list of motion primitives, and (kind, direction) per part."""
    u = np.arange(frames, dtype=np.float64) * stride / max(1, (frames - 1) * stride)  # 0..1 over the clip
    span = stride * (frames - 1) / 15.0  # wider strides cover more motion: baselines from tiny to wide
    eye = np.repeat(eye0[None], frames, axis=0).astype(np.float64)
    tgt = np.repeat(np.asarray(target, float)[None], frames, axis=0)
    yaw = np.zeros(frames)
    pitch = np.zeros(frames)
    roll = np.zeros(frames)
    labels = []
    fwd0 = _unit(target - eye0)
    right0 = _unit(_cross(fwd0, _Z_UP))

    def amount(lo, hi):  # log-uniform total amount over the clip, scaled by the stride
        return float(np.exp(rng.uniform(math.log(lo), math.log(hi)))) * span

    for part in parts:
        sign = 1.0 if rng.random() < 0.5 else -1.0
        if part == "orbit":
            a = math.radians(amount(4, 45)) * sign
            eye += rot_z_batch(a * u) @ (eye0 - target) + target - eye0
            labels.append(("orbit", "left" if sign > 0 else "right"))
        elif part == "dolly":
            d = amount(0.05, 0.5) * np.linalg.norm(target - eye0) * sign
            eye += u[:, None] * d * fwd0
            tgt += u[:, None] * d * fwd0
            labels.append(("dolly", "in" if sign > 0 else "out"))
        elif part == "truck":
            d = amount(0.05, 1.2) * sign
            eye += u[:, None] * d * right0
            tgt += u[:, None] * d * right0
            labels.append(("truck", "right" if sign > 0 else "left"))
        elif part in ("pedestal", "crane"):
            d = amount(0.05, 0.6) * sign
            eye[:, 2] += u * d
            if part == "pedestal":
                tgt[:, 2] += u * d  # keeps the view direction; a crane keeps looking at the target
            labels.append((part, "up" if sign > 0 else "down"))
        elif part == "pan":
            yaw += u * math.radians(amount(3, 30)) * sign
            labels.append(("pan", "left" if sign > 0 else "right"))
        elif part == "tilt":
            pitch += u * math.radians(amount(3, 18)) * sign
            labels.append(("tilt", "up" if sign > 0 else "down"))
        elif part == "roll":
            roll += u * math.radians(rng.uniform(3, 12)) * sign
            labels.append(("roll", "clockwise" if sign > 0 else "counterclockwise"))
        elif part == "handheld":
            t = np.arange(frames) * stride
            amp_p, amp_r = rng.uniform(0.005, 0.03), math.radians(rng.uniform(0.2, 1.2))
            for k in range(3):  # a few incommensurate sines: smooth, shaky
                w = rng.uniform(0.15, 0.9, 3)
                ph = rng.uniform(0, 2 * math.pi, 3)
                eye[:, k] += amp_p * np.sin(w[0] * t + ph[0]) * rng.uniform(0.5, 1)
                [yaw, pitch, roll][k][:] += amp_r * np.sin(w[1] * t + ph[1]) * rng.uniform(0.5, 1)
            labels.append(("handheld", ""))
        elif part == "static":
            labels.append(("static", ""))
    c2w = look_at_batch(eye, tgt)
    # pan turns about world up (left = counterclockwise seen from above); tilt about the
    # camera's x axis (positive pitch turns the forward axis toward -y, i.e. up); roll about z.
    c2w[:, :3, :3] = rot_z_batch(yaw) @ c2w[:, :3, :3] @ rot_axis_batch([1, 0, 0], pitch) @ rot_z_batch(roll)
    return c2w, labels


def _label(labels: list[tuple[str, str]]) -> str:
    return " + ".join(f"{k} {d}".strip() for k, d in labels)


def _camera_ok(c2w: np.ndarray, prims: list[Primitive], setting: str, room: np.ndarray) -> bool:
    eye = c2w[:, :3, 3]
    if setting == "room":
        if (np.abs(eye[:, 0]) > room[0] / 2 - 0.3).any() or (np.abs(eye[:, 1]) > room[1] / 2 - 0.3).any():
            return False
        if (eye[:, 2] > room[2] - 0.3).any():
            return False
    if (eye[:, 2] < 0.15).any():
        return False
    for p in prims:
        if (_norm_last(p.pos - eye) < p.radius + 0.3).any():
            return False
    # The camera must look roughly horizontally-to-down at the scene, never straight up.
    fwd = c2w[:, :3, 2]
    return bool((fwd[:, 2] < 0.5).all())


# ----------------------------------------------------------------------------------------
# The scene


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
    ceil.color_a = _clip(0.6 + 0.35 * ceil.color_a, 0, 1)

    # Sky: a gradient from a pale horizon to a deeper zenith.
    sky_top = _clip(np.array([0.25, 0.45, 0.85]) + rng.normal(0, 0.06, 3), 0, 1)
    sky_horizon = _clip(np.array([0.75, 0.82, 0.9]) + rng.normal(0, 0.04, 3), 0, 1)

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
    prims = _place_objects(rng, n_obj, n_moving, frames, stride, area, textures)

    # Lights: 1-2 (point lights under a room's ceiling; suns outdoors) plus ambient.
    lights = []
    n_lights = int(rng.integers(1, 3))
    for li in range(n_lights):
        strength = rng.uniform(0.6, 1.0) * (1.0 if li == 0 else 0.5)
        tint = _clip(1 + rng.normal(0, 0.06, 3), 0.8, 1.2)
        if setting == "room":
            p = np.array([rng.uniform(-0.35, 0.35) * room[0], rng.uniform(-0.35, 0.35) * room[1],
                          room[2] - rng.uniform(0.6, 1.0)])
            lights.append(Light("point", p, strength * tint * (p[2] ** 2 + 4.0)))
        else:
            elev, az = math.radians(rng.uniform(25, 70)), rng.uniform(0, 2 * math.pi)
            d = -np.array([math.cos(elev) * math.cos(az), math.cos(elev) * math.sin(az), math.sin(elev)])
            lights.append(Light("sun", d, strength * tint))
    ambient = rng.uniform(0.18, 0.35) * _clip(1 + rng.normal(0, 0.05, 3), 0.8, 1.2)

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
        c2w_try, labels_try = _camera_path(rng, frames, stride, eye0, target, parts)
        if _camera_ok(c2w_try, prims, setting, room):
            c2w, labels = c2w_try, labels_try
            break
    if c2w is None:  # give up on motion: a static camera that is known to be valid is better than none
        for _ in range(100):
            dist = rng.uniform(area + 0.9, area + 3)
            az = rng.uniform(0, 2 * math.pi)
            eye0 = np.array([dist * math.cos(az), dist * math.sin(az), 1.2])
            c2w, labels = _camera_path(rng, frames, stride, eye0, np.array([0, 0, 0.3]), ["static"])
            if _camera_ok(c2w, prims, setting, room):
                break
        else:
            prims = []

    return SceneSpec(seed=int(seed), frames=frames, width=width, height=height, setting=setting,
                     room_size=room, ceiling=ceiling, floor=floor, walls=walls, ceiling_material=ceil,
                     sky_top=sky_top, sky_horizon=sky_horizon, ambient=ambient, lights=lights, prims=prims,
                     c2w=c2w, K=K, motion=_label(labels), motion_parts=labels, frame_stride=stride,
                     textures=textures)


# ----------------------------------------------------------------------------------------
# Captions

_MOTION_VERBS = {
    ("orbit", "left"): ["orbits left around", "circles to the left around", "arcs left around"],
    ("orbit", "right"): ["orbits right around", "circles to the right around", "arcs right around"],
    ("dolly", "in"): ["dollies toward", "pushes in on", "moves closer to"],
    ("dolly", "out"): ["dollies away from", "pulls back from", "backs away from"],
    ("truck", "left"): ["trucks left past", "slides left past", "moves sideways to the left past"],
    ("truck", "right"): ["trucks right past", "slides right past", "moves sideways to the right past"],
    ("pedestal", "up"): ["rises above", "pedestals up over", "lifts up over"],
    ("pedestal", "down"): ["sinks toward", "pedestals down toward", "lowers toward"],
    ("crane", "up"): ["cranes up over", "booms up above", "cranes upward, still framing"],
    ("crane", "down"): ["cranes down toward", "booms down toward", "cranes downward, still framing"],
    ("pan", "left"): ["pans left across", "swings left across", "pans to the left over"],
    ("pan", "right"): ["pans right across", "swings right across", "pans to the right over"],
    ("tilt", "up"): ["tilts up from", "tilts upward over", "angles up from"],
    ("tilt", "down"): ["tilts down to", "tilts downward onto", "angles down onto"],
    ("roll", "clockwise"): ["rolls clockwise while framing", "tilts its horizon clockwise over"],
    ("roll", "counterclockwise"): ["rolls counterclockwise while framing", "tips its horizon counterclockwise over"],
    ("handheld", ""): ["shakes slightly, handheld, over", "wobbles handheld over", "drifts handheld over"],
    ("static", ""): ["holds still on", "stays fixed on", "looks steadily at"],
}
# Intransitive forms for the second and third parts of a combined motion.
_SHORT_VERBS = {
    ("orbit", "left"): ["orbits left", "circles left"], ("orbit", "right"): ["orbits right", "circles right"],
    ("dolly", "in"): ["dollies in", "pushes in"], ("dolly", "out"): ["dollies out", "pulls back"],
    ("truck", "left"): ["trucks left", "slides left"], ("truck", "right"): ["trucks right", "slides right"],
    ("pedestal", "up"): ["rises", "pedestals up"], ("pedestal", "down"): ["sinks", "pedestals down"],
    ("crane", "up"): ["cranes up"], ("crane", "down"): ["cranes down"],
    ("pan", "left"): ["pans left", "turns left"], ("pan", "right"): ["pans right", "turns right"],
    ("tilt", "up"): ["tilts up", "angles upward"], ("tilt", "down"): ["tilts down", "angles downward"],
    ("roll", "clockwise"): ["rolls clockwise"], ("roll", "counterclockwise"): ["rolls counterclockwise"],
    ("handheld", ""): ["shakes a little, handheld", "wobbles as if handheld"],
    ("static", ""): ["holds still"],
}
_OBJECT_VERBS = {"linear": ["slides across the floor", "moves in a straight line", "glides along"],
                 "circular": ["circles around", "moves in a circle", "travels around a loop"],
                 "bouncing": ["bounces", "hops up and down", "bounces up and down"],
                 "rotating": ["spins", "rotates in place", "turns around"]}


def _article(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def caption_min_pixels(spec: SceneSpec) -> int:
    """Pixels (over the whole clip) an object needs before a caption may name it: 0.1% of them."""
    return max(4, int(round(1e-3 * spec.frames * spec.height * spec.width)))


def make_caption(spec: SceneSpec, visible: Optional[np.ndarray] = None, min_pixels: Optional[int] = None) -> str:
    """A caption naming only objects that are really in the clip.

    ``visible``: per-primitive pixel counts over the clip from a renderer (objects under
    ``min_pixels``, default :func:`caption_min_pixels`, are never named). Without counts, every
    primitive counts as visible. The wording is drawn from the seed, so a clip's caption is stable.
    """
    rng = np.random.default_rng([spec.seed, 0xCA9])
    n = len(spec.prims)
    min_pixels = caption_min_pixels(spec) if min_pixels is None else min_pixels
    counts = np.full(n, 10 ** 6) if visible is None else np.asarray(visible)
    shown = [i for i in np.argsort(-counts, kind="stable") if counts[i] >= min_pixels]
    moving = [i for i in shown if spec.prims[i].moving]
    static = [i for i in shown if not spec.prims[i].moving]
    k = int(rng.integers(1, 4))
    named = static[:k] if static else []
    obj = lambda i: _article(f"{spec.prims[i].material.words()} {spec.prims[i].noun()}")  # noqa: E731

    # Main phrase: camera motion + the objects it frames; further motions as short clauses.
    parts = spec.motion_parts or [("static", "")]
    verb = _MOTION_VERBS[parts[0]][rng.integers(len(_MOTION_VERBS[parts[0]]))]
    if named:
        joiner = [" beside ", " next to ", " and ", " near "][rng.integers(4)]
        things = obj(named[0]) + (joiner + " and ".join(obj(i) for i in named[1:]) if len(named) > 1 else "")
    else:  # nothing to frame: an intransitive verb ("the camera pans left in a room with ...")
        verb = _SHORT_VERBS[parts[0]][rng.integers(len(_SHORT_VERBS[parts[0]]))]
        things = ""
    if spec.setting == "room":
        place = [f"in a room with {spec.walls.words()} walls", f"in a room with {_article(spec.floor.words())} floor",
                 f"inside a room with {spec.walls.words()} walls"][rng.integers(3)]
    else:
        place = [f"on {_article(spec.floor.words())} ground under a blue sky", "outdoors under an open sky",
                 f"on an open {spec.floor.words()} plain"][rng.integers(3)]
    subject = ["the camera", "the camera", "a camera", "the view"][rng.integers(4)]
    text = " ".join(x for x in (subject, verb, things, place) if x)
    extra = [_SHORT_VERBS[p][rng.integers(len(_SHORT_VERBS[p]))] for p in parts[1:]]
    if extra:
        text += [", while it also ", " and ", ", as it "][rng.integers(3)] + " and ".join(extra)
    for i in moving[:2]:
        m = spec.prims[i].motion.split("+")[0]
        verb = _OBJECT_VERBS[m][rng.integers(len(_OBJECT_VERBS[m]))]
        text += f"; {obj(i)} {verb}"
    return text


def _sample_scene_args(args: tuple) -> SceneSpec:
    """``sample_scene(*args)``: a picklable entry point for process pools."""
    return sample_scene(*args)
