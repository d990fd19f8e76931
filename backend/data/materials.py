"""Surface materials of the synthetic scenes: patterns, the named colour palette, photo textures
(numpy only: Blender imports it too).

``sample_material`` draws a procedural pattern (checker, stripes, value noise, bricks, gradient,
solid) or a photo from the texture folder; the colour names feed the captions. The torch side
evaluates these on surfaces in ``shading.py``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .vectors import clamp, unit

PATTERNS = ("solid", "checker", "stripes", "noise", "bricks", "gradient", "photo")
IMAGE_EXTS = (".jpg", ".jpeg", ".png")

# name -> linear-ish sRGB albedo in [0, 1]
PALETTE = {
    "red": (0.78, 0.12, 0.10), "orange": (0.90, 0.45, 0.10), "yellow": (0.92, 0.80, 0.15),
    "green": (0.20, 0.62, 0.20), "teal": (0.10, 0.55, 0.55), "blue": (0.15, 0.30, 0.80),
    "purple": (0.50, 0.22, 0.65), "pink": (0.92, 0.50, 0.65), "white": (0.88, 0.88, 0.86),
    "grey": (0.50, 0.50, 0.50), "black": (0.10, 0.10, 0.11), "brown": (0.45, 0.28, 0.14),
}
COLOUR_NAMES = tuple(PALETTE)


@dataclass
class Material:
    pattern: str  # one of PATTERNS
    color_a: np.ndarray  # (3,) albedo
    color_b: np.ndarray  # (3,) second colour (pattern) or mortar (bricks)
    scale: float  # pattern period in metres (photo: metres per texture tile)
    axis: np.ndarray  # (3,) unit vector: stripe / gradient direction
    name_a: str  # colour words for captions
    name_b: str
    photo: Optional[str] = None  # texture file (pattern "photo")
    photo_index: int = -1  # index into the texture list the scene was sampled with
    rotation: float = 0.0  # photo UV rotation (radians)
    offset: np.ndarray = field(default_factory=lambda: np.zeros(2))  # photo UV offset (tiles): random crop
    gain: np.ndarray = field(default_factory=lambda: np.ones(3))  # photo colour jitter, per channel

    def words(self) -> str:
        """A short adjective phrase: 'red', 'red-and-white checkered', 'photo-textured'..."""
        p = self.pattern
        if p == "solid":
            return self.name_a
        if p == "photo":
            return "photo-textured"
        pair = self.name_a if self.name_a == self.name_b else f"{self.name_a}-and-{self.name_b}"
        return {"checker": f"{pair} checkered", "stripes": f"{pair} striped", "noise": f"mottled {self.name_a}",
                "bricks": f"{self.name_a} brick", "gradient": f"{pair} gradient"}[p]


def list_textures(folder: Optional[os.PathLike | str]) -> list[str]:
    """Image files under ``folder`` (recursive, sorted so indices are stable); [] for None."""
    if not folder:
        return []
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"texture folder {root} does not exist")
    return sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS)


def _colour(rng: np.random.Generator, exclude: tuple = ()) -> tuple[str, np.ndarray]:
    names = [n for n in COLOUR_NAMES if n not in exclude] if exclude else COLOUR_NAMES
    name = names[rng.integers(len(names))]
    c = clamp(np.asarray(PALETTE[name]) * rng.uniform(0.85, 1.1) + rng.normal(0, 0.025, 3), 0.02, 0.98)
    return name, c


def sample_material(rng: np.random.Generator, textures: list[str], surface: str = "object",
                    patterns: Optional[tuple] = None) -> Material:
    """A random procedural or photo material. ``surface``: object, floor, wall or ceiling."""
    if patterns is None:
        if surface == "object":
            patterns, weights = PATTERNS, [0.22, 0.18, 0.16, 0.12, 0.06, 0.1, 0.16]
        elif surface == "floor":
            patterns, weights = PATTERNS, [0.08, 0.3, 0.08, 0.14, 0.14, 0.02, 0.24]
        else:
            patterns, weights = PATTERNS, [0.2, 0.08, 0.18, 0.14, 0.16, 0.06, 0.18]
        if not textures:
            weights = weights[:-1]
            patterns = patterns[:-1]
        weights = np.asarray(weights) / np.sum(weights)
        pattern = patterns[rng.choice(len(patterns), p=weights)]
    else:
        pattern = patterns[rng.integers(len(patterns))]
    name_a, a = _colour(rng)
    if pattern == "bricks":
        name_b, b = "grey", clamp(rng.uniform(0.55, 0.85) * np.ones(3), 0, 1)
    elif pattern == "noise":
        name_b, b = name_a, clamp(a * rng.uniform(0.35, 0.6), 0, 1)
    else:
        name_b, b = _colour(rng, exclude=(name_a,))
    big = surface != "object"
    scale = float(np.exp(rng.uniform(math.log(0.25), math.log(1.2)))) if big else \
        float(np.exp(rng.uniform(math.log(0.08), math.log(0.4))))
    m = Material(pattern=pattern, color_a=a, color_b=b, scale=scale, axis=unit(rng.normal(size=3)),
                 name_a=name_a, name_b=name_b)
    if pattern == "stripes" and rng.random() < 0.6:
        m.axis = np.eye(3)[rng.integers(3)]  # axis-aligned stripes are common in the real world
    if pattern == "photo":
        m.photo_index = int(rng.integers(len(textures)))
        m.photo = textures[m.photo_index]
        m.scale = float(rng.uniform(1.0, 4.0)) if big else float(rng.uniform(0.3, 1.5))
        m.rotation = float(rng.uniform(0, 2 * math.pi))
        m.offset = rng.uniform(0, 1, 2)
        m.gain = clamp(rng.uniform(0.75, 1.15) * (1 + rng.normal(0, 0.08, 3)), 0.4, 1.4)
    return m
