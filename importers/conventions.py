"""Conversions from the bundle's OpenCV world to Blender's (numpy only, no bpy).

The bundle's world is the first camera's OpenCV frame (x right, y down, z forward). Blender's
world is Z-up. ``CV_TO_BLENDER`` maps x -> X, z -> Y, -y -> Z, so the first camera stands
upright looking along +Y. A Blender camera looks down its local -Z with +Y up, hence
``c2w_blender = T @ c2w_cv @ diag(1, -1, -1, 1)``.

Intrinsics follow Blender's view-plane computation (``BKE_camera_params_compute_viewplane``):
with a horizontal sensor fit, ``fx = lens * W / sensor_width``, ``fy / fx = aspect_x / aspect_y``,
and the principal point moves with ``shift_x`` / ``shift_y`` in units of the frame width.
OpenCV pixel centres sit at integers, so the image spans [-0.5, W - 0.5].
"""

from __future__ import annotations

import numpy as np

from ..backend.bundle import rotation_to_quaternion

CV_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
CAMERA_CV_TO_BLENDER = np.diag([1.0, -1.0, -1.0])
SENSOR_WIDTH_MM = 36.0


def world_transform(scale: float = 1.0, floor: np.ndarray | None = None) -> np.ndarray:
    """4x4 similarity taking bundle (OpenCV) world points to Blender world points.

    ``floor`` is an optional 4x4 rigid transform applied after the axis change (see
    :func:`floor_alignment`); ``scale`` multiplies lengths.
    """
    T = np.eye(4)
    T[:3, :3] = CV_TO_BLENDER
    if floor is not None:
        T = floor @ T
    S = np.diag([scale, scale, scale, 1.0])
    return S @ T


def camera_pose_blender(c2w_cv: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(location (3,), rotation matrix (3,3)) of a Blender camera object for an OpenCV c2w."""
    scale = np.cbrt(np.linalg.det(T[:3, :3]))
    R = (T[:3, :3] / scale) @ c2w_cv[:3, :3] @ CAMERA_CV_TO_BLENDER
    loc = T[:3, :3] @ c2w_cv[:3, 3] + T[:3, 3]
    return loc, R


def transform_points(T: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """float32 (N, 3) points mapped by a 4x4 similarity (float32 keeps millions of points fast)."""
    T = T.astype(np.float32)
    return np.asarray(xyz, np.float32) @ T[:3, :3].T + T[:3, 3]


def blender_intrinsics(fx: float, fy: float, cx: float, cy: float, width: int, height: int,
                       sensor_width: float = SENSOR_WIDTH_MM) -> dict:
    """Blender camera and render settings that reproduce an OpenCV pinhole projection.

    Blender clamps pixel aspect to >= 1, so the larger of the two carries the ratio.
    """
    ycor = fx / fy  # Blender's aspect_y / aspect_x
    aspect_x, aspect_y = (1.0 / ycor, 1.0) if ycor < 1.0 else (1.0, ycor)
    return {
        "sensor_fit": "HORIZONTAL",
        "sensor_width": sensor_width,
        "lens": fx * sensor_width / width,
        "shift_x": (width / 2.0 - 0.5 - cx) / width,
        "shift_y": (cy - height / 2.0 + 0.5) * ycor / width,
        "pixel_aspect_x": aspect_x,
        "pixel_aspect_y": aspect_y,
    }


def quaternions_continuous(rotations: np.ndarray) -> np.ndarray:
    """(N, 4) w-x-y-z unit quaternions for (N, 3, 3) rotations, signs flipped for continuity."""
    q = np.array([rotation_to_quaternion(R) for R in rotations])
    for i in range(1, len(q)):
        if np.dot(q[i], q[i - 1]) < 0:
            q[i] = -q[i]
    return q


def floor_alignment(points: np.ndarray, iterations: int = 200, seed: int = 0) -> np.ndarray | None:
    """Rigid 4x4 that puts the dominant roughly-horizontal plane of Z-up ``points`` at Z = 0.

    RANSAC over planes whose normal is within 45 degrees of +Z (the axis change already makes
    the first camera upright, so the floor is near horizontal); the inlier band is 0.2% of the
    cloud's extent. Returns None when no such plane holds 10% of the points.
    """
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < 3:
        return None
    rng = np.random.default_rng(seed)
    if len(pts) > 20000:
        pts = pts[rng.choice(len(pts), 20000, replace=False)]
    extent = np.linalg.norm(np.percentile(pts, 95, axis=0) - np.percentile(pts, 5, axis=0))
    band = max(0.002 * extent, 1e-6)
    # All hypotheses at once: planes through random triples, scored in one matrix product.
    a, b, c = (pts[rng.integers(0, len(pts), iterations)] for _ in range(3))
    normals = np.cross(b - a, c - a)
    norms = np.linalg.norm(normals, axis=1)
    ok = norms > 1e-12
    normals = normals[ok] / norms[ok, None]
    normals *= np.sign(normals[:, 2:3] + 1e-300)  # orient up
    a = a[ok]
    horizontal = normals[:, 2] >= np.cos(np.radians(45))
    normals, a = normals[horizontal], a[horizontal]
    if not len(normals):
        return None
    offsets = np.einsum("ij,ij->i", normals, a)
    counts = (np.abs(pts @ normals.T - offsets) < band).sum(axis=0)
    i = int(np.argmax(counts))
    if counts[i] < 0.1 * len(pts):
        return None
    n, a = normals[i], a[i]
    # Refine: refit on the inliers, then shrink the band to 3 robust sigmas of their residuals,
    # so objects standing on the floor stop pulling the plane off.
    inliers = np.abs((pts - a) @ n) < band
    for _ in range(4):
        centre = pts[inliers].mean(axis=0)
        _, vecs = np.linalg.eigh(np.cov((pts[inliers] - centre).T))  # least-variance axis = normal
        n = vecs[:, 0] if vecs[2, 0] > 0 else -vecs[:, 0]
        d = np.abs((pts - centre) @ n)
        sigma = 1.4826 * np.median(d[inliers])
        inliers = d < max(3.0 * sigma, 1e-9 * extent)
        if inliers.sum() < 3:
            break
    R = _rotation_between(n, np.array([0.0, 0.0, 1.0]))
    T = np.eye(4)
    T[:3, :3] = R
    T[2, 3] = -(R @ centre)[2]
    return T


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit vector a to unit vector b (Rodrigues)."""
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)
