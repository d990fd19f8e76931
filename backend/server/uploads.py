"""Receiving uploads and validating them while the client still waits for the answer.

An upload is streamed to ``<data>/uploads/.<id>.partial/`` with a byte counter (so an
oversized file is refused without filling the disk), probed with PyAV (videos) or Pillow
(images) to check it decodes and fits the limits, then renamed to ``<data>/uploads/<id>/``.
The stored file is always called ``input<ext>``: the client's file name is kept only as
metadata, so no name can reach the file system. Folders are 0700 and files 0600 (storage.py).

Uploads outlive the server process: a restarted server finds them again (``upload.json``), so
the jobs a crash interrupted can be submitted again without uploading anything.
"""

from __future__ import annotations

import json
import secrets
import shutil
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import AsyncIterator, Optional

from . import storage
from .config import Limits
from .errors import ApiError

VIDEO_EXTS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
_PIL_FORMATS = ["PNG", "JPEG", "WEBP", "BMP", "TIFF"]
META_NAME = "upload.json"


def new_id() -> str:
    return secrets.token_hex(8)


def is_id(text: str) -> bool:
    """Ids are 16 lower-case hex digits; anything else never touches the file system."""
    return len(text) == 16 and all(c in "0123456789abcdef" for c in text)


@dataclass
class UploadInfo:
    id: str
    filename: str
    kind: str  # "video" | "image"
    bytes: int
    width: int
    height: int
    frames: int
    fps: Optional[float]
    created: float
    path: Path = field(repr=False, default=None)
    # The user's own name for the file (the client sends a safe ``filename`` for names the
    # server refuses, such as "take 10:30.mp4"): metadata for messages, never a path.
    display_name: Optional[str] = None

    def to_json(self) -> dict:
        out = asdict(self)
        out.pop("path")
        return out


@contextmanager
def _disk_full_is_507(shown: str):
    """A full or read-only disk while storing an upload is the server's condition (507), named
    with the user's file, never the server's path; other OSErrors stay bugs."""
    try:
        yield
    except OSError as e:
        problem = storage.disk_problem(e)
        if problem is None:
            raise
        raise ApiError(507, storage.disk_message(problem, f"{shown!r} could not be stored")) from None


def check_display_name(name: Optional[str]) -> Optional[str]:
    """The optional display name: 1-255 bytes of UTF-8 without control characters, or None."""
    if name is None or name == "":
        return None
    if len(name.encode("utf-8", "surrogatepass")) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ApiError(400, "display_name must be 1-255 bytes of text without control characters")
    return name


def check_filename(name: str) -> tuple[str, str]:
    """Return (extension, kind) of an acceptable upload name, or raise a 4xx ApiError."""
    if not name or len(name.encode("utf-8", "replace")) > 255:
        raise ApiError(400, "the file name must be 1 to 255 bytes long")
    bad = [c for c in name if c in "/\\:" or ord(c) < 32 or ord(c) == 127]
    if bad or name.startswith(".") or ".." in name:
        raise ApiError(400, f"file name {name!r} is not allowed: send a plain file name "
                            "without folders, '..', ':' or control characters (e.g. 'clip.mp4')")
    ext = Path(name).suffix.lower()
    if ext in VIDEO_EXTS:
        return ext, "video"
    if ext in IMAGE_EXTS:
        return ext, "image"
    raise ApiError(415, f"file type {ext or '(none)'!r} of {name!r} is not supported: send a video "
                        f"({', '.join(VIDEO_EXTS)}) or an image ({', '.join(IMAGE_EXTS)})")


def _check_size(name: str, w: int, h: int, limits: Limits) -> None:
    if w > limits.max_side or h > limits.max_side:
        raise ApiError(422, f"{name!r} is {w}x{h} pixels; this server accepts at most "
                            f"{limits.max_side} pixels on a side (downscale it first)")
    if w <= 0 or h <= 0:
        raise ApiError(422, f"{name!r} has no valid frame size ({w}x{h}); the file looks damaged")


def probe_video(path: Path, name: str, limits: Limits) -> dict:
    """Check that a video decodes, is complete and fits the limits; return its size and rate.

    Packets are only demuxed (cheap) to count frames and detect truncation; the first frame
    is decoded to prove the codec works.
    """
    import av

    try:
        container = av.open(str(path))
    except Exception as e:  # av.error.* (InvalidDataError, EOFError...), OSError
        raise ApiError(422, f"{name!r} is not a readable video ({_reason(e, path)}); "
                            "is it really a video file, and was it copied completely?") from None
    with container:
        if not container.streams.video:
            raise ApiError(422, f"{name!r} contains no video stream")
        stream = container.streams.video[0]
        declared = int(stream.frames or 0)
        if declared > limits.max_frames:
            raise ApiError(422, f"{name!r} has {declared} frames; this server accepts at most "
                                f"{limits.max_frames} per clip (trim it or raise --max-frames)")
        width, height = stream.codec_context.width, stream.codec_context.height
        if width and height:
            _check_size(name, width, height, limits)
        count, first = 0, None
        try:
            for packet in container.demux(stream):
                if not packet.size:  # the flush packet at the end
                    continue
                count += 1
                if count > limits.max_frames:
                    raise ApiError(422, f"{name!r} has more than {limits.max_frames} frames; this "
                                        "server accepts no more per clip (trim it or raise --max-frames)")
                if first is None:
                    frames = packet.decode()
                    first = frames[0] if frames else None
        except ApiError:
            raise
        except Exception as e:
            raise ApiError(422, f"{name!r} is damaged after {count} frames ({_reason(e, path)})") from None
        if declared and count < declared:
            raise ApiError(422, f"{name!r} is truncated: only {count} of its {declared} frames are "
                                "in the file (was the copy interrupted?)")
        if count < limits.min_video_frames:
            raise ApiError(422, f"{name!r} has {count} frame(s); a clip needs at least "
                                f"{limits.min_video_frames} (send a single picture as an image file)")
        if first is None:
            try:  # codecs with delay (B-frames) emit their first picture only when flushed
                frames = stream.codec_context.decode(None)
                first = frames[0] if frames else None
            except Exception:
                first = None
        if first is None:
            raise ApiError(422, f"{name!r}: no frame of the video could be decoded")
        _check_size(name, first.width, first.height, limits)
        rate = stream.average_rate or stream.guessed_rate
        return {"width": first.width, "height": first.height, "frames": count,
                "fps": float(rate) if rate else None}


def probe_image(path: Path, name: str, limits: Limits) -> dict:
    """Check that an image decodes fully and fits the limits (size is checked before decoding)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=_PIL_FORMATS) as im:
                w, h = im.size
                _check_size(name, w, h, limits)
                im.load()
    except ApiError:
        raise
    except Image.DecompressionBombError:
        raise ApiError(422, f"{name!r} is far larger than {limits.max_side} pixels on a side; "
                            "downscale it first") from None
    except Exception as e:  # UnidentifiedImageError, OSError (truncated), SyntaxError...
        raise ApiError(422, f"{name!r} is not a readable image ({_reason(e, path)})") from None
    return {"width": w, "height": h, "frames": 1, "fps": None}


def _reason(e: Exception, path: Optional[Path] = None) -> str:
    text = str(e).strip() or type(e).__name__
    if path is not None:  # FFmpeg names the file: the server's paths are none of the client's business
        text = text.replace(f": '{path}'", "").replace(str(path), "the file")
    return text if len(text) < 200 else text[:200] + "..."


class UploadStore:
    """Uploads of this server process, by id. Thread-safe."""

    def __init__(self, root: Path, limits: Limits):
        self.root = storage.private_dir(Path(root))
        self.limits = limits
        self._items: dict[str, UploadInfo] = {}
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        """The uploads a previous server process left (complete ones: their metadata is
        written last, just before the rename that publishes them)."""
        for d in self.root.iterdir():
            if not is_id(d.name) or d.is_symlink() or not d.is_dir():
                continue
            try:
                meta = json.loads((d / META_NAME).read_text())
                files = [f for f in d.iterdir() if f.name.startswith("input.") and f.is_file()]
                info = UploadInfo(**{k: meta[k] for k in ("id", "filename", "kind", "bytes", "width", "height",
                                                          "frames", "fps", "created")}, path=files[0],
                                  display_name=meta.get("display_name"))
            except (OSError, ValueError, KeyError, TypeError, IndexError):
                continue  # not an upload of ours: left for the retention sweep
            if info.id == d.name and info.kind in ("video", "image"):
                self._items[info.id] = info

    async def receive(self, filename: str, chunks: AsyncIterator[bytes],
                      declared_length: Optional[int], display_name: Optional[str] = None) -> UploadInfo:
        from starlette.concurrency import run_in_threadpool

        ext, kind = check_filename(filename)
        display_name = check_display_name(display_name)
        shown = display_name or filename  # messages name the user's own file
        limit = self.limits.max_upload_bytes
        if declared_length is not None and declared_length > limit:
            raise ApiError(413, _too_big(shown, declared_length, limit))
        uid = new_id()
        partial = self.root / f".{uid}.partial"
        target = partial / f"input{ext}"
        size = 0
        try:
            with _disk_full_is_507(shown):
                partial.mkdir(mode=storage.DIR_MODE)
                with storage.open_private(target) as f:
                    async for chunk in chunks:
                        size += len(chunk)
                        if size > limit:
                            raise ApiError(413, _too_big(shown, size, limit))
                        f.write(chunk)
            if size == 0:
                raise ApiError(422, f"{shown!r} is empty (0 bytes)")
            probe = probe_video if kind == "video" else probe_image
            facts = await run_in_threadpool(probe, target, shown, self.limits)
            info = UploadInfo(id=uid, filename=filename, kind=kind, bytes=size,
                              created=time.time(), display_name=display_name, **facts)
            final = self.root / uid
            with _disk_full_is_507(shown):
                storage.write_private(partial / META_NAME, json.dumps(info.to_json()))
                partial.rename(final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        info.path = final / f"input{ext}"
        with self._lock:
            self._items[uid] = info
        return info

    def get(self, uid: str) -> Optional[UploadInfo]:
        with self._lock:
            return self._items.get(uid)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._items.pop(uid, None)

    def count(self) -> int:
        with self._lock:
            return len(self._items)


def _too_big(name: str, size: int, limit: int) -> str:
    # MiB, as --max-upload-mb counts (it said "MB" and divided by 10^6: a 1 MiB limit read "1 MB"
    # and a 1.5 MiB file "1.6 MB").
    return (f"{name!r} is larger than this server's upload limit of {_mib(limit)} MiB "
            f"({'at least ' if size > limit else ''}{_mib(size)} MiB); raise --max-upload-mb "
            "or send a shorter clip")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f}".removesuffix(".0")
