"""numpy vector and rotation helpers for scene sampling (no torch: Blender imports them too).

These are hot in scene sampling (tens of calls per scene): they spell out what
np.linalg.norm / np.cross / np.clip compute, in the same operation order (so results are
bit-identical), without those functions' per-call overhead.
"""

from __future__ import annotations

import math

import numpy as np

def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / math.sqrt(v.dot(v))  # np.linalg.norm of a vector is sqrt(x . x)


def norm_last(x: np.ndarray) -> np.ndarray:
    """np.linalg.norm(x, axis=-1): sqrt of the sum of squares along the last axis."""
    return np.sqrt(np.add.reduce(x * x, axis=-1))


def cross(a: np.ndarray, b) -> np.ndarray:
    """np.cross for (..., 3) arrays, with numpy's own formula."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    out = np.empty(np.broadcast_shapes(a.shape, b.shape))
    out[..., 0] = a1 * b2 - a2 * b1
    out[..., 1] = a2 * b0 - a0 * b2
    out[..., 2] = a0 * b1 - a1 * b0
    return out


def clamp(x, lo: float, hi: float) -> np.ndarray:
    """np.clip(x, lo, hi) for finite values."""
    return np.minimum(np.maximum(x, lo), hi)


def rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def rot_axis(axis, a: float) -> np.ndarray:
    """Rodrigues rotation about a unit axis."""
    x, y, z = unit(axis)
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
    x, y, z = unit(axis)
    Kx = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    s, C = np.sin(a)[:, None, None], (1 - np.cos(a))[:, None, None]
    return np.eye(3) + s * Kx + C * (Kx @ Kx)
