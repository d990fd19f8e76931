"""Clip sources for the V2C evaluation: each yields :class:`EvalClip` (frames + true cameras).

- ``heldout``: the synthetic engine's fixed held-out seeds (``backend.data.splits.heldout_seeds``,
  the split ``python -m backend synth --split heldout`` writes), rendered once in memory by the
  torch ray caster, optionally with photo textures;
- ``cycles``: the same seeds rendered by Blender Cycles (``tools.cycles_set``), read from
  the folder it wrote;
- ``hololens``: 16-frame windows of the real hololens-000 clip (``benchmarks/v2c_real.py``'s
  protocol: strides 1, 2, 4, 8 from frames 0, 120, 240) against the headset's tracking.

Every engine is given the same in-memory frames of a clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .common import EvalError

REPO = Path(__file__).resolve().parents[2]
SHARED_CANDIDATES = (REPO.parent / "shared", REPO / "shared", Path("/work/shared"))  # dev/CI, GPU host copy
HOLOLENS = "hololens-000"
HOLOLENS_STARTS = (0, 120, 240)
HOLOLENS_STRIDES = (1, 2, 4, 8)
CYCLES_HOWTO = (".venv-blender/bin/python -m tools.cycles_set --count 32 --out DIR "
                "--textures ../shared/textures   (Blender Cycles on the CPU: ~42 s per clip on 2 cores; "
                "add --device OPTIX or CUDA on a GPU host)")


@dataclass
class EvalClip:
    name: str  # e.g. "seed 1000000003" or "start 120 stride 4"
    frames: np.ndarray  # (F, H, W, 3) uint8
    c2w: np.ndarray  # (F, 4, 4) float64 true camera-to-world (OpenCV axes)
    K: np.ndarray  # (3, 3) float64 true intrinsics in the frames' pixels
    caption: str = ""
    info: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------
# Shared folders (never copied into the repository)


def find_shared(name: str, explicit: Optional[str] = None, marker: Optional[str] = None) -> Optional[Path]:
    """``explicit``, else ``<name>`` in ``../shared`` beside the repository, ``shared/`` inside it
    or ``/work/shared``: the first that exists (and holds ``marker`` when given), or None."""
    candidates = [Path(explicit)] if explicit else [c / name for c in SHARED_CANDIDATES]
    for path in candidates:
        if path.exists() and (marker is None or (path / marker).exists()):
            return path
    return None


def find_textures(choice: Optional[str]) -> Optional[Path]:
    """--textures: "none" -> None; a folder -> it (must exist); default: the shared textures if present."""
    if choice and choice.lower() == "none":
        return None
    if choice:
        if not Path(choice).is_dir():
            raise EvalError(f"--textures {choice}: no such folder")
        return Path(choice)
    return find_shared("textures")


# ----------------------------------------------------------------------------------------
# Held-out synthetic clips (torch ray caster)


def heldout_clips(count: int, frames: int = 16, height: int = 128, width: int = 128, textures=None,
                  start: int = 0, device: str = "cpu", batch: int = 8) -> Iterator[EvalClip]:
    """The first ``count`` held-out seeds (from offset ``start``), rendered ``batch`` at a time."""
    from ..data.splits import heldout_seeds
    from ..data.synth import render_batch

    if count < 1:
        raise EvalError("--clips must be at least 1")
    if frames < 2 or min(height, width) < 16:
        raise EvalError("held-out clips need at least 2 frames of at least 16x16 pixels")
    seeds = heldout_seeds(count, start=start)
    for i in range(0, len(seeds), batch):
        b = render_batch(seeds[i:i + batch], frames=frames, height=height, width=width, device=device,
                         textures=str(textures) if textures else None)
        rgb, c2w, K = b.rgb.cpu().numpy(), b.c2w.double().cpu().numpy(), b.K.double().cpu().numpy()
        for j, seed in enumerate(b.seeds):
            yield EvalClip(f"seed {seed}", rgb[j], c2w[j], K[j, 0], b.captions[j],
                           {"seed": int(seed), "motion": b.motions[j]})


# ----------------------------------------------------------------------------------------
# The Cycles domain-shift set (bundles written by tools.cycles_set)


def cycles_folders(root: Optional[str]) -> list[Path]:
    if not root:
        raise EvalError("--data cycles needs --root DIR, the folder the Cycles set was written to. Produce it with:\n  "
                        + CYCLES_HOWTO)
    folder = Path(root)
    clips = sorted(p for p in folder.glob("clip_*") if (p / "gt" / "ground_truth.npz").is_file()) \
        if folder.is_dir() else []
    if not clips:
        raise EvalError(f"--root {root}: no clip_<seed>/gt/ground_truth.npz there. Produce the Cycles set with:\n  "
                        + CYCLES_HOWTO)
    return sorted(clips, key=lambda p: int(p.name.split("_")[-1]) if p.name.split("_")[-1].isdigit() else p.name)


def cycles_clips(root: str, count: Optional[int] = None) -> Iterator[EvalClip]:
    """Clips of a Cycles set folder in seed order (the first ``count``; all when None)."""
    import json

    from ..io_video import read_frames

    folders = cycles_folders(root)
    if count is not None:
        if count < 1:
            raise EvalError("--clips must be at least 1")
        folders = folders[:count]
    for d in folders:
        gt = np.load(d / "gt" / "ground_truth.npz")
        frames = np.stack(read_frames(d / "frames").frames)
        scene = json.loads((d / "gt" / "scene.json").read_text()) if (d / "gt" / "scene.json").is_file() else {}
        c2w, K = gt["c2w"].astype(np.float64), gt["K"].astype(np.float64)
        if len(frames) != len(c2w):
            raise EvalError(f"{d}: {len(frames)} frames but {len(c2w)} ground-truth cameras")
        yield EvalClip(f"seed {scene.get('seed', d.name)}", frames, c2w, K[0] if K.ndim == 3 else K,
                       scene.get("caption", ""), {"seed": scene.get("seed"), "motion": scene.get("motion"),
                                                  "folder": str(d)})


# ----------------------------------------------------------------------------------------
# Real footage: hololens-000 (shared with benchmarks/v2c_real.py)


def find_hololens(explicit: Optional[str] = None) -> Optional[Path]:
    """The hololens-000 folder: ``explicit``, else ../shared/data (CI, relative to the repo) or
    /work/shared/data; None when absent."""
    return find_shared(f"data/{HOLOLENS}", explicit, marker="poses_c2w.txt")


def load_hololens(root: Path):
    """(image files, c2w (N, 4, 4), K (3, 3)) of a hololens-style folder."""
    files = sorted((root / "images").glob("*.jpg")) or sorted((root / "images").glob("*.png"))
    c2w = np.loadtxt(root / "poses_c2w.txt").reshape(-1, 4, 4)
    K = np.loadtxt(root / "K.txt").reshape(3, 3)
    if len(files) != len(c2w):
        raise EvalError(f"{root}: {len(files)} images but {len(c2w)} poses")
    return files, c2w, K


def window_indices(n_frames: int, starts=HOLOLENS_STARTS, strides=HOLOLENS_STRIDES, window: int = 16):
    """[(start, stride, frame indices)] for every window that fits in the clip, start-major."""
    out = []
    for start in starts:
        for stride in strides:
            idx = list(range(start, start + window * stride, stride))
            if idx[-1] < n_frames:
                out.append((start, stride, idx))
    return out


def hololens_clips(root: Optional[str] = None, count: Optional[int] = None, window: int = 16) -> Iterator[EvalClip]:
    from ..io_video import read_frames

    folder = find_hololens(root)
    if folder is None:
        raise EvalError(f"{HOLOLENS} not found ({root or 'looked in ../shared/data and /work/shared/data'}); "
                        "give its folder with --root")
    files, c2w, K = load_hololens(folder)
    windows = window_indices(len(files), window=window)
    if count is not None:
        if count < 1:
            raise EvalError("--clips must be at least 1")
        windows = windows[:count]
    for start, stride, idx in windows:
        frames = np.stack(read_frames([files[i] for i in idx]).frames)
        yield EvalClip(f"start {start} stride {stride}", frames, c2w[idx], K, "",
                       {"start": start, "stride": stride, "frames": idx})
