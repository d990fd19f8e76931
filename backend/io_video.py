"""Read a clip into uint8 RGB frames: a video file (PyAV), a folder of images, or a list of images.

Every engine and the service take their input through :func:`read_frames`, so the limits
(frame count, resolution, memory) and the error messages live in one place. Errors are
:class:`VideoError` with a one-line message that names the input and says what is wrong,
ready to show to a user.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Beyond these the input is almost certainly a mistake (or would exhaust memory), not a shot.
DEFAULT_MAX_SIDE = 4096
DEFAULT_MAX_FRAMES = 2000
DEFAULT_MAX_BYTES = 8 * 1024 ** 3

Source = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]


class VideoError(ValueError):
    """The input cannot be read as a clip; the message is meant for the user."""


@dataclass
class Clip:
    """Decoded frames (H, W, 3) uint8, their indices in the source, and the frame rate."""

    frames: list
    fps: float
    source: str
    indices: list = field(default_factory=list)

    @property
    def height(self) -> int:
        return self.frames[0].shape[0]

    @property
    def width(self) -> int:
        return self.frames[0].shape[1]


def read_frames(source: Source, *, start: int = 0, stride: int = 1, max_frames: Optional[int] = None,
                min_frames: int = 1, max_side: int = DEFAULT_MAX_SIDE, max_total_frames: int = DEFAULT_MAX_FRAMES,
                max_bytes: int = DEFAULT_MAX_BYTES) -> Clip:
    """Decode ``source`` into a :class:`Clip`.

    ``source`` is a video file, a folder of images (sorted by the numbers in their names), or a
    list of image paths. Frames ``start, start + stride, ...`` are kept, at most ``max_frames``.
    Raises :class:`VideoError` when the input is missing, of the wrong type, corrupt, has fewer
    than ``min_frames`` frames, frames of different sizes, or exceeds the limits (a side over
    ``max_side`` pixels, more than ``max_total_frames`` kept frames, more than ``max_bytes``).
    """
    if stride < 1 or start < 0:
        raise VideoError(f"stride must be >= 1 and start >= 0 (got stride {stride}, start {start})")
    if max_frames is not None and max_frames < 1:
        raise VideoError(f"max_frames must be >= 1 (got {max_frames})")
    limit = max_total_frames if max_frames is None else min(max_frames, max_total_frames)
    limits = dict(max_side=max_side, max_bytes=max_bytes)

    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise VideoError(f"{path}: no such file or folder")
        if path.is_dir():
            files = _image_files(path)
            clip = _read_images(files[start::stride], str(path), start, stride, limit, max_frames, **limits)
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            clip = _read_images([path][start::stride], str(path), start, stride, limit, max_frames, **limits)
        else:
            clip = _read_video(path, start, stride, limit, max_frames, **limits)
    else:
        files = [Path(p) for p in source]
        if not files:
            raise VideoError("the list of images is empty")
        clip = _read_images(files[start::stride], f"{len(files)} images", start, stride, limit, max_frames,
                            **limits)

    if len(clip.frames) < min_frames:
        got = len(clip.frames)
        raise VideoError(f"{clip.source}: too few frames: got {got} frame{'s' * (got != 1)}"
                         f"{f' (start {start}, stride {stride})' if (start or stride > 1) else ''}, "
                         f"need at least {min_frames}")
    return clip


def as_frames(frames: Iterable) -> list:
    """Validate in-memory frames: a list (or array) of (H, W, 3) uint8 images of one size."""
    out = [np.asarray(f) for f in frames]
    if not out:
        raise VideoError("no frames given")
    for i, f in enumerate(out):
        if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
            raise VideoError(f"frame {i} must be an (H, W, 3) uint8 array, got {f.dtype} {f.shape}")
        if f.shape != out[0].shape:
            raise VideoError(f"frame {i} is {f.shape[1]}x{f.shape[0]}, frame 0 is {out[0].shape[1]}x{out[0].shape[0]}")
    return [np.ascontiguousarray(f) for f in out]


def load_clip(frames, *, start: int = 0, stride: int = 1, max_frames: Optional[int] = None) -> Clip:
    """Any engine's input as a :class:`Clip`: a video or image-folder path, a list of image
    paths (both read by :func:`read_frames`), or in-memory (H, W, 3) uint8 frames (an array or a
    list; their fps is unknown, recorded as 24). Frames ``start, start + stride, ...``, at most
    ``max_frames``; ``indices`` are their positions in the input."""
    if isinstance(frames, (str, os.PathLike)) or (isinstance(frames, (list, tuple)) and len(frames)
                                                 and isinstance(frames[0], (str, os.PathLike))):
        return read_frames(frames, start=start, stride=stride, max_frames=max_frames)
    if stride < 1 or start < 0:
        raise VideoError(f"stride must be >= 1 and start >= 0 (got stride {stride}, start {start})")
    if max_frames is not None and max_frames < 1:
        raise VideoError(f"max_frames must be >= 1 (got {max_frames})")
    out = as_frames(frames)
    indices = list(range(len(out)))[start::stride][:max_frames]
    return Clip(frames=[out[i] for i in indices], fps=24.0, source="frames", indices=indices)


# A clip a camera solve can say something about. Below these there is nothing to solve, and an
# engine that answers anyway invents cameras: all-black frames gave "solved 8/8 frames" with
# 7 deg of rotation from the unified model, and two 1x1 images finished "done".
MIN_SIDE = 32  # px: the unified model's frames are 64 px; SIFT finds nothing useful below this
MIN_TEXTURE = 1.0  # mean |intensity gradient| in grey levels; a one-colour clip has 0
MIN_CHANGE = 0.5  # mean |frame - first frame| in grey levels, over the most different frame


def check_solvable(clip: Clip, min_frames: int = 2, require_change: bool = True) -> None:
    """Raise :class:`VideoError` naming the input when ``clip`` is too short, too small, has no
    texture, or (``require_change``) does not change (a still image repeated: no camera motion
    to solve; a 4D reconstruction still has depth to give there)."""
    n = len(clip.frames)
    if n < min_frames:
        raise VideoError(f"{clip.source}: too few frames: got {n}, need at least {min_frames}")
    if min(clip.height, clip.width) < MIN_SIDE:
        raise VideoError(f"{clip.source}: frames of {clip.width}x{clip.height} px are too small to solve "
                         f"(need at least {MIN_SIDE} px on each side)")
    sample = clip.frames[:: max(1, n // 16)]  # enough frames to judge, cheap on long clips
    grey = [f.astype(np.float32).mean(-1) for f in sample]
    texture = float(np.mean([np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean() for g in grey]))
    if texture < MIN_TEXTURE:
        raise VideoError(f"{clip.source}: the frames have no texture (one flat colour): there is nothing to "
                         "match or to estimate depth from")
    change = max(float(np.abs(g - grey[0]).mean()) for g in grey[1:] + [grey[0]])
    if require_change and n > 1 and change < MIN_CHANGE:
        raise VideoError(f"{clip.source}: the frames do not change (the same image repeated): there is no "
                         "camera motion to solve")


def still_frames(frames: Sequence[np.ndarray], tolerance: float = MIN_CHANGE) -> list[int]:
    """Indices of the frames that repeat the frame before them: a freeze frame, a duplicated
    frame from a frame-rate conversion, or a camera that stopped. "Repeat" means a mean
    |difference| under ``tolerance`` grey levels (on every second pixel: a still frame differs
    nowhere, a moving one almost everywhere).

    A solver cannot see motion there; COLMAP registers such frames exactly at the pose of the
    frame they repeat (measured: 20 copies of one frame in a 36-frame orbit, pose difference
    1e-16). The list goes into the bundle so that the user knows why the camera holds still."""
    out, previous = [], None
    for i, frame in enumerate(frames):
        grey = np.asarray(frame)[::2, ::2].astype(np.float32).mean(-1)
        if previous is not None and float(np.abs(grey - previous).mean()) < tolerance:
            out.append(i)
        previous = grey
    return out


# ----------------------------------------------------------------------------------------


def _natural_key(path: Path):
    # "frame2.png" before "frame10.png"
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _image_files(folder: Path) -> list[Path]:
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                    and not p.name.startswith(".")), key=_natural_key)
    if not files:
        raise VideoError(f"{folder}: the folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def _check_size(where: str, w: int, h: int, max_side: int) -> None:
    if w <= 0 or h <= 0:
        raise VideoError(f"{where}: the frames have no size ({w}x{h})")
    if max(w, h) > max_side:
        raise VideoError(f"{where}: frames are {w}x{h}, larger than the limit of {max_side} pixels a side; "
                         f"downscale the clip first")


def _check_budget(where: str, count: int, w: int, h: int, max_bytes: int) -> None:
    if count * w * h * 3 > max_bytes:
        raise VideoError(f"{where}: {count} frames of {w}x{h} need more than {max_bytes / 1024 ** 3:.1f} GiB; "
                         f"use fewer frames (max_frames / stride) or a smaller resolution")


def _read_images(files: list[Path], where: str, start: int, stride: int, limit: int, max_frames, *,
                 max_side: int, max_bytes: int) -> Clip:
    from PIL import Image, UnidentifiedImageError

    if max_frames is None and len(files) > limit:
        raise VideoError(f"{where}: {len(files)} frames exceed the limit of {limit}; pass max_frames or a stride")
    files = files[:limit]
    frames = []
    for f in files:
        try:
            with Image.open(f) as im:
                _check_size(str(f), im.width, im.height, max_side)
                frame = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            if isinstance(e, VideoError):
                raise
            raise VideoError(f"{f}: not a readable image ({type(e).__name__})") from None
        if frames and frame.shape != frames[0].shape:
            raise VideoError(f"{f}: image is {frame.shape[1]}x{frame.shape[0]}, the first is "
                             f"{frames[0].shape[1]}x{frames[0].shape[0]}; all frames must have one size")
        if not frames:
            _check_budget(where, len(files), frame.shape[1], frame.shape[0], max_bytes)
        frames.append(frame)
    return Clip(frames=frames, fps=24.0, source=where, indices=[start + k * stride for k in range(len(frames))])


def _read_video(path: Path, start: int, stride: int, limit: int, max_frames, *, max_side: int,
                max_bytes: int) -> Clip:
    import av

    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise VideoError(f"{path}: not a video or image folder ({_av_reason(e)})") from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        w, h = stream.codec_context.width, stream.codec_context.height
        _check_size(str(path), w, h, max_side)
        fps = float(stream.average_rate or stream.guessed_rate or 24.0)
        declared = stream.frames  # 0 when the container does not say
        if max_frames is None and declared and (declared - start + stride - 1) // stride > limit:
            raise VideoError(f"{path}: {declared} frames exceed the limit of {limit}; pass max_frames or a stride")
        if declared:  # fail before decoding when the container states its length
            _check_budget(str(path), min(limit, max(1, (declared - start + stride - 1) // stride)), w, h, max_bytes)
        frames, indices = [], []
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i < start or (i - start) % stride:
                    continue
                if len(frames) == limit:
                    if max_frames is None:  # the container under-declared its length
                        raise VideoError(f"{path}: more than {limit} frames; pass max_frames or a stride")
                    break
                rgb = frame.to_ndarray(format="rgb24")
                if rgb.shape[:2] != (h, w):  # resolution change mid-stream: keep one size
                    frame = frame.reformat(width=w, height=h)
                    rgb = frame.to_ndarray(format="rgb24")
                frames.append(rgb)
                indices.append(i)
                _check_budget(str(path), len(frames), w, h, max_bytes)
        except av.FFmpegError as e:
            if not frames:
                raise VideoError(f"{path}: the video is corrupt ({_av_reason(e)})") from None
            # A damaged tail: keep what decoded, as players do.
    if not frames and start == 0:
        raise VideoError(f"{path}: the video holds no decodable frames")
    return Clip(frames=frames, fps=fps, source=str(path), indices=indices)


def _av_reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e).splitlines()[0][:120]
