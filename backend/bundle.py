"""The result bundle: the only seam between the backend and Blender (DESIGN section 3).

A bundle is a directory (zipped for transfer)::

    bundle.json    schema, id (a uuid of this bundle), task, engine, model id, created, fps,
                   width, height, frame_count, source info, scores, timings, and the relative
                   paths of the parts below (an absent part is null)
    frames/        video frames, PNG, %06d.png (frame index, from 0)
    video.mp4      optional encoded video
    cameras.json   {"convention": "opencv_c2w", "width", "height", "frames": [
                     {"index", "c2w": 4x4 rows or null when not solved, "fx", "fy", "cx", "cy",
                      optional "dist": [k1, k2, p1, p2] or [k1, k2, p1, p2, k3]}]}
                   "dist" is the lens distortion of the frames as shot, in OpenCV's model
                   (``cv2.undistort(frame, K, dist)``); the camera is then the pinhole part,
                   which matches the undistorted frames. Absent: the frames are pinhole.
    undistorted/   optional, with "dist": the frames undistorted to the pinhole K, %06d.png
    plots/         optional PNG figures the engine drew of its result (name.png, e.g. the
                   per-frame solve quality), for the panel and the user
    points/        per frame %06d.npz: xyz float32 (N,3) world, rgb uint8 (N,3), conf float16 (N,),
                   optional dynamic bool (N,): the point moves in the world (4D reconstructions);
                   optional track int64 (N,) and uv float32 (N,2): the structure-from-motion point
                   each row observes (one id per unique 3D point, -1 none) and where in the frame
                   (pixels, centres at integers), so exports can rebuild COLMAP's tracks
    depth/         optional per frame %06d.npz: depth float32 (H,W), conf float16 (H,W)

Conventions: OpenCV camera axes (x right, y down, z forward), camera-to-world matrices,
intrinsics in pixels of the bundle's frames with pixel centres at integer coordinates
(the centre of the top-left pixel is (0, 0)). The world is the first frame's camera.

This module needs numpy and the standard library only, so Blender's Python can import it.

Reading treats a bundle as untrusted input (it may come from a remote server or a download):
every part is validated and anything wrong raises :class:`BundleError` naming the file and
field, never another exception. Every size is bounded *before* anything is allocated (the
limits below), every path is confined to the bundle folder (no absolute or ``..`` parts, no
symlinks leading out), and every number must be finite as the float32 Blender stores.

Writing is atomic (a temporary directory renamed into place) and never deletes what Parallax
did not write: an existing folder is replaced only when it is empty or a Parallax bundle
(:func:`check_replaceable`), and zips are extracted only into new folders or earlier
Parallax extractions (marked with ``EXTRACTION_MARKER``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import re
import shutil
import struct
import tempfile
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

SCHEMA = "parallax.bundle"
SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = (1,)
TASKS = ("ground_truth", "solve", "generate", "reconstruct", "pair_pose")
FRAME_NAME = "{:06d}.png"
ARRAY_NAME = "{:06d}.npz"
PART_KEYS = ("frames", "video", "cameras", "points", "depth", "undistorted", "plots")

# Limits of what a bundle may hold. They bound the reader's memory and time before it
# allocates anything; the writer refuses the same, so whatever Parallax writes it can read.
MAX_FRAME_COUNT = 50_000  # 35 min at 24 fps; Blender's timeline ends at 1048574
MAX_SIDE = 16384  # pixels; Blender renders up to 65536
FPS_RANGE = (0.01, 1000.0)  # Blender keeps fps as an int (<= 32767) over fps_base (<= 1e6)
MAX_BUNDLE_JSON_BYTES = 8 * 2**20
CAMERAS_JSON_BYTES = (64 * 2**10, 1536)  # fixed + per frame (the writer uses ~600 bytes a frame)
MAX_ARRAY_BYTES = 4 * 2**30  # all point and depth arrays one read loads, together
MAX_TEXT = 4096  # characters of engine, model_id, created
FLOAT32_MAX = float(np.finfo(np.float32).max)  # Blender stores floats as float32: beyond is inf
# Transfer zips: entries, their unpacked size, and how much larger than the zip they may get.
MAX_ZIP_ENTRIES = 4 * MAX_FRAME_COUNT + 64
MAX_UNZIPPED_BYTES = 64 * 2**30
MAX_ZIP_RATIO = 50  # real bundles are PNG and float arrays (ratio ~1-3); bombs are 1000+
ZIP_RATIO_SLACK = 16 * 2**20  # small all-JSON bundles compress better than MAX_ZIP_RATIO
# Written into every folder unzip_bundle makes: only such folders may be replaced by the next
# extraction (a folder the user happens to have at that path never is).
EXTRACTION_MARKER = ".parallax-extracted"
# What a folder may hold and still be "a Parallax bundle" that write_bundle may replace: the
# parts, the extraction marker, and the exports `python -m backend export` writes inside it
# by default (backend.exports.EXPORTERS, checked by a test).
BUNDLE_ENTRIES = ("bundle.json", "cameras.json", "video.mp4", "frames", "points", "depth", "undistorted", "plots",
                  EXTRACTION_MARKER)
MAX_PLOTS = 16
MAX_DIST = 100.0  # |coefficient|: real lenses are below ~2; larger is a failed estimate, not a lens
EXPORT_ENTRIES = ("colmap", "transforms.json", "trajectory.tum", "points.ply", "depth_png", "points_ply")
_PART_FILE = re.compile(r"\d{6}\.(png|npz)")
_PLOT_FILE = re.compile(r"[a-z0-9_]{1,40}\.png")
_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


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
    dist: Optional[tuple] = None  # OpenCV (k1, k2, p1, p2[, k3]) of the frames as shot; None: pinhole

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
    track: Optional[np.ndarray] = None  # (N,) int64: id of the unique 3D point observed (-1: none); SfM only
    uv: Optional[np.ndarray] = None  # (N, 2) float32: the observation's pixel in this frame; with track


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
    undistorted: Optional[list] = None  # like frames: the frames undistorted (with cameras' dist)
    plots: Optional[dict] = None  # name -> PNG bytes, or Path after reading
    path: Optional[Path] = None  # where it was read from (resolved)
    # What identifies this bundle wherever it is copied or extracted: the uuid write_bundle
    # puts in bundle.json ("path:<resolved folder>" for bundles written before it did).
    id: str = ""

    def c2w_array(self) -> np.ndarray:
        """(F, 4, 4) camera-to-world, NaN for unsolved frames."""
        out = np.full((self.frame_count, 4, 4), np.nan)
        for cam in self.cameras or []:
            if cam.c2w is not None:
                out[cam.index] = cam.c2w
        return out

    def summary(self) -> list[str]:
        """What the result says of itself, in lines for a person (the CLI prints them, the
        add-on's panel shows them): frames solved, points, its quality score, where it came
        from, and the frames it could not do. Counts are the ones bundle.json holds."""
        s, src = self.scores or {}, self.source or {}
        solved = sum(c.c2w is not None for c in self.cameras or [])
        rows = sum(len(p.xyz) for p in self.points or [] if p is not None)
        points = (f"{s['points']} 3D points ({rows} observations)" if "points" in s and s["points"] != rows
                  else f"{rows} points")
        lines = [f"{solved}/{self.frame_count} frames solved, {points}"]
        quality = []
        if isinstance(s.get("mean_reprojection_error_px"), (int, float)):
            quality.append(f"reprojection error {s['mean_reprojection_error_px']:.2f} px")
        if isinstance(s.get("confidence"), (int, float)):
            quality.append(f"mean confidence {s['confidence']:.2f}")
        auto = s.get("auto")
        if isinstance(auto, dict) and isinstance(auto.get("score"), (int, float)):
            quality.append(f"auto consistency {auto['score']:.2f}")
        if quality:
            lines.append(", ".join(quality))
        lens = src.get("lens")
        if isinstance(lens, dict) and isinstance(lens.get("summary"), str):
            lines.append(lens["summary"][:MAX_TEXT])
        where = src.get("input")
        lines.append(f"{self.engine or self.task}, {self.fps:g} fps" + (f", from {Path(str(where)).name}" if where else ""))
        unsolved = src.get("unregistered_frames") or [c.index for c in self.cameras or [] if c.c2w is None]
        if unsolved:
            lines.append(f"not solved: frames {frame_ranges(unsolved)}")
        still = src.get("still_frames")  # repeats of the frame before: no motion to see
        if isinstance(still, list) and still and all(isinstance(i, int) for i in still):
            lines.append(f"still: frames {frame_ranges(still)} repeat the frame before (no camera motion there)")
        empty = s.get("frames_without_points") or []
        if empty:
            lines.append(f"no confident points: {len(empty)} frames ({frame_ranges(empty)})")
        return lines


def frame_ranges(indices, most: Optional[int] = 12) -> str:
    """[0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8"; beyond ``most`` runs, " ..." (long lists stay one
    readable line; None: every run, for a panel that wraps its lines)."""
    out, run = [], []
    for i in sorted(int(k) for k in indices):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    if most is not None and len(out) > most:
        return ", ".join(out[:most]) + " ..."
    return ", ".join(out)


# ----------------------------------------------------------------------------------------
# PNG, with zlib only: the backend writes frames and Blender reads them natively.


def encode_png(image: np.ndarray) -> bytes:
    """Encode an (H, W, 3) or (H, W, 4) uint8 array as PNG, or an (H, W) uint16 array as a
    16-bit greyscale PNG (the depth maps nerfstudio reads)."""
    image = np.asarray(image)
    if image.ndim == 2 and image.dtype == np.uint16:
        h, w = image.shape
        rows, depth, colour_type = image.astype(">u2").view(np.uint8).reshape(h, w * 2), 16, 0
    else:
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(f"expected an (H, W, 3|4) uint8 or (H, W) uint16 image, got shape {image.shape}")
        h, w, c = image.shape
        rows, depth, colour_type = image.reshape(h, w * c), 8, (2 if c == 3 else 6)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1)  # filter type 0 per row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG header, raising BundleError if it is not a PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError as e:
        raise BundleError(path, f"cannot be read ({e.strerror or e})") from None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise BundleError(path, "not a PNG file" + (" (empty)" if not head else ""))
    return struct.unpack(">II", head[16:24])


# ----------------------------------------------------------------------------------------
# Writing


def write_bundle(bundle: Bundle, out_dir: os.PathLike | str, overwrite: bool = True) -> Path:
    """Write ``bundle`` to ``out_dir`` atomically and return the path.

    Everything goes to a temporary sibling directory first, which is renamed into place only
    once complete, so a crash or cancel never leaves half a bundle at ``out_dir``. An existing
    ``out_dir`` is replaced only when ``overwrite`` and it is empty or a Parallax bundle;
    anything else raises FileExistsError and is left as it was.
    """
    out_dir = Path(out_dir)
    _check_in_memory(bundle)
    if os.path.lexists(out_dir) and not overwrite:
        raise FileExistsError(f"{out_dir}: already exists")
    check_replaceable(out_dir)  # before any work: a refused folder costs nothing
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        parts = _write_parts(bundle, tmp)
        meta = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            # A new bundle gets a new identity; a copied or extracted one keeps it.
            "id": uuid.uuid4().hex,
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
        _replace_dir(tmp, out_dir, is_parallax_bundle, "a Parallax bundle")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write_parts(b: Bundle, root: Path) -> dict:
    parts: dict[str, Optional[str]] = {k: None for k in PART_KEYS}
    for key in ("frames", "undistorted"):
        if getattr(b, key) is None:
            continue
        (root / key).mkdir()
        for i, frame in enumerate(getattr(b, key)):
            dst = root / key / FRAME_NAME.format(i)
            if isinstance(frame, (str, os.PathLike)):
                shutil.copyfile(frame, dst)
            else:
                dst.write_bytes(encode_png(frame))
        parts[key] = key
    if b.plots:
        (root / "plots").mkdir()
        for name, png in b.plots.items():
            dst = root / "plots" / f"{name}.png"
            if isinstance(png, (str, os.PathLike)):
                shutil.copyfile(png, dst)
            else:
                dst.write_bytes(png)
        parts["plots"] = "plots"
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
                **({} if c.dist is None else {"dist": [float(v) for v in c.dist]}),
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
            if p.track is not None:
                arrays["track"] = np.asarray(p.track, np.int64)
                arrays["uv"] = np.asarray(p.uv, np.float32)
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


def is_parallax_bundle(folder: os.PathLike | str) -> bool:
    """True when ``folder`` holds a Parallax bundle and nothing else (its parts, the exports
    Parallax writes into it, an extraction marker): only such a folder may be replaced.

    A folder with a bundle.json but also a file of the user's is not one: replacing it would
    delete that file.
    """
    folder = Path(folder)
    try:
        if folder.is_symlink() or not folder.is_dir():
            return False
        meta = folder / "bundle.json"
        if meta.is_symlink() or not meta.is_file() or meta.stat().st_size > MAX_BUNDLE_JSON_BYTES:
            return False
        obj = json.loads(meta.read_bytes())
        if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
            return False
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name in ("frames", "points", "depth", "undistorted"):
                    if entry.is_symlink() or not entry.is_dir() or not _only_part_files(Path(entry.path)):
                        return False
                elif entry.name == "plots":
                    if entry.is_symlink() or not entry.is_dir() or not _only_part_files(Path(entry.path), _PLOT_FILE):
                        return False
                elif entry.name == "generated":  # pair pose: the selected generated video, a bundle itself
                    if entry.is_symlink() or not entry.is_dir() or not is_parallax_bundle(entry.path):
                        return False
                elif entry.name not in BUNDLE_ENTRIES + EXPORT_ENTRIES:
                    return False
        return True
    except (OSError, ValueError, RecursionError):
        return False


def _only_part_files(folder: Path, names: re.Pattern = _PART_FILE) -> bool:
    with os.scandir(folder) as entries:
        for k, entry in enumerate(entries):
            if k > MAX_FRAME_COUNT or not names.fullmatch(entry.name) or entry.is_dir(follow_symlinks=False):
                return False
    return True


def is_parallax_extraction(folder: os.PathLike | str) -> bool:
    """True when ``folder`` was made by :func:`unzip_bundle` (it holds the marker it writes)."""
    marker = Path(folder) / EXTRACTION_MARKER
    try:
        if Path(folder).is_symlink() or marker.is_symlink() or not marker.is_file() or marker.stat().st_size > 65536:
            return False
        return json.loads(marker.read_bytes()).get("parallax_extraction") == 1
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def check_replaceable(out_dir: os.PathLike | str,
                      replaceable: Callable[[Path], bool] = is_parallax_bundle,
                      what: str = "a Parallax bundle") -> None:
    """Raise FileExistsError unless ``out_dir`` is absent, an empty folder, or ``replaceable``.

    The command line calls this before a solve or a generation, so a refused ``--out`` is
    reported at once and not after minutes of work; write_bundle checks again.
    """
    out_dir = Path(out_dir)
    if not os.path.lexists(out_dir):
        return
    if out_dir.is_symlink():
        raise FileExistsError(f"{out_dir}: is a symbolic link; Parallax writes a new folder there only "
                              "where nothing is (choose another folder)")
    if not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: is a file; Parallax does not replace it (choose another folder)")
    try:
        empty = next(os.scandir(out_dir), None) is None
    except OSError as e:
        raise FileExistsError(f"{out_dir}: cannot be listed ({e.strerror or e})") from None
    if not empty and not replaceable(out_dir):
        raise FileExistsError(f"{out_dir}: is a folder with files that are not {what}; Parallax replaces "
                              "only what it wrote (choose a new or empty folder)")


def _replace_dir(src: Path, dst: Path, replaceable: Callable[[Path], bool], what: str) -> None:
    """Rename ``src`` to ``dst``. An existing ``dst`` must be empty or ``replaceable`` (else
    FileExistsError); it is moved into a fresh temporary folder first, then removed."""
    check_replaceable(dst, replaceable, what)
    if not os.path.lexists(dst):
        os.replace(src, dst)
        return
    # A unique folder of our own to move the old one into: a fixed name could be somebody's.
    aside = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
    os.replace(dst, aside / "old")
    try:
        os.replace(src, dst)
    except BaseException:
        os.replace(aside / "old", dst)
        aside.rmdir()
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _check_in_memory(b: Bundle) -> None:
    """What write_bundle refuses: everything read_bundle would refuse in the written files."""
    where = "<bundle>"
    if b.task not in TASKS:
        raise BundleError(where, f"task {b.task!r} is not one of {TASKS}")
    _check_sizes(where, b.width, b.height, b.frame_count, b.fps)
    for name in ("frames", "cameras", "points", "depth", "undistorted"):
        part = getattr(b, name)
        if part is not None and len(part) != b.frame_count:
            raise BundleError(where, f"{name} has {len(part)} items for frame_count {b.frame_count}")
    for key in ("frames", "undistorted"):
        for i, frame in enumerate(getattr(b, key) or []):
            if isinstance(frame, (str, os.PathLike)):
                size = png_size(Path(frame))
                if size != (b.width, b.height):
                    raise BundleError(frame, f"{key} {i} is {size[0]}x{size[1]}, the bundle is {b.width}x{b.height}")
            else:
                shape = np.shape(frame)
                if len(shape) != 3 or shape[:2] != (b.height, b.width) or shape[2] not in (3, 4):
                    raise BundleError(where, f"{key}[{i}] has shape {shape}, expected ({b.height}, {b.width}, 3|4)")
    if b.undistorted is not None and not any(c.dist is not None for c in b.cameras or []):
        raise BundleError(where, "undistorted frames need cameras with a distortion ('dist')")
    if b.plots is not None:
        if len(b.plots) > MAX_PLOTS:
            raise BundleError(where, f"{len(b.plots)} plots, at most {MAX_PLOTS}")
        for name, png in b.plots.items():
            if not (isinstance(name, str) and _PLOT_FILE.fullmatch(f"{name}.png")):
                raise BundleError(where, f"plot name {_short(name)} must be 1-40 of a-z, 0-9, _")
            head = Path(png).read_bytes()[:8] if isinstance(png, (str, os.PathLike)) else bytes(png[:8])
            if head != b"\x89PNG\r\n\x1a\n":
                raise BundleError(where, f"plot {name!r} is not a PNG")
    for i, c in enumerate(b.cameras or []):
        if c.index != i:
            raise BundleError(where, f"cameras[{i}].index is {c.index}")
        _check_camera(c, where, i)
    for i, p in enumerate(b.points or []):
        _check_points(p.xyz, p.rgb, p.conf, where, i, p.dynamic, p.track, p.uv)


def _check_sizes(path, w, h, n, fps) -> None:
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise BundleError(path, f"width and height must be 1 to {MAX_SIDE}, got {_short(w)}x{_short(h)}")
    if not 1 <= n <= MAX_FRAME_COUNT:
        raise BundleError(path, f"field 'frame_count' must be 1 to {MAX_FRAME_COUNT}, got {_short(n)}")
    try:
        rate = float(fps)
    except (TypeError, ValueError, OverflowError):
        rate = math.nan
    if isinstance(fps, bool) or not FPS_RANGE[0] <= rate <= FPS_RANGE[1]:
        raise BundleError(path, f"field 'fps' must be a number from {FPS_RANGE[0]} to {FPS_RANGE[1]}, "
                                f"got {_short(fps)}")


# ----------------------------------------------------------------------------------------
# Reading


def read_bundle(path: os.PathLike | str, load_points: bool = True, load_depth: bool = True) -> Bundle:
    """Read and validate a bundle directory or zip. Raises BundleError naming file and field.

    A zip is extracted beside itself into a new folder (see :func:`extraction_dir`), never
    over the zip's namesake folder. Parts not loaded (``load_points`` / ``load_depth`` False)
    are still checked: every file present, inside the bundle, with arrays of the right shapes
    and types (from their headers, without reading the data).
    """
    path = Path(path)
    if path.is_file():
        if not _is_zip(path):
            raise BundleError(path, "not a bundle folder or a bundle .zip")
        extracted = unzip_bundle(path)
        try:
            return _read_dir(extracted, load_points, load_depth)
        except BaseException:
            # Not a bundle after all: the folder is ours (just made), the user has the zip.
            shutil.rmtree(extracted, ignore_errors=True)
            raise
    return _read_dir(path, load_points, load_depth)


def _is_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def _read_dir(path: Path, load_points: bool, load_depth: bool) -> Bundle:
    try:
        root = path.resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise BundleError(path, f"cannot be resolved ({e})") from None
    if not root.is_dir():
        raise BundleError(path, "no such bundle directory")
    meta_path = _inside(root, "bundle.json", root / "bundle.json")
    meta = _read_json(meta_path, MAX_BUNDLE_JSON_BYTES)
    if meta.get("schema") != SCHEMA:
        raise BundleError(meta_path, f"field 'schema' is {_short(meta.get('schema'))}, expected {SCHEMA!r}")
    version = meta.get("schema_version")
    if not _is_int(version) or version not in SUPPORTED_VERSIONS:
        raise BundleError(meta_path, f"unknown schema_version {_short(version)}; this Parallax reads "
                                     f"{list(SUPPORTED_VERSIONS)}")
    w, h, n = (_field(meta, meta_path, k, int) for k in ("width", "height", "frame_count"))
    fps = _number(meta.get("fps"), meta_path, "field 'fps'") if "fps" in meta else None
    if fps is None:
        raise BundleError(meta_path, "field 'fps' is missing")
    _check_sizes(meta_path, w, h, n, fps)
    task = _field(meta, meta_path, "task", str)
    if task not in TASKS:
        raise BundleError(meta_path, f"field 'task' is {_short(task)}, expected one of {TASKS}")
    parts = _field(meta, meta_path, "parts", dict)
    bundle_id = meta.get("id")
    if bundle_id is None:
        bundle_id = f"path:{root}"
    elif not (isinstance(bundle_id, str) and _ID.fullmatch(bundle_id)):
        raise BundleError(meta_path, f"field 'id' is {_short(bundle_id)}, expected 8 to 64 letters, digits, "
                                     "'-' or '_'")

    b = Bundle(task=task, width=w, height=h, frame_count=n, fps=float(fps),
               engine=_text(meta, meta_path, "engine"), model_id=_text(meta, meta_path, "model_id"),
               created=_text(meta, meta_path, "created"), source=_mapping(meta, meta_path, "source"),
               scores=_mapping(meta, meta_path, "scores"), timings=_mapping(meta, meta_path, "timings"),
               path=root, id=bundle_id)
    where = {k: _part(root, parts, k, meta_path) for k in PART_KEYS}
    if where["frames"]:
        b.frames = _read_frames(root, where["frames"], n, w, h)
    if where["undistorted"]:
        b.undistorted = _read_frames(root, where["undistorted"], n, w, h)
    if where["plots"]:
        b.plots = _read_plots(_folder(root, where["plots"]))
    if where["video"]:
        b.video = root / where["video"]
        if not b.video.is_file():
            raise BundleError(b.video, "video named in bundle.json is missing")
    if where["cameras"]:
        b.cameras = _read_cameras(root / where["cameras"], n, w, h)
    budget = _Budget(MAX_ARRAY_BYTES)
    if where["points"]:
        files = _part_files(root, where["points"], n)
        if load_points:
            b.points = [_read_points(f, i, budget) for i, f in enumerate(files)]
        else:
            for i, f in enumerate(files):
                _points_header(f, i, _Budget(MAX_ARRAY_BYTES))[0].close()
    if where["depth"]:
        files = _part_files(root, where["depth"], n)
        if load_depth:
            b.depth = [_read_depth(f, h, w, budget) for f in files]
        else:
            for f in files:
                _depth_header(f, h, w, _Budget(MAX_ARRAY_BYTES))[0].close()
    return b


def _short(value, limit: int = 60) -> str:
    """A bounded repr for messages: a hostile field may be huge or deeply nested."""
    if isinstance(value, (list, dict)):
        return f"a JSON {'array' if isinstance(value, list) else 'object'}"
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # ValueError: an int too long to print
        return type(value).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _inside(root: Path, rel: str, path: Path) -> Path:
    """``path`` (= root / rel), refused unless it stays inside ``root`` once symlinks resolve."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError) as e:
        raise BundleError(path, f"cannot be resolved ({e})") from None
    if real != root and root not in real.parents:
        raise BundleError(path, f"{rel!r} leads outside the bundle folder; a bundle may only use its own files")
    return path


def _part(root: Path, parts: dict, key: str, meta_path: Path) -> Optional[str]:
    """The relative path of a part from bundle.json, or None when absent; a path that is not
    a plain relative one inside the bundle is refused."""
    rel = parts.get(key)
    if rel is None or rel == "":
        return None
    if not isinstance(rel, str):
        raise BundleError(meta_path, f"field 'parts.{key}' has the wrong type ({type(rel).__name__}), "
                                     "expected a relative path or null")
    pieces = rel.replace("\\", "/").split("/")
    if (len(rel) > 255 or "\0" in rel or "\\" in rel or rel.startswith("/") or ".." in pieces
            or re.match(r"[A-Za-z]:", rel)):
        raise BundleError(meta_path, f"field 'parts.{key}' is {_short(rel)}: parts must be relative paths "
                                     "inside the bundle folder")
    _inside(root, rel, root / rel)
    return rel


def _folder(root: Path, rel: str) -> Path:
    folder = _inside(root, rel, root / rel)
    if not folder.is_dir():
        raise BundleError(folder, "folder named in bundle.json is missing")
    return folder


def _read_json(path: Path, max_bytes: int) -> dict:
    try:
        if not path.is_file():
            raise BundleError(path, "file is missing")
        size = path.stat().st_size
        if size > max_bytes:
            raise BundleError(path, f"is {size} bytes; a bundle's {path.name} may have at most {max_bytes}")
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise BundleError(path, f"cannot be read ({e.strerror or e})") from None
    if len(data) > max_bytes:  # grew since the stat
        raise BundleError(path, f"is larger than {max_bytes} bytes")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, an int of > 4300 digits
        raise BundleError(path, f"not valid JSON ({str(e)[:200]})") from None
    except RecursionError:
        raise BundleError(path, "not valid JSON (nested too deeply)") from None
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


def _text(obj: dict, path: Path, key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise BundleError(path, f"field '{key}' must be text of at most {MAX_TEXT} characters")
    return value


def _mapping(obj: dict, path: Path, key: str) -> dict:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BundleError(path, f"field '{key}' has the wrong type ({type(value).__name__}), expected an object")
    return value


def _number(value, path, where: str) -> float:
    """A JSON number as a float that stays finite in float32 (what Blender stores)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BundleError(path, f"{where} must be a number, got {_short(value)}")
    try:
        x = float(value)
    except OverflowError:
        x = math.inf
    if not (math.isfinite(x) and abs(x) <= FLOAT32_MAX):
        raise BundleError(path, f"{where} is {_short(value)}: not a finite number (float32)")
    return x


def _part_files(root: Path, rel: str, n: int, name: str = ARRAY_NAME) -> list[Path]:
    """The n per-frame files of a part folder, each confined to the bundle."""
    folder = _folder(root, rel)
    files = [folder / name.format(i) for i in range(n)]
    for f in files:
        if os.path.islink(f):  # the folder is known to be inside; only a link can lead out
            _inside(root, f"{rel}/{f.name}", f)
    return files


def _read_frames(root: Path, rel: str, n: int, w: int, h: int) -> list[Path]:
    files = _part_files(root, rel, n, FRAME_NAME)
    for f in files:
        if not f.is_file():
            raise BundleError(f, "frame file is missing")
        # Every frame's header: a middle frame of another size, an empty file or a JPEG
        # named .png would otherwise import without a word and show wrong in Blender.
        size = png_size(f)
        if size != (w, h):
            raise BundleError(f, f"frame is {size[0]}x{size[1]}, bundle.json says {w}x{h}")
    return files


def _read_plots(folder: Path) -> dict:
    """name -> path of each figure; only small PNG files with plain names."""
    files = sorted(folder.iterdir())
    if len(files) > MAX_PLOTS:
        raise BundleError(folder, f"{len(files)} files, a bundle holds at most {MAX_PLOTS} plots")
    plots = {}
    for f in files:
        if not _PLOT_FILE.fullmatch(f.name) or f.is_symlink() or not f.is_file():
            raise BundleError(f, "plots/ may only hold PNG files named like quality.png")
        png_size(f)  # a PNG header, or BundleError
        plots[f.stem] = f
    return plots


def _read_cameras(path: Path, n: int, w: int, h: int) -> list[CameraFrame]:
    obj = _read_json(path, CAMERAS_JSON_BYTES[0] + CAMERAS_JSON_BYTES[1] * n)
    if obj.get("convention") != "opencv_c2w":
        raise BundleError(path, f"field 'convention' is {_short(obj.get('convention'))}, expected 'opencv_c2w'")
    frames = _field(obj, path, "frames", list)
    if len(frames) != n:
        raise BundleError(path, f"field 'frames' has {len(frames)} entries, frame_count is {n}")
    cams = []
    for i, fr in enumerate(frames):
        where = f"frames[{i}]"
        if not isinstance(fr, dict):
            raise BundleError(path, f"{where} is not an object")
        index = fr.get("index")
        if not _is_int(index) or index != i:
            raise BundleError(path, f"{where}.index is {_short(index)}, expected {i}")
        vals = {}
        for k in ("fx", "fy", "cx", "cy"):
            if k not in fr:
                raise BundleError(path, f"{where} needs numeric fx, fy, cx, cy ({k} is missing)")
            vals[k] = _number(fr[k], path, f"{where}.{k}")
        c2w = fr.get("c2w")
        if c2w is not None:
            c2w = _matrix4(c2w, path, f"{where}.c2w")
        dist = fr.get("dist")
        if dist is not None:
            if not (isinstance(dist, list) and len(dist) in (4, 5)):
                raise BundleError(path, f"{where}.dist must be [k1, k2, p1, p2] or [k1, k2, p1, p2, k3]")
            dist = tuple(_number(v, path, f"{where}.dist[{k}]") for k, v in enumerate(dist))
        cam = CameraFrame(index=i, c2w=c2w, dist=dist, **vals)
        _check_camera(cam, path, i)
        cams.append(cam)
    return cams


def _matrix4(rows, path: Path, where: str) -> np.ndarray:
    """A 4x4 float64 matrix from JSON rows, element by element: numpy would turn strings or
    nested lists into numbers or an object array without a word. Finiteness is
    :func:`_check_camera`'s."""
    if not (isinstance(rows, list) and len(rows) == 4 and all(isinstance(r, list) and len(r) == 4 for r in rows)):
        raise BundleError(path, f"{where} is not a numeric 4x4 matrix")
    out = np.empty((4, 4))
    for r, row in enumerate(rows):
        for c, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise BundleError(path, f"{where}[{r}][{c}] must be a number, got {_short(v)}")
            try:
                out[r, c] = float(v)
            except OverflowError:
                out[r, c] = math.inf
    return out


def _check_camera(cam: CameraFrame, path, i: int) -> None:
    where = f"frames[{i}]"
    for k in ("fx", "fy", "cx", "cy"):
        v = getattr(cam, k)
        if not (isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(v) and abs(v) <= FLOAT32_MAX):
            raise BundleError(path, f"{where}.{k} is not a finite number (float32)")
    if cam.fx <= 0 or cam.fy <= 0:
        raise BundleError(path, f"{where} focal lengths must be positive")
    if cam.dist is not None:
        d = np.asarray(cam.dist, dtype=np.float64) if len(cam.dist) in (4, 5) else None
        if d is None or not (np.all(np.isfinite(d)) and np.abs(d).max() <= MAX_DIST):
            raise BundleError(path, f"{where}.dist must be 4 or 5 finite coefficients of at most {MAX_DIST:g}")
    if cam.c2w is None:
        return
    c2w = np.asarray(cam.c2w)
    if c2w.shape != (4, 4) or c2w.dtype.kind not in "fiu":
        raise BundleError(path, f"{where}.c2w has shape {c2w.shape} and dtype {c2w.dtype}, expected (4, 4) numbers")
    c2w = c2w.astype(np.float64)
    if not (np.all(np.isfinite(c2w)) and np.abs(c2w).max() <= FLOAT32_MAX):
        raise BundleError(path, f"{where}.c2w contains NaN or infinity (or a value beyond float32)")
    R = c2w[:3, :3]
    with np.errstate(all="ignore"):
        proper = np.abs(R @ R.T - np.eye(3)).max() <= 1e-4 and np.linalg.det(R) >= 0
    if not proper:
        raise BundleError(path, f"{where}.c2w rotation is not a proper rotation matrix")
    if np.abs(c2w[3] - [0, 0, 0, 1]).max() > 1e-6:
        raise BundleError(path, f"{where}.c2w last row must be [0, 0, 0, 1]")


# -- npz: headers first (bounded), data second ------------------------------------------

class _Budget:
    """Bytes the arrays of one read may still take."""

    def __init__(self, total: int):
        self.total = self.left = total

    def take(self, nbytes: int, path: Path) -> None:
        if nbytes > self.left:
            raise BundleError(path, f"arrays exceed the reader's limit of {self.total / 2**20:.0f} MiB "
                                    "for one bundle")
        self.left -= nbytes


def _npz_open(path: Path) -> zipfile.ZipFile:
    """The npz as a ZipFile, after checking its central directory is small (an npz holds a
    few arrays; a forged directory of millions of entries would cost gigabytes to list)."""
    try:
        if not path.is_file():
            raise BundleError(path, "file is missing")
        f = open(path, "rb")
    except OSError as e:
        raise BundleError(path, f"cannot be read ({e.strerror or e})") from None
    try:
        entries, cd_size = _zip_directory(f)
        if entries > 16 or cd_size > 65536:
            raise BundleError(path, f"an npz of {entries} entries; a bundle's npz holds at most 4 arrays")
        return zipfile.ZipFile(f)
    except BundleError:
        f.close()
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, struct.error) as e:
        f.close()
        raise BundleError(path, f"unreadable npz ({e})") from None


def _npz_headers(path: Path, zf: zipfile.ZipFile, keys: tuple, optional: tuple) -> dict:
    """{key: (shape, dtype, ZipInfo)} from the .npy headers, without reading array data."""
    names = set(zf.namelist())
    missing = [k for k in keys if k + ".npy" not in names]
    if missing:
        raise BundleError(path, f"array(s) {missing} missing")
    out = {}
    for key in keys + tuple(k for k in optional if k + ".npy" in names):
        info = zf.getinfo(key + ".npy")
        try:
            with zf.open(info) as m:
                version = np.lib.format.read_magic(m)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(m)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(m)
                else:
                    raise BundleError(path, f"array '{key}' has .npy format version {version}, expected 1.0 or 2.0")
                header_len = m.tell()
        except BundleError:
            raise
        except Exception as e:  # ValueError (bad header), BadZipFile, zlib.error, EOFError...
            raise BundleError(path, f"array '{key}' has an unreadable header ({str(e)[:200]})") from None
        if any(d < 0 for d in shape):
            raise BundleError(path, f"array '{key}' has shape {shape}")
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
            raise BundleError(path, f"array '{key}' has dtype {dtype}, expected plain numbers")
        nbytes = math.prod(shape) * dtype.itemsize
        if info.file_size < header_len + nbytes:
            raise BundleError(path, f"array '{key}' is truncated ({info.file_size} bytes for shape {shape})")
        out[key] = (shape, dtype, info)
    return out


def _npz_data(path: Path, zf: zipfile.ZipFile, headers: dict) -> dict:
    out = {}
    for key, (_, _, info) in headers.items():
        try:
            with zf.open(info) as m:
                out[key] = np.lib.format.read_array(m, allow_pickle=False)
        except Exception as e:  # BadZipFile (CRC), ValueError (short read), zlib.error...
            raise BundleError(path, f"array '{key}' is unreadable ({str(e)[:200]})") from None
    return out


def _kind(path: Path, key: str, dtype: np.dtype, kinds: str, expected: str, prefix: str = "") -> None:
    if dtype.kind not in kinds:
        raise BundleError(path, f"{prefix}field '{key}' has dtype {dtype}, expected {expected}")


def _points_header(path: Path, i: int, budget: _Budget):
    zf = _npz_open(path)
    try:
        hd = _npz_headers(path, zf, ("xyz", "rgb", "conf"), ("dynamic", "track", "uv"))
    except BaseException:
        zf.close()
        raise
    xyz, rgb, conf = (hd[k][0] for k in ("xyz", "rgb", "conf"))
    pre = f"points[{i}] "
    if len(xyz) != 2 or xyz[1] != 3:
        zf.close()
        raise BundleError(path, f"{pre}field 'xyz' has shape {xyz}, expected (N, 3)")
    n = xyz[0]
    for key, want in (("rgb", (n, 3)), ("conf", (n,)), ("dynamic", (n,)), ("track", (n,)), ("uv", (n, 2))):
        if key in hd and hd[key][0] != want:
            zf.close()
            raise BundleError(path, f"{pre}field '{key}' has shape {hd[key][0]}, expected {want}")
    try:
        _kind(path, "xyz", hd["xyz"][1], "fiu", "float32", pre)
        if hd["rgb"][1].kind != "u" or hd["rgb"][1].itemsize != 1:
            raise BundleError(path, f"{pre}field 'rgb' has dtype {hd['rgb'][1]}, expected uint8")
        _kind(path, "conf", hd["conf"][1], "fiu", "float16", pre)
        if "dynamic" in hd:
            _kind(path, "dynamic", hd["dynamic"][1], "bu", "bool", pre)
        if ("track" in hd) != ("uv" in hd):
            raise BundleError(path, f"{pre}fields 'track' and 'uv' come together")
        if "track" in hd:
            _kind(path, "track", hd["track"][1], "iu", "int64", pre)
            _kind(path, "uv", hd["uv"][1], "fiu", "float32", pre)
        budget.take(sum(math.prod(s) * d.itemsize for s, d, _ in hd.values()), path)
    except BaseException:
        zf.close()
        raise
    return zf, hd


def _read_points(path: Path, i: int, budget: _Budget) -> PointFrame:
    zf, hd = _points_header(path, i, budget)
    with zf:
        z = _npz_data(path, zf, hd)
    _check_points(z["xyz"], z["rgb"], z["conf"], path, i, z.get("dynamic"), z.get("track"), z.get("uv"))
    return PointFrame(z["xyz"].astype(np.float32, copy=False), z["rgb"].astype(np.uint8, copy=False),
                      z["conf"].astype(np.float16, copy=False),
                      None if z.get("dynamic") is None else z["dynamic"].astype(bool, copy=False),
                      None if z.get("track") is None else z["track"].astype(np.int64, copy=False),
                      None if z.get("uv") is None else z["uv"].astype(np.float32, copy=False))


def _check_points(xyz, rgb, conf, path, i: int, dynamic=None, track=None, uv=None) -> None:
    xyz, rgb, conf = np.asarray(xyz), np.asarray(rgb), np.asarray(conf)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise BundleError(path, f"points[{i}] field 'xyz' has shape {xyz.shape}, expected (N, 3)")
    n = xyz.shape[0]
    if rgb.shape != (n, 3):
        raise BundleError(path, f"points[{i}] field 'rgb' has shape {rgb.shape}, expected ({n}, 3)")
    if conf.shape != (n,):
        raise BundleError(path, f"points[{i}] field 'conf' has shape {conf.shape}, expected ({n},)")
    if rgb.dtype != np.uint8:
        raise BundleError(path, f"points[{i}] field 'rgb' has dtype {rgb.dtype}, expected uint8")
    if xyz.dtype.kind not in "fiu" or conf.dtype.kind not in "fiu":
        raise BundleError(path, f"points[{i}] fields 'xyz' and 'conf' must hold numbers "
                                f"(dtypes {xyz.dtype}, {conf.dtype})")
    if dynamic is not None:
        dynamic = np.asarray(dynamic)
        if dynamic.shape != (n,) or dynamic.dtype not in (np.bool_, np.uint8):
            raise BundleError(path, f"points[{i}] field 'dynamic' has shape {dynamic.shape} and dtype "
                                    f"{dynamic.dtype}, expected ({n},) bool")
    if (track is None) != (uv is None):
        raise BundleError(path, f"points[{i}] fields 'track' and 'uv' come together")
    if track is not None:
        track, uv = np.asarray(track), np.asarray(uv)
        if track.shape != (n,) or track.dtype.kind not in "iu":
            raise BundleError(path, f"points[{i}] field 'track' has shape {track.shape} and dtype {track.dtype}, "
                                    f"expected ({n},) int64")
        if uv.shape != (n, 2) or uv.dtype.kind not in "fiu" or not np.isfinite(uv.astype(np.float64)).all():
            raise BundleError(path, f"points[{i}] field 'uv' must be ({n}, 2) finite pixel coordinates")
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(xyz.astype(np.float32, copy=False)).all()
    if not finite:
        raise BundleError(path, f"points[{i}] field 'xyz' contains NaN or infinity (or a value beyond float32)")


def _depth_header(path: Path, h: int, w: int, budget: _Budget):
    zf = _npz_open(path)
    try:
        hd = _npz_headers(path, zf, ("depth", "conf"), ())
        for k in ("depth", "conf"):
            if hd[k][0] != (h, w):
                raise BundleError(path, f"field '{k}' has shape {hd[k][0]}, expected ({h}, {w})")
            _kind(path, k, hd[k][1], "fiu", "float32" if k == "depth" else "float16")
        budget.take(sum(math.prod(s) * d.itemsize for s, d, _ in hd.values()), path)
    except BaseException:
        zf.close()
        raise
    return zf, hd


def _read_depth(path: Path, h: int, w: int, budget: _Budget) -> DepthFrame:
    zf, hd = _depth_header(path, h, w, budget)
    with zf:
        z = _npz_data(path, zf, hd)
    return DepthFrame(z["depth"].astype(np.float32, copy=False), z["conf"].astype(np.float16, copy=False))


# ----------------------------------------------------------------------------------------
# Zip for transfer


def _zip_directory(f) -> tuple[int, int]:
    """(entries, central directory bytes) from a zip's end records, read before zipfile
    lists (and allocates) the whole directory. Raises BadZipFile when there is none."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    tail_len = min(size, 22 + 65535)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise zipfile.BadZipFile("no end of central directory record")
    entries, cd_size = struct.unpack("<HI", tail[at + 10:at + 16])
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:  # Zip64: the real counts are in its own record
        loc = size - tail_len + at - 20
        if loc < 0:
            raise zipfile.BadZipFile("Zip64 locator missing")
        f.seek(loc)
        locator = f.read(20)
        if locator[:4] != b"PK\x06\x07":
            raise zipfile.BadZipFile("Zip64 locator missing")
        (offset,) = struct.unpack("<Q", locator[8:16])
        f.seek(offset)
        record = f.read(56)
        if len(record) < 56 or record[:4] != b"PK\x06\x06":
            raise zipfile.BadZipFile("Zip64 end record missing")
        entries, cd_size = struct.unpack("<QQ", record[32:48])
    f.seek(0)
    return entries, cd_size


def zip_bundle(bundle_dir: os.PathLike | str, zip_path: os.PathLike | str) -> Path:
    """Zip a bundle directory (atomically: written beside, then renamed).

    An existing ``zip_path`` is replaced only when it is a bundle zip (it has a bundle.json
    at its root): a zip of the user's that happens to have that name is left alone.
    """
    bundle_dir, zip_path = Path(bundle_dir), Path(zip_path)
    check_zip_replaceable(zip_path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{zip_path.name}.", suffix=".partial", dir=zip_path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for f in sorted(bundle_dir.rglob("*")):
                if f.is_file() and f.name != EXTRACTION_MARKER:
                    zf.write(f, f.relative_to(bundle_dir).as_posix())
        os.replace(tmp, zip_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return zip_path


def check_zip_replaceable(zip_path: os.PathLike | str) -> None:
    """Raise FileExistsError when ``zip_path`` exists and is not a bundle zip."""
    zip_path = Path(zip_path)
    if os.path.lexists(zip_path) and not _is_bundle_zip(zip_path):
        raise FileExistsError(f"{zip_path}: exists and is not a Parallax bundle zip; Parallax does not replace it")


def _is_bundle_zip(path: Path) -> bool:
    try:
        if path.is_symlink() or not path.is_file():
            return False
        with open(path, "rb") as f:
            entries, cd_size = _zip_directory(f)
            if entries > MAX_ZIP_ENTRIES or cd_size > 512 * MAX_ZIP_ENTRIES:
                return False
            with zipfile.ZipFile(f) as zf:
                return "bundle.json" in zf.namelist()
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, struct.error):
        return False


def extraction_dir(zip_path: os.PathLike | str) -> Path:
    """Where :func:`read_bundle` extracts a zip: ``<stem>.parallax-<key>`` beside it, named
    after this zip file (its path, size and time), so it never is the zip's namesake folder
    and re-reading the same zip reuses it. Beside a read-only zip: in the temp folder."""
    zip_path = Path(zip_path).resolve()
    st = zip_path.stat()
    key = hashlib.sha256(f"{zip_path}\0{st.st_size}\0{st.st_mtime_ns}".encode("utf-8", "surrogateescape"))
    name = f"{zip_path.stem[:80]}.parallax-{key.hexdigest()[:10]}"
    if os.access(zip_path.parent, os.W_OK | os.X_OK):
        return zip_path.parent / name
    return Path(tempfile.gettempdir()) / "parallax-bundles" / "extracted" / name


def unzip_bundle(zip_path: os.PathLike | str, out_dir: Optional[os.PathLike | str] = None) -> Path:
    """Extract a bundle zip into ``out_dir`` (default: :func:`extraction_dir`) and return it.

    The zip is checked before anything is written: a bundle.json at its root, at most
    MAX_ZIP_ENTRIES members, none outside the folder, at most MAX_UNZIPPED_BYTES unpacked and
    at most MAX_ZIP_RATIO times the zip's size (a zip bomb is refused, not inflated), and
    room on the disk. ``out_dir`` may exist only as an empty folder or an earlier
    extraction; it gets the EXTRACTION_MARKER. Raises BundleError (or FileExistsError).
    """
    zip_path = Path(zip_path)
    try:
        out_dir = Path(out_dir) if out_dir is not None else extraction_dir(zip_path)
        f = open(zip_path, "rb")
    except OSError as e:
        raise BundleError(zip_path, f"cannot be read ({e.strerror or e})") from None
    with f:
        try:
            entries, cd_size = _zip_directory(f)
            zip_size = f.seek(0, os.SEEK_END)
            f.seek(0)
            if entries > MAX_ZIP_ENTRIES or cd_size > 512 * MAX_ZIP_ENTRIES:
                raise BundleError(zip_path, f"has {entries} members; a bundle zip has at most {MAX_ZIP_ENTRIES}")
            zf = zipfile.ZipFile(f)
        except BundleError:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, struct.error, OSError) as e:
            raise BundleError(zip_path, f"not a valid zip ({e})") from None
        with zf:
            members = _check_members(zip_path, zf.infolist(), zip_size)
            check_replaceable(out_dir, is_parallax_extraction, "a Parallax extraction")
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            total = sum(i.file_size for i in members)
            free = shutil.disk_usage(out_dir.parent).free
            if total > free:
                raise BundleError(zip_path, f"unpacks to {total / 1e6:.0f} MB; only {free / 1e6:.0f} MB are free "
                                            f"in {out_dir.parent}")
            tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
            try:
                for info in members:
                    _extract_member(zip_path, zf, info, tmp)
                (tmp / EXTRACTION_MARKER).write_text(json.dumps({
                    "parallax_extraction": 1, "zip": str(zip_path), "zip_bytes": zip_size,
                    "extracted": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}))
                _replace_dir(tmp, out_dir, is_parallax_extraction, "a Parallax extraction")
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    return out_dir


def _check_members(zip_path: Path, infos: list, zip_size: int) -> list:
    """The members to extract, after refusing a zip that is not a safe bundle zip."""
    seen, total = set(), 0
    for info in infos:
        name = info.filename
        pieces = name.split("/")
        if (not name or name.startswith("/") or "\\" in name or "\0" in name or ".." in pieces
                or re.match(r"[A-Za-z]:", name) or len(name) > 1024):
            raise BundleError(zip_path, f"member {_short(name)} would extract outside the bundle")
        if pieces[0] == EXTRACTION_MARKER:
            raise BundleError(zip_path, f"member {_short(name)} is a name Parallax reserves")
        key = name.rstrip("/")
        if key in seen:
            raise BundleError(zip_path, f"member {_short(name)} appears twice")
        seen.add(key)
        total += info.file_size
    if "bundle.json" not in seen:
        raise BundleError(zip_path, "not a Parallax bundle zip (no bundle.json at its root)")
    if total > MAX_UNZIPPED_BYTES:
        raise BundleError(zip_path, f"unpacks to {total / 2**30:.1f} GiB; a bundle zip may unpack to at most "
                                    f"{MAX_UNZIPPED_BYTES / 2**30:.0f} GiB")
    if total > MAX_ZIP_RATIO * zip_size + ZIP_RATIO_SLACK:
        raise BundleError(zip_path, f"unpacks to {total} bytes from {zip_size} ({total / max(zip_size, 1):.0f}x): "
                                    "refused as a zip bomb")
    return [i for i in infos if not i.is_dir()]


def _extract_member(zip_path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, root: Path) -> None:
    """Copy one member, never more bytes than its header declared (the checked total)."""
    target = root.joinpath(*info.filename.split("/"))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        left = info.file_size
        with zf.open(info) as src, open(target, "xb") as dst:
            while True:
                chunk = src.read(min(1 << 20, left + 1))
                if not chunk:
                    break
                left -= len(chunk)
                if left < 0:
                    raise BundleError(zip_path, f"member {_short(info.filename)} is larger than its header says")
                dst.write(chunk)
    except BundleError:
        raise
    except (FileExistsError, NotADirectoryError, IsADirectoryError):  # "a" as a file and as a folder
        raise BundleError(zip_path, f"member {_short(info.filename)} clashes with another member") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
        raise BundleError(zip_path, f"member {_short(info.filename)} is unreadable ({e})") from None


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
