"""Photo textures for the torch renderer: the texture files of a folder, decoding, and the
per-batch atlas of mip levels (cached per device) that ``shading.py`` samples.

A batch's photos are decoded on the CPU (:func:`batch_photos`, work a background thread can do
ahead of the GPU) and moved to the device once (:func:`texture_atlas`).
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np
import torch

from .materials import list_textures
from .packing import spec_materials

TEXTURE_SIZE = 256
MIP_LEVELS = 5

_ATLAS_CACHE: dict = {}


@functools.lru_cache(maxsize=256)  # decoding and resizing a photo costs ~10 ms; a folder is reused
def _load_texture(path: str) -> np.ndarray:
    from PIL import Image  # only needed with photo textures

    with Image.open(path) as im:
        im = im.convert("RGB")
        s = min(im.size)  # square centre crop; random crops happen in UV space
        left, top = (im.size[0] - s) // 2, (im.size[1] - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((TEXTURE_SIZE, TEXTURE_SIZE), Image.BILINEAR)
        out = np.asarray(im, dtype=np.uint8)
        out.setflags(write=False)  # shared through the cache
        return out


def _atlas_levels(used: tuple) -> list:
    """CPU mip levels, each (T*S*S, 3) linear-light texels, of the photos ``used`` (in order)."""
    lin = torch.from_numpy((np.stack([_load_texture(p) for p in used]).astype(np.float32) / 255.0) ** 2.2)
    levels = [lin]  # mip levels by 2x2 box filtering: distant photo surfaces do not alias
    for _ in range(MIP_LEVELS - 1):
        levels.append(torch.nn.functional.avg_pool2d(levels[-1].permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1))
    return [lv.reshape(-1, 3).contiguous() for lv in levels]


def texture_atlas(used: tuple, device, levels: Optional[list] = None) -> list:
    """The atlas of the photos ``used`` on ``device`` (``levels``: already built on the CPU)."""
    if not used:
        return [torch.zeros(1, 3, device=device)]
    key = (tuple(used), str(device))
    if key not in _ATLAS_CACHE:
        if len(_ATLAS_CACHE) > 8:
            _ATLAS_CACHE.clear()
        _ATLAS_CACHE[key] = [lv.to(device) for lv in (levels or _atlas_levels(used))]
    return _ATLAS_CACHE[key]


def batch_photos(specs, device) -> tuple:
    """The batch's photo files (atlas order), file -> atlas slot, and the CPU atlas if ``device``
    does not have it cached yet (decoding photos is CPU work worth doing ahead)."""
    used = tuple(sorted({m.photo for s in specs for m in spec_materials(s) if m.pattern == "photo"}))
    atlas = _atlas_levels(used) if used and (used, str(torch.device(device))) not in _ATLAS_CACHE else None
    return used, {p: i for i, p in enumerate(used)}, atlas


def texture_files(textures) -> list[str]:
    """A texture folder -> its image files; a list of files (or None) -> that list."""
    if isinstance(textures, (str, bytes)) or hasattr(textures, "__fspath__"):
        return list_textures(textures)
    return list(textures or [])
