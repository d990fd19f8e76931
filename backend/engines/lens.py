"""Lens distortion in a solve: how far it moves the image, whether to keep it, and the frames
undistorted to the pinhole camera (numpy, plus OpenCV for the remap).

Distortion is OpenCV's model (``cv2.undistort(frame, K, dist)``): a point of the pinhole image
at normalised ``(x, y)``, ``r^2 = x^2 + y^2``, is shot at

    x' = x (1 + k1 r^2 + k2 r^4 + k3 r^6) + 2 p1 x y + p2 (r^2 + 2 x^2)
    y' = y (1 + k1 r^2 + k2 r^4 + k3 r^6) + p1 (r^2 + 2 y^2) + 2 p2 x y

in pixels through K, whose principal point has pixel centres at integers (the bundle's
convention and OpenCV's; the coefficients act on normalised coordinates, so COLMAP's half-pixel
shift is only in K).

Whether the footage needs it (``lens="auto"``) is decided from two solves of the same verified
matches, one pinhole and one with radial distortion (:func:`decide`), by evidence measured
on synthetic and real footage (see the thresholds below and ``backend/engines/colmap.py``).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

# The distortion is kept only when it moves some pixel of the frame by more than this: below
# it, the pinhole camera and the frames as shot agree to the accuracy of a good solve.
MIN_SHIFT_PX = 0.5
# ... and when it lowers the solve's mean reprojection error by at least this fraction. On
# 16-frame synthetic clips (60 deg) shot with k1 -0.15, k2 0.05 the radial model lowered it by
# 13-14 %; on their pinhole renders by 0.3-0.5 %, and on hololens-000 windows (undistorted
# footage) by 0.5-3 % while its radial terms moved the corners by 2-40 px (a focal /
# distortion trade-off a short clip cannot resolve, not a lens). A mild lens (k1 -0.05, 3.5 px
# at the corners) lowered it by 2.6-14 %: it is kept only when it shows.
MIN_ERROR_GAIN = 0.05
# ... and when the focal length it comes with is within this fraction of the pinhole solve's:
# on hololens-000 windows a radial model drifted to k1 1.8 with a focal 2.7 x the true one
# (and the same reprojection error); on synthetic clips real distortion moved the focal by
# 4-15 %, and a spurious fit on a pinhole clip (seed 3: k1 -0.19, error 8 % lower) by 22 %.
MAX_FOCAL_CHANGE = 0.2
_BORDER_SAMPLES = 33  # per side of the frame, for the largest shift


def distort_normalised(xy: np.ndarray, dist: Sequence[float]) -> np.ndarray:
    """OpenCV's forward distortion of (N, 2) normalised pinhole coordinates."""
    d = np.zeros(5)
    d[:len(dist)] = np.asarray(dist, dtype=np.float64)
    k1, k2, p1, p2, k3 = d
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 ** 3
    return np.stack([x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                     y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y], axis=1)


def _frame_grid(width: int, height: int, n: int = _BORDER_SAMPLES) -> np.ndarray:
    """Pixels on an n x n grid over the whole frame, its border and corners included."""
    u, v = np.meshgrid(np.linspace(0, width - 1, n), np.linspace(0, height - 1, n))
    return np.stack([u.ravel(), v.ravel()], axis=1)


def max_shift_px(K: np.ndarray, dist: Sequence[float], width: int, height: int) -> float:
    """The most the distortion moves a pixel of the frame (pinhole position -> as shot), in
    pixels: at the corners for an ordinary lens, anywhere on the frame for any other."""
    K = np.asarray(K, dtype=np.float64)
    uv = _frame_grid(width, height)
    xy = (uv - K[:2, 2]) / np.diag(K)[:2]
    shot = distort_normalised(xy, dist) * np.diag(K)[:2] + K[:2, 2]
    return float(np.linalg.norm(shot - uv, axis=1).max())


def is_monotonic(K: np.ndarray, dist: Sequence[float], width: int, height: int) -> bool:
    """Whether the radial part keeps growing out to the frame's farthest corner: a lens does;
    an estimate that folds the image back on itself is a failed fit, not a lens."""
    K = np.asarray(K, dtype=np.float64)
    d = np.zeros(5)
    d[:len(dist)] = np.asarray(dist, dtype=np.float64)
    corners = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]], np.float64)
    r_max = float(np.linalg.norm((corners - K[:2, 2]) / np.diag(K)[:2], axis=1).max()) * 1.05
    r2 = np.linspace(0.0, r_max, 256) ** 2
    # d/dr of r (1 + k1 r^2 + k2 r^4 + k3 r^6)
    slope = 1 + 3 * d[0] * r2 + 5 * d[1] * r2 ** 2 + 7 * d[4] * r2 ** 3
    return bool((slope > 0).all())


def decide(width: int, height: int, pinhole: dict, distorted: dict, focal_known: bool) -> dict:
    """Keep the distorted solve or the pinhole one (``lens="auto"``).

    ``pinhole`` and ``distorted``: {"K": 3x3, "dist": coefficients (distorted only),
    "registered": frames, "error_px": mean reprojection error}. Returns {"keep": "distorted" or
    "pinhole", "reason", "max_shift_px", "error_gain", "focal_change"}: the distortion is kept
    only when it is a plausible lens (monotonic, focal near the pinhole one unless the focal is
    known), moves the image by more than MIN_SHIFT_PX, registers as many frames, and lowers
    the reprojection error by MIN_ERROR_GAIN."""
    K_d, dist = np.asarray(distorted["K"], np.float64), distorted["dist"]
    shift = max_shift_px(K_d, dist, width, height)
    e_p, e_d = pinhole["error_px"], distorted["error_px"]
    gain = (e_p - e_d) / e_p if e_p and e_p > 0 else 0.0
    f_p = float(np.mean(np.diag(np.asarray(pinhole["K"], np.float64))[:2]))
    focal_change = float(np.mean(np.diag(K_d)[:2])) / f_p - 1.0
    record = {"max_shift_px": round(shift, 3), "error_gain": round(float(gain), 4),
              "focal_change": round(focal_change, 4)}
    checks = [
        (is_monotonic(K_d, dist, width, height), "the estimate folds the image (not a lens)"),
        (focal_known or abs(focal_change) <= MAX_FOCAL_CHANGE,
         f"its focal length is {focal_change:+.0%} off the pinhole solve's (a focal / distortion trade-off)"),
        (distorted["registered"] >= pinhole["registered"],
         f"it registered fewer frames ({distorted['registered']} < {pinhole['registered']})"),
        (shift > MIN_SHIFT_PX, f"it moves the image by at most {shift:.2f} px (<= {MIN_SHIFT_PX} px)"),
        (gain >= MIN_ERROR_GAIN, f"it lowers the reprojection error by {gain:.1%} (< {MIN_ERROR_GAIN:.0%})"),
    ]
    failed = [why for ok, why in checks if not ok]
    if failed:
        return {"keep": "pinhole", "reason": "pinhole: " + "; ".join(failed), **record}
    return {"keep": "distorted", "reason": (f"distorted: moves the image by up to {shift:.1f} px and lowers the "
                                            f"reprojection error by {gain:.0%}"), **record}


def undistort_frames(frames: Sequence[np.ndarray], K: np.ndarray, dist: Sequence[float],
                     new_K: Optional[np.ndarray] = None) -> list:
    """The frames undistorted to the pinhole camera ``new_K`` (default K), same size, bilinear:
    what ``cv2.undistort(frame, K, dist)`` gives, with the remap tables computed once."""
    import cv2

    if not frames:
        return []
    h, w = frames[0].shape[:2]
    K = np.asarray(K, dtype=np.float64)
    map_x, map_y = cv2.initUndistortRectifyMap(K, np.asarray(dist, np.float64), None,
                                               K if new_K is None else np.asarray(new_K, np.float64), (w, h),
                                               cv2.CV_32FC1)
    return [cv2.remap(np.ascontiguousarray(f), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            for f in frames]
