"""Local files a job sends: the frames of a folder, and the names they travel under.

No bpy: the add-on's operators and scripts outside Blender list frame folders the same way.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MAX_NAME = 200  # characters of a sent name; the server takes up to 255 bytes


def list_frames(folder: os.PathLike | str) -> list[Path]:
    """The image files of a frame folder, in natural order (``f_2`` before ``f_10``).

    Hidden files are left out: macOS writes an AppleDouble ``._name.png`` beside every frame on
    non-Mac volumes (and ``.DS_Store``), which look like images by their extension but are not.
    Folders named like images are left out too.
    """
    folder = Path(folder)
    frames = [p for p in folder.iterdir()
              if not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTS and p.is_file()]
    return sorted(frames, key=_natural_key)


def _natural_key(path: Path) -> tuple:
    # re.split with a group puts text at even and digits at odd positions: comparable item by item.
    parts = re.split(r"(\d+)", path.name)
    return tuple(int(t) if i % 2 else t.lower() for i, t in enumerate(parts)), path.name


def safe_upload_name(name: str) -> str:
    """A name the service accepts for the file ``name`` (its upload rules refuse ``:``, ``..``,
    a leading dot, folders and control characters), keeping the extension it goes by.

    ``take 10:30.mp4`` -> ``take_10_30.mp4``, ``shot..v2.mp4`` -> ``shot.v2.mp4``,
    ``.hidden.mp4`` -> ``hidden.mp4``. The original name travels as the display name.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    suffix = PurePosixPath(base).suffix  # "" for ".mp4" alone: that is a hidden file's name
    stem = base[: len(base) - len(suffix)] if suffix else base
    ext = re.sub(r"[^A-Za-z0-9]", "", suffix[1:])
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)
    stem = re.sub(r"\.{2,}", ".", stem)[: MAX_NAME - len(ext) - 1].strip(".") or "input"
    return f"{stem}.{ext}" if ext else stem
