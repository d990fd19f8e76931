"""Helpers shared by the unified-model pipelines: frames in, resizing, the lazily loaded model.

Progress, cancel and the device choice are the runtime's (``backend.runtime``)."""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..runtime import pick_device

def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> (F, size, size, 3) uint8 (area filter; the tiny model is square)."""
    x = frames.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="area" if frames.shape[1] >= size else "bilinear",
                      align_corners=None if frames.shape[1] >= size else False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def as_frames(frames, start: int = 0, stride: int = 1, max_frames: Optional[int] = None) -> torch.Tensor:
    """Accept a (F, H, W, 3) uint8 array/tensor, a list of (H, W, 3) arrays, or a video /
    image-folder path or a list of image paths (read by the shared ``io_video`` reader, as the
    other engines do), keeping frames ``start, start + stride, ...``, at most ``max_frames``."""
    if isinstance(frames, (str, os.PathLike)) or (isinstance(frames, (list, tuple)) and frames
                                                 and isinstance(frames[0], (str, os.PathLike))):
        from ..io_video import read_frames
        return torch.as_tensor(np.asarray(read_frames(frames, start=start, stride=stride,
                                                      max_frames=max_frames).frames), dtype=torch.uint8)
    if isinstance(frames, (list, tuple)):
        frames = np.stack([np.asarray(f) for f in frames])
    t = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (F, H, W, 3), got {tuple(t.shape)}")
    if stride < 1 or start < 0:
        raise ValueError(f"stride must be >= 1 and start >= 0 (got stride {stride}, start {start})")
    t = t[start::stride]
    return (t[:max_frames] if max_frames else t).to(torch.uint8)


class LazyModel:
    """Holds the unified model and loads it (the shipped offline weights by default) on first use,
    so constructing a pipeline or engine is free and the service pays the load once."""

    def __init__(self, model=None, model_path=None, device=None):
        self.device = pick_device(device)
        self._model, self._model_path = model, model_path

    @property
    def model(self):
        if self._model is None:
            from ..models import load_model

            self._model = load_model(self._model_path, device=self.device)
        return self._model

    @property
    def model_id(self) -> str:
        return str(self._model_path or "parallax-tiny")
