"""Helpers shared by the unified-model pipelines: frames in, resizing, the lazily loaded model.

Progress, cancel and the device choice are the runtime's (``backend.runtime``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..bundle import DepthFrame
from ..runtime import pick_device

def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> (F, size, size, 3) uint8 (area filter; the tiny model is square)."""
    x = frames.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="area" if frames.shape[1] >= size else "bilinear",
                      align_corners=None if frames.shape[1] >= size else False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


@dataclass(frozen=True)
class SquareCrop:
    """The centred square of an H x W frame: what a square model sees of it."""

    top: int
    left: int
    side: int

    def paste(self, d: DepthFrame, height: int, width: int) -> DepthFrame:
        """A depth map of the square, placed in a full frame: 0 (unknown) outside it."""
        depth = np.zeros((height, width), np.float32)
        conf = np.zeros((height, width), np.float16)
        depth[self.top:self.top + self.side, self.left:self.left + self.side] = d.depth
        conf[self.top:self.top + self.side, self.left:self.left + self.side] = d.conf
        return DepthFrame(depth, conf)


def square_crop(height: int, width: int) -> SquareCrop:
    side = min(height, width)
    return SquareCrop((height - side) // 2, (width - side) // 2, side)


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
