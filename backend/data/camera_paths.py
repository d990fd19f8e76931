"""Camera paths of the synthetic scenes: look-at cameras, K from a field of view, the motion
vocabulary (orbit, dolly, truck, pedestal, crane, pan, tilt, roll, handheld, static, and pairs),
per-frame paths for it, and the check that a path stays inside the room and clear of every
object (numpy only: Blender imports it too).

Cameras are camera-to-world 4x4 matrices with OpenCV axes (x right, y down, z forward) in the
scene world (metres, z up).
"""

from __future__ import annotations

import math

import numpy as np

from .primitives import Primitive
from .vectors import cross, norm_last, rot_axis_batch, rot_z, rot_z_batch, unit

CAMERA_MOTIONS = ("orbit", "dolly", "truck", "pedestal", "crane", "pan", "tilt", "roll", "handheld", "static")
# Pairs that read well together ("dolly in while panning left").
COMBOS = (("dolly", "pan"), ("truck", "pan"), ("orbit", "pedestal"), ("dolly", "tilt"), ("truck", "tilt"),
          ("pedestal", "tilt"), ("orbit", "dolly"), ("dolly", "roll"), ("pan", "tilt"))

_Z_UP = np.array([0.0, 0.0, 1.0])


def look_at_batch(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(F, 4, 4) c2w with OpenCV axes for cameras at eye (F, 3) looking at target (F, 3); z-up world."""
    f = target - eye
    f = f / norm_last(f)[:, None]
    r = np.stack([f[:, 1], -f[:, 0], np.zeros(len(f))], -1)  # f x (0, 0, 1)
    rn = norm_last(r)[:, None]
    r = np.where(rn > 1e-6, r / np.maximum(rn, 1e-12), [1.0, 0, 0])
    d = cross(f, r)
    m = np.zeros((len(f), 4, 4))
    m[:, :3, 0], m[:, :3, 1], m[:, :3, 2], m[:, :3, 3], m[:, 3, 3] = r, d, f, eye, 1
    return m


def look_at(eye, target, roll: float = 0.0) -> np.ndarray:
    """c2w (4x4) with OpenCV axes for a camera at ``eye`` looking at ``target``; z-up world."""
    f = unit(np.asarray(target, float) - np.asarray(eye, float))
    r = np.cross(f, [0.0, 0.0, 1.0])
    r = unit(r) if np.linalg.norm(r) > 1e-6 else np.array([1.0, 0, 0])
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


def camera_path(rng, frames: int, stride: int, eye0: np.ndarray, target: np.ndarray,
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
    fwd0 = unit(target - eye0)
    right0 = unit(cross(fwd0, _Z_UP))

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


def motion_label(labels: list[tuple[str, str]]) -> str:
    return " + ".join(f"{k} {d}".strip() for k, d in labels)


def camera_ok(c2w: np.ndarray, prims: list[Primitive], setting: str, room: np.ndarray) -> bool:
    eye = c2w[:, :3, 3]
    if setting == "room":
        if (np.abs(eye[:, 0]) > room[0] / 2 - 0.3).any() or (np.abs(eye[:, 1]) > room[1] / 2 - 0.3).any():
            return False
        if (eye[:, 2] > room[2] - 0.3).any():
            return False
    if (eye[:, 2] < 0.15).any():
        return False
    for p in prims:
        if (norm_last(p.pos - eye) < p.radius + 0.3).any():
            return False
    # The camera must look roughly horizontally-to-down at the scene, never straight up.
    fwd = c2w[:, :3, 2]
    return bool((fwd[:, 2] < 0.5).all())
