"""The result bundle: the only seam between the backend and Blender (DESIGN section 3).

A bundle is a directory (zipped for transfer)::

    bundle.json    schema, task, engine, model id, created, fps, width, height, frame_count,
                   source info, scores, timings, and the relative paths of the parts below
                   (an absent part is null)
    frames/        video frames, PNG, %06d.png (frame index, from 0)
    video.mp4      optional encoded video
    cameras.json   {"convention": "opencv_c2w", "width", "height", "frames": [
                     {"index", "c2w": 4x4 rows or null when not solved, "fx", "fy", "cx", "cy"}]}
    points/        per frame %06d.npz: xyz float32 (N,3) world, rgb uint8 (N,3), conf float16 (N,),
                   optional dynamic bool (N,): the point moves in the world (4D reconstructions)
    depth/         optional per frame %06d.npz: depth float32 (H,W), conf float16 (H,W)

Conventions: OpenCV camera axes (x right, y down, z forward), camera-to-world matrices,
intrinsics in pixels of the bundle's frames with pixel centres at integer coordinates
(the centre of the top-left pixel is (0, 0)). The world is the first frame's camera.

This module needs numpy and the standard library only, so Blender's Python can import it.
Reading validates every part and raises :class:`BundleError` naming the file and field;
writing is atomic (a temporary directory renamed into place).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import shutil
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

SCHEMA = "parallax.bundle"
SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = (1,)
TASKS = ("ground_truth", "solve", "generate", "reconstruct", "pair_pose")
FRAME_NAME = "{:06d}.png"
ARRAY_NAME = "{:06d}.npz"


class BundleError(ValueError):
    """A bundle is missing a part or holds a bad value; the message names file and field."""

    def __init__(self, path: os.PathLike | str, message: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {message}")


@dataclass
class CameraFrame:
    """One frame's camera: OpenCV c2w (None when the engine did not solve it) and pinhole K."""

    index: int
    c2w: Optional[np.ndarray]
    fx: float
    fy: float
    cx: float
    cy: float

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)


@dataclass
class PointFrame:
    """World points seen in one frame."""

    xyz: np.ndarray  # (N, 3) float32
    rgb: np.ndarray  # (N, 3) uint8
    conf: np.ndarray  # (N,) float16
    dynamic: Optional[np.ndarray] = None  # (N,) bool: moves in the world (reconstruct); None: not known


@dataclass
class DepthFrame:
    depth: np.ndarray  # (H, W) float32; 0 or inf where unknown
    conf: np.ndarray  # (H, W) float16


@dataclass
class Bundle:
    """A result in memory. Absent parts are None; per-frame lists have ``frame_count`` items."""

    task: str
    width: int
    height: int
    frame_count: int
    fps: float = 24.0
    engine: str = ""
    model_id: str = ""
    created: str = ""
    source: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    frames: Optional[list] = None  # list of (H, W, 3) uint8 arrays, or of Paths after reading
    video: Optional[Path] = None
    cameras: Optional[list] = None  # list[CameraFrame]
    points: Optional[list] = None  # list[PointFrame]
    depth: Optional[list] = None  # list[DepthFrame]
    path: Optional[Path] = None  # where it was read from

    def c2w_array(self) -> np.ndarray:
        """(F, 4, 4) camera-to-world, NaN for unsolved frames."""
        out = np.full((self.frame_count, 4, 4), np.nan)
        for cam in self.cameras or []:
            if cam.c2w is not None:
                out[cam.index] = cam.c2w
        return out


# ----------------------------------------------------------------------------------------
# PNG, with zlib only: the backend writes frames and Blender reads them natively.


def encode_png(rgb: np.ndarray) -> bytes:
    """Encode an (H, W, 3) or (H, W, 4) uint8 array as PNG."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise ValueError(f"expected (H, W, 3|4) uint8 image, got shape {rgb.shape}")
    h, w, c = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * c)], axis=1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    colour_type = 2 if c == 3 else 6
    header = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG header, raising BundleError if it is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise BundleError(path, "not a PNG file")
    return struct.unpack(">II", head[16:24])


# ----------------------------------------------------------------------------------------
# Writing


def write_bundle(bundle: Bundle, out_dir: os.PathLike | str, overwrite: bool = True) -> Path:
    """Write ``bundle`` to ``out_dir`` atomically and return the path.

    Everything goes to a temporary sibling directory first, which is renamed into place only
    once complete, so a crash or cancel never leaves half a bundle at ``out_dir``.
    """
    out_dir = Path(out_dir)
    _check_in_memory(bundle)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        parts = _write_parts(bundle, tmp)
        meta = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "task": bundle.task,
            "engine": bundle.engine,
            "model_id": bundle.model_id,
            "created": bundle.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "fps": float(bundle.fps),
            "width": int(bundle.width),
            "height": int(bundle.height),
            "frame_count": int(bundle.frame_count),
            "source": bundle.source,
            "scores": bundle.scores,
            "timings": bundle.timings,
            "parts": parts,
        }
        _write_json(tmp / "bundle.json", meta)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write_parts(b: Bundle, root: Path) -> dict:
    parts: dict[str, Optional[str]] = {"frames": None, "video": None, "cameras": None, "points": None, "depth": None}
    if b.frames is not None:
        (root / "frames").mkdir()
        for i, frame in enumerate(b.frames):
            dst = root / "frames" / FRAME_NAME.format(i)
            if isinstance(frame, (str, os.PathLike)):
                shutil.copyfile(frame, dst)
            else:
                dst.write_bytes(encode_png(frame))
        parts["frames"] = "frames"
    if b.video is not None:
        shutil.copyfile(b.video, root / "video.mp4")
        parts["video"] = "video.mp4"
    if b.cameras is not None:
        _write_json(root / "cameras.json", {
            "convention": "opencv_c2w",
            "width": int(b.width),
            "height": int(b.height),
            "frames": [{
                "index": int(c.index),
                "c2w": None if c.c2w is None else np.asarray(c.c2w, dtype=np.float64).tolist(),
                "fx": float(c.fx), "fy": float(c.fy), "cx": float(c.cx), "cy": float(c.cy),
            } for c in b.cameras],
        })
        parts["cameras"] = "cameras.json"
    if b.points is not None:
        (root / "points").mkdir()
        for i, p in enumerate(b.points):
            # Uncompressed: importing 120 frames x 50k points must take seconds, and the
            # transfer zip compresses anyway.
            arrays = {"xyz": np.asarray(p.xyz, np.float32), "rgb": np.asarray(p.rgb, np.uint8),
                      "conf": np.asarray(p.conf, np.float16)}
            if p.dynamic is not None:
                arrays["dynamic"] = np.asarray(p.dynamic, bool)
            np.savez(root / "points" / ARRAY_NAME.format(i), **arrays)
        parts["points"] = "points"
    if b.depth is not None:
        (root / "depth").mkdir()
        for i, d in enumerate(b.depth):
            np.savez_compressed(root / "depth" / ARRAY_NAME.format(i),
                                depth=np.asarray(d.depth, np.float32), conf=np.asarray(d.conf, np.float16))
        parts["depth"] = "depth"
    return parts


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, allow_nan=False))


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``; an existing ``dst`` is moved aside first, then removed."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _check_in_memory(b: Bundle) -> None:
    where = "<bundle>"
    if b.task not in TASKS:
        raise BundleError(where, f"task {b.task!r} is not one of {TASKS}")
    if b.width <= 0 or b.height <= 0 or b.frame_count <= 0:
        raise BundleError(where, "width, height and frame_count must be positive")
    for name in ("frames", "cameras", "points", "depth"):
        part = getattr(b, name)
        if part is not None and len(part) != b.frame_count:
            raise BundleError(where, f"{name} has {len(part)} items for frame_count {b.frame_count}")
    for i, c in enumerate(b.cameras or []):
        if c.index != i:
            raise BundleError(where, f"cameras[{i}].index is {c.index}")
        _check_camera(c, where, i)
    for i, p in enumerate(b.points or []):
        _check_points(p.xyz, p.rgb, p.conf, where, i, p.dynamic)


# ----------------------------------------------------------------------------------------
# Reading


def read_bundle(path: os.PathLike | str, load_points: bool = True, load_depth: bool = True) -> Bundle:
    """Read and validate a bundle directory or zip. Raises BundleError naming file and field."""
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        path = unzip_bundle(path, path.with_suffix(""))
    meta_path = path / "bundle.json"
    if not path.is_dir():
        raise BundleError(path, "no such bundle directory")
    meta = _read_json(meta_path)
    if meta.get("schema") != SCHEMA:
        raise BundleError(meta_path, f"field 'schema' is {meta.get('schema')!r}, expected {SCHEMA!r}")
    version = meta.get("schema_version")
    if version not in SUPPORTED_VERSIONS:
        raise BundleError(meta_path, f"unknown schema_version {version!r}; this Parallax reads {list(SUPPORTED_VERSIONS)}")
    w, h, n = (_field(meta, meta_path, k, int) for k in ("width", "height", "frame_count"))
    if w <= 0 or h <= 0 or n <= 0:
        raise BundleError(meta_path, "width, height and frame_count must be positive")
    fps = _field(meta, meta_path, "fps", (int, float))
    if not (math.isfinite(fps) and fps > 0):
        raise BundleError(meta_path, f"field 'fps' must be a positive number, got {fps!r}")
    task = _field(meta, meta_path, "task", str)
    if task not in TASKS:
        raise BundleError(meta_path, f"field 'task' is {task!r}, expected one of {TASKS}")
    parts = _field(meta, meta_path, "parts", dict)

    b = Bundle(task=task, width=w, height=h, frame_count=n, fps=float(fps),
               engine=str(meta.get("engine", "")), model_id=str(meta.get("model_id", "")),
               created=str(meta.get("created", "")), source=dict(meta.get("source") or {}),
               scores=dict(meta.get("scores") or {}), timings=dict(meta.get("timings") or {}),
               path=path)
    if parts.get("frames"):
        b.frames = _read_frames(path / parts["frames"], n, w, h)
    if parts.get("video"):
        b.video = path / parts["video"]
        if not b.video.is_file():
            raise BundleError(b.video, "video named in bundle.json is missing")
    if parts.get("cameras"):
        b.cameras = _read_cameras(path / parts["cameras"], n, w, h)
    if parts.get("points") and load_points:
        b.points = [_read_points(path / parts["points"] / ARRAY_NAME.format(i), i) for i in range(n)]
    if parts.get("depth") and load_depth:
        b.depth = [_read_depth(path / parts["depth"] / ARRAY_NAME.format(i), h, w) for i in range(n)]
    return b


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise BundleError(path, "file is missing")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(path, f"not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise BundleError(path, "expected a JSON object at the top level")
    return obj


def _field(obj: dict, path: Path, key: str, kind):
    if key not in obj:
        raise BundleError(path, f"field '{key}' is missing")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise BundleError(path, f"field '{key}' has the wrong type ({type(value).__name__})")
    return value


def _read_frames(folder: Path, n: int, w: int, h: int) -> list[Path]:
    if not folder.is_dir():
        raise BundleError(folder, "frames folder is missing")
    files = [folder / FRAME_NAME.format(i) for i in range(n)]
    for f in files:
        if not f.is_file():
            raise BundleError(f, "frame file is missing")
    # Checking every header is cheap; the first and last catch resized or foreign frames.
    for f in (files[0], files[-1]):
        size = png_size(f)
        if size != (w, h):
            raise BundleError(f, f"frame is {size[0]}x{size[1]}, bundle.json says {w}x{h}")
    return files


def _read_cameras(path: Path, n: int, w: int, h: int) -> list[CameraFrame]:
    obj = _read_json(path)
    if obj.get("convention") != "opencv_c2w":
        raise BundleError(path, f"field 'convention' is {obj.get('convention')!r}, expected 'opencv_c2w'")
    frames = _field(obj, path, "frames", list)
    if len(frames) != n:
        raise BundleError(path, f"field 'frames' has {len(frames)} entries, frame_count is {n}")
    cams = []
    for i, fr in enumerate(frames):
        where = f"frames[{i}]"
        if not isinstance(fr, dict):
            raise BundleError(path, f"{where} is not an object")
        if fr.get("index") != i:
            raise BundleError(path, f"{where}.index is {fr.get('index')!r}, expected {i}")
        try:
            vals = {k: float(fr[k]) for k in ("fx", "fy", "cx", "cy")}
        except (KeyError, TypeError, ValueError):
            raise BundleError(path, f"{where} needs numeric fx, fy, cx, cy") from None
        c2w = fr.get("c2w")
        if c2w is not None:
            try:
                c2w = np.asarray(c2w, dtype=np.float64)
            except (TypeError, ValueError):
                raise BundleError(path, f"{where}.c2w is not a numeric 4x4 matrix") from None
        cam = CameraFrame(index=i, c2w=c2w, **vals)
        _check_camera(cam, path, i)
        cams.append(cam)
    return cams


def _check_camera(cam: CameraFrame, path, i: int) -> None:
    where = f"frames[{i}]"
    for k in ("fx", "fy", "cx", "cy"):
        if not math.isfinite(getattr(cam, k)):
            raise BundleError(path, f"{where}.{k} is not finite")
    if cam.fx <= 0 or cam.fy <= 0:
        raise BundleError(path, f"{where} focal lengths must be positive")
    if cam.c2w is None:
        return
    c2w = np.asarray(cam.c2w)
    if c2w.shape != (4, 4):
        raise BundleError(path, f"{where}.c2w has shape {c2w.shape}, expected (4, 4)")
    if not np.all(np.isfinite(c2w)):
        raise BundleError(path, f"{where}.c2w contains NaN or infinity")
    R = c2w[:3, :3]
    if np.abs(R @ R.T - np.eye(3)).max() > 1e-4 or np.linalg.det(R) < 0:
        raise BundleError(path, f"{where}.c2w rotation is not a proper rotation matrix")
    if np.abs(c2w[3] - [0, 0, 0, 1]).max() > 1e-6:
        raise BundleError(path, f"{where}.c2w last row must be [0, 0, 0, 1]")


def _load_npz(path: Path, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    if not path.is_file():
        raise BundleError(path, "file is missing")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise BundleError(path, f"array(s) {missing} missing")
            return {k: z[k] for k in keys + tuple(k for k in optional if k in z.files)}
    except BundleError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError...
        raise BundleError(path, f"unreadable npz ({e})") from None


def _read_points(path: Path, i: int) -> PointFrame:
    z = _load_npz(path, ("xyz", "rgb", "conf"), optional=("dynamic",))
    _check_points(z["xyz"], z["rgb"], z["conf"], path, i, z.get("dynamic"))
    return PointFrame(z["xyz"].astype(np.float32, copy=False), z["rgb"].astype(np.uint8, copy=False),
                      z["conf"].astype(np.float16, copy=False),
                      None if z.get("dynamic") is None else z["dynamic"].astype(bool, copy=False))


def _check_points(xyz, rgb, conf, path, i: int, dynamic=None) -> None:
    xyz, rgb, conf = np.asarray(xyz), np.asarray(rgb), np.asarray(conf)
    if dynamic is not None:
        dynamic = np.asarray(dynamic)
        if dynamic.shape != (len(xyz),) or dynamic.dtype not in (np.bool_, np.uint8):
            raise BundleError(path, f"points[{i}] field 'dynamic' has shape {dynamic.shape} and dtype "
                                    f"{dynamic.dtype}, expected ({len(xyz)},) bool")
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise BundleError(path, f"points[{i}] field 'xyz' has shape {xyz.shape}, expected (N, 3)")
    n = xyz.shape[0]
    if rgb.shape != (n, 3):
        raise BundleError(path, f"points[{i}] field 'rgb' has shape {rgb.shape}, expected ({n}, 3)")
    if conf.shape != (n,):
        raise BundleError(path, f"points[{i}] field 'conf' has shape {conf.shape}, expected ({n},)")
    if rgb.dtype != np.uint8:
        raise BundleError(path, f"points[{i}] field 'rgb' has dtype {rgb.dtype}, expected uint8")
    if not np.isfinite(xyz).all():
        raise BundleError(path, f"points[{i}] field 'xyz' contains NaN or infinity")


def _read_depth(path: Path, h: int, w: int) -> DepthFrame:
    z = _load_npz(path, ("depth", "conf"))
    for k in ("depth", "conf"):
        if z[k].shape != (h, w):
            raise BundleError(path, f"field '{k}' has shape {z[k].shape}, expected ({h}, {w})")
    return DepthFrame(z["depth"].astype(np.float32, copy=False), z["conf"].astype(np.float16, copy=False))


# ----------------------------------------------------------------------------------------
# Zip for transfer


def zip_bundle(bundle_dir: os.PathLike | str, zip_path: os.PathLike | str) -> Path:
    """Zip a bundle directory (atomically: written beside, then renamed)."""
    bundle_dir, zip_path = Path(bundle_dir), Path(zip_path)
    tmp = zip_path.with_name(f".{zip_path.name}.partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for f in sorted(bundle_dir.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(bundle_dir).as_posix())
    os.replace(tmp, zip_path)
    return zip_path


def unzip_bundle(zip_path: os.PathLike | str, out_dir: os.PathLike | str) -> Path:
    """Extract a bundle zip, refusing members that would land outside ``out_dir``."""
    zip_path, out_dir = Path(zip_path), Path(out_dir)
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as e:
        raise BundleError(zip_path, f"not a valid zip ({e})") from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        with zf:
            for name in zf.namelist():
                target = (tmp / name).resolve()
                if tmp.resolve() not in target.parents:
                    raise BundleError(zip_path, f"member {name!r} would extract outside the bundle")
            zf.extractall(tmp)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) with w >= 0 of a 3x3 rotation: how the add-on keys a bundle
    camera's rotation and how the COLMAP and TUM exports write it (here, so both sides share it)."""
    m = R
    t = np.trace(m)
    if t > 0:
        s = 2.0 * np.sqrt(t + 1.0)
        q = np.array([0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s])
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = np.zeros(4)
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q
