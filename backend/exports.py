"""Exports of a result bundle to other tools' formats (numpy and stdlib only).

- COLMAP text model (cameras.txt, images.txt, points3D.txt): PINHOLE cameras, world-to-camera
  poses as qw qx qy qz tx ty tz. COLMAP puts the centre of the top-left pixel at (0.5, 0.5),
  one half pixel from ours, so principal points shift by +0.5.
- nerfstudio ``transforms.json``: OpenGL camera axes (x right, y up, z back) camera-to-world,
  per-frame intrinsics, pixel centres at +0.5 like COLMAP (nerfstudio casts rays through
  pixel index + 0.5).
- TUM trajectory: ``timestamp tx ty tz qx qy qz qw`` of camera-to-world, one frame a line.
- PLY: binary little-endian vertices with float xyz, uchar rgb and float confidence.

Unsolved frames (c2w None) are left out of every export.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .bundle import Bundle, rotation_to_quaternion

OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


def _solved(bundle: Bundle):
    return [c for c in bundle.cameras or [] if c.c2w is not None]


def _frame_name(bundle: Bundle, index: int) -> str:
    return f"frames/{index:06d}.png"


def export_colmap(bundle: Bundle, out_dir: str | Path, max_points: int = 200_000, seed: int = 0) -> Path:
    """Write a COLMAP text model. Points carry no tracks (COLMAP allows empty tracks)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cams = _solved(bundle)
    cam_lines, img_lines = [], []
    for cam_id, c in enumerate(cams, start=1):
        cam_lines.append(f"{cam_id} PINHOLE {bundle.width} {bundle.height} "
                         f"{c.fx:.10g} {c.fy:.10g} {c.cx + 0.5:.10g} {c.cy + 0.5:.10g}")
        w2c = np.linalg.inv(np.asarray(c.c2w, np.float64))
        q = rotation_to_quaternion(w2c[:3, :3])
        t = w2c[:3, 3]
        img_lines.append(f"{cam_id} {q[0]:.12g} {q[1]:.12g} {q[2]:.12g} {q[3]:.12g} "
                         f"{t[0]:.12g} {t[1]:.12g} {t[2]:.12g} {cam_id} {_frame_name(bundle, c.index)}")
        img_lines.append("")  # no 2D observations
    (out / "cameras.txt").write_text(
        "# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
        f"# Number of cameras: {len(cam_lines)}\n" + "\n".join(cam_lines) + "\n")
    (out / "images.txt").write_text(
        "# Image list with two lines of data per image:\n"
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
        f"# Number of images: {len(cams)}\n" + "\n".join(img_lines) + "\n")
    xyz, rgb, _ = _all_points(bundle, max_points, seed)
    lines = [f"{i} {p[0]:.7g} {p[1]:.7g} {p[2]:.7g} {c[0]} {c[1]} {c[2]} 0" for i, (p, c) in
             enumerate(zip(xyz, rgb), start=1)]
    (out / "points3D.txt").write_text(
        "# 3D point list with one line of data per point:\n"
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
        f"# Number of points: {len(lines)}\n" + "\n".join(lines) + ("\n" if lines else ""))
    return out


def export_nerfstudio(bundle: Bundle, path: str | Path) -> Path:
    """nerfstudio ``transforms.json`` next to the bundle's frames (paths relative to it)."""
    path = Path(path)
    frames = []
    for c in _solved(bundle):
        c2w_gl = np.asarray(c.c2w, np.float64) @ OPENCV_TO_OPENGL
        frames.append({"file_path": _frame_name(bundle, c.index), "transform_matrix": c2w_gl.tolist(),
                       "fl_x": c.fx, "fl_y": c.fy, "cx": c.cx + 0.5, "cy": c.cy + 0.5,
                       "w": bundle.width, "h": bundle.height})
    doc = {"camera_model": "OPENCV", "w": bundle.width, "h": bundle.height,
           "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0, "frames": frames}
    path.write_text(json.dumps(doc, indent=1))
    return path


def export_tum(bundle: Bundle, path: str | Path) -> Path:
    """TUM RGB-D trajectory; timestamps are frame index / fps seconds."""
    path = Path(path)
    lines = []
    for c in _solved(bundle):
        c2w = np.asarray(c.c2w, np.float64)
        w, x, y, z = rotation_to_quaternion(c2w[:3, :3])
        t = c2w[:3, 3]
        lines.append(f"{c.index / bundle.fps:.6f} {t[0]:.9g} {t[1]:.9g} {t[2]:.9g} {x:.9g} {y:.9g} {z:.9g} {w:.9g}")
    path.write_text("# timestamp tx ty tz qx qy qz qw\n" + "\n".join(lines) + "\n")
    return path


def export_ply(bundle: Bundle, path: str | Path, max_points: int = 0, seed: int = 0) -> Path:
    """All frames' points as one binary PLY (``max_points`` > 0 subsamples uniformly)."""
    path = Path(path)
    xyz, rgb, conf = _all_points(bundle, max_points, seed)
    vertex = np.empty(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"),
                                       ("green", "u1"), ("blue", "u1"), ("confidence", "<f4")])
    vertex["x"], vertex["y"], vertex["z"] = xyz.T
    vertex["red"], vertex["green"], vertex["blue"] = rgb.T
    vertex["confidence"] = conf
    header = ("ply\nformat binary_little_endian 1.0\ncomment Parallax result bundle export\n"
              f"element vertex {len(xyz)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty float confidence\n"
              "end_header\n")
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(vertex.tobytes())
    return path


def _all_points(bundle: Bundle, max_points: int, seed: int):
    if not bundle.points:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), np.zeros(0, np.float32)
    xyz = np.concatenate([p.xyz for p in bundle.points]).astype(np.float32)
    rgb = np.concatenate([p.rgb for p in bundle.points]).astype(np.uint8)
    conf = np.concatenate([p.conf for p in bundle.points]).astype(np.float32)
    if max_points and len(xyz) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(xyz), max_points, replace=False))
        xyz, rgb, conf = xyz[keep], rgb[keep], conf[keep]
    return xyz, rgb, conf


EXPORTERS = {
    "colmap": (export_colmap, "colmap"),
    "nerfstudio": (export_nerfstudio, "transforms.json"),
    "tum": (export_tum, "trajectory.tum"),
    "ply": (export_ply, "points.ply"),
}
