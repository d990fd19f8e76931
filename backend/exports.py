"""Exports of a result bundle to other tools' formats (numpy and stdlib only).

- COLMAP text model (cameras.txt, images.txt, points3D.txt): PINHOLE cameras, or OPENCV ones
  (fx fy cx cy k1 k2 p1 p2; FULL_OPENCV with a k3) when the cameras carry a lens distortion,
  world-to-camera poses as qw qx qy qz tx ty tz. COLMAP puts the centre of the top-left pixel
  at (0.5, 0.5), one half pixel from ours, so principal points shift by +0.5 (the distortion
  coefficients act on normalised coordinates and do not change). The images are the frames as
  shot, which is what a distorted camera model describes.
- nerfstudio ``transforms.json``: OpenGL camera axes (x right, y up, z back) camera-to-world,
  per-frame intrinsics, pixel centres at +0.5 like COLMAP (nerfstudio casts rays through
  pixel index + 0.5); camera_model OPENCV with the clip's k1, k2, p1, p2 (and k3) at the top
  level, where nerfstudio's dataparser reads one distortion for all frames (per frame when the
  frames' distortions differ).
  With depth in the bundle (reconstruct, generate, unified solves), each frame also gets
  ``depth_file_path``: a 16-bit greyscale PNG in ``depth_png/`` beside the file, holding depth
  in thousandths of the bundle's unit (0 where unknown), which is what nerfstudio's
  ``depth_unit_scale_factor`` (default 1e-3) turns back into units.
- Depth maps alone (``depth``): the same 16-bit PNGs, for COLMAP-based tools and any other user.
- TUM trajectory: ``timestamp tx ty tz qx qy qz qw`` of camera-to-world, one frame a line.
- PLY: binary little-endian vertices with float xyz, uchar rgb and float confidence; all frames
  in one file (``ply``), or one file per frame (``ply-frames``: a 4D result's points change
  with the frame, and a 4D point's "dynamic" flag is kept as a uchar property).

Unsolved frames (c2w None) are left out of every export.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .bundle import Bundle, encode_png, rotation_to_quaternion

OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


def _solved(bundle: Bundle):
    return [c for c in bundle.cameras or [] if c.c2w is not None]


def _frame_name(bundle: Bundle, index: int) -> str:
    return f"frames/{index:06d}.png"


def export_colmap(bundle: Bundle, out_dir: str | Path, max_points: int = 200_000, seed: int = 0) -> Path:
    """Write a COLMAP text model that COLMAP can refine: one camera per distinct intrinsics
    (a clip solved with one shared camera stays one camera), and, when the engine kept its
    tracks (the colmap engine does), each 3D point once with its 2D observations, so that
    bundle adjustment runs on the export. Without tracks (dense per-frame point maps) every
    frame's points are written as points without observations, subsampled to ``max_points``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cams = _solved(bundle)
    intrinsics = {}  # (fx, fy, cx, cy, dist) -> camera id
    for c in cams:
        intrinsics.setdefault(_camera_key(c), len(intrinsics) + 1)
    cam_lines = [f"{cid} {_colmap_camera(bundle.width, bundle.height, *key)}" for key, cid in intrinsics.items()]
    tracked = bool(bundle.points) and all(p.track is not None for p in bundle.points)
    observations = _observations(bundle, cams) if tracked else {}
    img_lines = []
    for image_id, c in enumerate(cams, start=1):
        w2c = np.linalg.inv(np.asarray(c.c2w, np.float64))
        q = rotation_to_quaternion(w2c[:3, :3])
        t = w2c[:3, 3]
        img_lines.append(f"{image_id} {q[0]:.12g} {q[1]:.12g} {q[2]:.12g} {q[3]:.12g} {t[0]:.12g} {t[1]:.12g} "
                         f"{t[2]:.12g} {intrinsics[_camera_key(c)]} {_frame_name(bundle, c.index)}")
        # COLMAP puts pixel centres at +0.5
        img_lines.append(" ".join(f"{u + 0.5:.6g} {v + 0.5:.6g} {pid}" for u, v, pid in observations.get(image_id, [])))
    (out / "cameras.txt").write_text(
        "# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
        f"# Number of cameras: {len(cam_lines)}\n" + "\n".join(cam_lines) + "\n")
    (out / "images.txt").write_text(
        "# Image list with two lines of data per image:\n"
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
        f"# Number of images: {len(cams)}\n" + "\n".join(img_lines) + "\n")
    if tracked:
        lines = _tracked_points(bundle, cams, observations)
    else:
        xyz, rgb, _ = _all_points(bundle, max_points, seed)
        lines = [f"{i} {p[0]:.7g} {p[1]:.7g} {p[2]:.7g} {c[0]} {c[1]} {c[2]} 0" for i, (p, c) in
                 enumerate(zip(xyz, rgb), start=1)]
    (out / "points3D.txt").write_text(
        "# 3D point list with one line of data per point:\n"
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
        f"# Number of points: {len(lines)}\n" + "\n".join(lines) + ("\n" if lines else ""))
    return out


def _camera_key(c) -> tuple:
    return (c.fx, c.fy, c.cx, c.cy, tuple(float(v) for v in c.dist) if c.dist is not None else None)


def _colmap_camera(width: int, height: int, fx, fy, cx, cy, dist) -> str:
    """``MODEL WIDTH HEIGHT PARAMS`` of one camera in COLMAP's text format (pixel centres +0.5)."""
    params = [fx, fy, cx + 0.5, cy + 0.5]
    if dist is None:
        model = "PINHOLE"
    elif len(dist) == 4:
        model = "OPENCV"  # fx fy cx cy k1 k2 p1 p2: OpenCV's model, as the bundle's dist
        params += list(dist)
    else:
        model = "FULL_OPENCV"  # ... k1 k2 p1 p2 k3 k4 k5 k6: the rational terms k4-k6 are 0
        params += list(dist) + [0.0, 0.0, 0.0]
    return f"{model} {width} {height} " + " ".join(f"{v:.10g}" for v in params)


def _observations(bundle: Bundle, cams) -> dict:
    """{image id: [(u, v, point3D id)]} from the per-frame track ids (ids shifted to start at 1).
    A point seen by fewer than two solved frames is not a track (COLMAP's bundle adjustment
    refuses it): its observation stays, with point id -1, as COLMAP writes unmatched keypoints."""
    ids = np.concatenate([bundle.points[c.index].track for c in cams]) if cams else np.zeros(0, np.int64)
    ids, counts = np.unique(ids[ids >= 0], return_counts=True)
    tracked = set(ids[counts >= 2].tolist())
    out = {}
    for image_id, c in enumerate(cams, start=1):
        p = bundle.points[c.index]
        keep = p.track >= 0
        out[image_id] = [(float(u), float(v), int(t) + 1 if int(t) in tracked else -1)
                         for (u, v), t in zip(p.uv[keep], p.track[keep])]
    return out


def _tracked_points(bundle: Bundle, cams, observations: dict) -> list[str]:
    """One line per unique 3D point: its position and colour (from its first observation) and
    its track as (image id, index into that image's POINTS2D)."""
    first, track = {}, {}
    for image_id, c in enumerate(cams, start=1):
        p = bundle.points[c.index]
        rows = np.nonzero(p.track >= 0)[0]
        for point2d_idx, (row, (_, _, pid)) in enumerate(zip(rows, observations[image_id])):
            if pid < 0:
                continue
            first.setdefault(pid, (p.xyz[row], p.rgb[row]))
            track.setdefault(pid, []).append(f"{image_id} {point2d_idx}")
    return [f"{pid} {x:.7g} {y:.7g} {z:.7g} {r} {g} {b} 0 " + " ".join(track[pid])
            for pid, ((x, y, z), (r, g, b)) in sorted(first.items())]


# Depth PNGs: uint16 thousandths of the bundle's unit. A bundle's scene is about one unit deep
# (world = the first camera, median depth 1 for solves), so this keeps 0.001-unit steps up to
# 65 units; farther depth is clipped to the largest value and nothing wraps.
DEPTH_PNG_SCALE = 1000.0
DEPTH_PNG_DIR = "depth_png"


def export_depth(bundle: Bundle, out_dir: str | Path) -> Path:
    """Each solved frame's depth as ``out_dir/%06d.png`` (16-bit, thousandths of a unit)."""
    out = Path(out_dir)
    if not bundle.depth:
        raise ValueError("this bundle has no depth maps (reconstruct, generate and unified solves have them)")
    out.mkdir(parents=True, exist_ok=True)
    for c in _solved(bundle):
        d = np.asarray(bundle.depth[c.index].depth, np.float64)
        known = np.isfinite(d) & (d > 0)
        mm = np.where(known, np.clip(np.rint(d * DEPTH_PNG_SCALE), 1, 65535), 0).astype(np.uint16)
        (out / f"{c.index:06d}.png").write_bytes(encode_png(mm))
    return out


def export_nerfstudio(bundle: Bundle, path: str | Path) -> Path:
    """nerfstudio ``transforms.json``; image paths are relative to the file, wherever it is
    written (nerfstudio resolves them against the file's folder). With depth, its PNGs go to
    ``depth_png/`` beside the file and each frame names its own."""
    path = Path(path)
    cams = _solved(bundle)
    if bundle.depth:
        export_depth(bundle, path.parent / DEPTH_PNG_DIR)
    dists = {tuple(c.dist) if c.dist is not None else (0.0, 0.0, 0.0, 0.0) for c in cams}
    shared = dists.pop() if len(dists) == 1 else None  # one lens for the clip (what the engines give)
    frames = []
    for c in cams:
        c2w_gl = np.asarray(c.c2w, np.float64) @ OPENCV_TO_OPENGL
        name = _frame_name(bundle, c.index)
        if bundle.path is not None:  # a bundle read from disk: point at its frames from wherever this is
            name = Path(os.path.relpath(Path(bundle.path).resolve() / name, path.resolve().parent)).as_posix()
        frames.append({"file_path": name,
                       "transform_matrix": c2w_gl.tolist(),
                       "fl_x": c.fx, "fl_y": c.fy, "cx": c.cx + 0.5, "cy": c.cy + 0.5,
                       "w": bundle.width, "h": bundle.height,
                       **({"depth_file_path": f"{DEPTH_PNG_DIR}/{c.index:06d}.png"} if bundle.depth else {}),
                       **({} if shared is not None else _nerfstudio_dist(c.dist))})
    # nerfstudio takes the distortion from the top level when any of k1..k4, p1, p2 is there,
    # and from each frame otherwise
    doc = {"camera_model": "OPENCV", "w": bundle.width, "h": bundle.height,
           **(_nerfstudio_dist(shared) if shared is not None else {}), "frames": frames}
    path.write_text(json.dumps(doc, indent=1))
    return path


def _nerfstudio_dist(dist) -> dict:
    """nerfstudio's distortion keys of OpenCV coefficients (k1, k2, p1, p2[, k3]); None: none."""
    d = [float(v) for v in dist] if dist is not None else [0.0] * 4
    out = {"k1": d[0], "k2": d[1], "p1": d[2], "p2": d[3]}
    if len(d) > 4:
        out["k3"] = d[4]
    return out


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
    _write_ply(path, *_all_points(bundle, max_points, seed))
    return path


def export_ply_frames(bundle: Bundle, out_dir: str | Path) -> Path:
    """One binary PLY per frame with points (``out_dir/%06d.ply``), with a ``dynamic`` uchar
    property when the bundle flags moving points."""
    out = Path(out_dir)
    if not bundle.points:
        raise ValueError("this bundle has no points")
    out.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(bundle.points):
        if len(p.xyz):
            _write_ply(out / f"{i:06d}.ply", p.xyz, p.rgb, p.conf, p.dynamic)
    return out


def _write_ply(path: Path, xyz, rgb, conf, dynamic=None) -> None:
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
              ("confidence", "<f4")] + ([("dynamic", "u1")] if dynamic is not None else [])
    vertex = np.empty(len(xyz), dtype=fields)
    vertex["x"], vertex["y"], vertex["z"] = np.asarray(xyz, np.float32).T
    vertex["red"], vertex["green"], vertex["blue"] = np.asarray(rgb, np.uint8).T
    vertex["confidence"] = np.asarray(conf, np.float32)
    if dynamic is not None:
        vertex["dynamic"] = np.asarray(dynamic, bool)
    types = {"<f4": "float", "u1": "uchar"}
    header = ("ply\nformat binary_little_endian 1.0\ncomment Parallax result bundle export\n"
              f"element vertex {len(vertex)}\n" + "".join(f"property {types[t]} {n}\n" for n, t in fields)
              + "end_header\n")
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(vertex.tobytes())


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
    "ply-frames": (export_ply_frames, "points_ply"),
    "depth": (export_depth, DEPTH_PNG_DIR),
}
# Formats whose output is a folder (an existing --out folder is the output, not its parent).
FOLDER_FORMATS = ("colmap", "ply-frames", "depth")
# Formats that read the bundle's depth maps.
DEPTH_FORMATS = ("nerfstudio", "depth")
