"""Pixels of a PNG (a render, a bundle frame) read through Blender's own image loader, for
the tests that compare renders with what they should show. Imported as ``blender.images``."""

from __future__ import annotations

import bpy
import numpy as np


def read_png(path) -> np.ndarray:
    """(H, W, 4) float32 pixels as stored, top row first."""
    img = bpy.data.images.load(str(path), check_existing=False)
    w, h = img.size
    px = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(px)
    bpy.data.images.remove(img)
    return px.reshape(h, w, 4)[::-1]
