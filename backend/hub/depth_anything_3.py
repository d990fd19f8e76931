"""Depth Anything 3 (ByteDance Seed, Apache-2.0 code) as the geometry role.

The network, its presets and its weights layout are the authors' own, from their PyPI package
``depth-anything-3`` (0.1.1, the same files as github.com/ByteDance-Seed/Depth-Anything-3 at
commit 2c21ea8). A hub folder holds what the package's ``DepthAnything3.save_pretrained`` (a
``huggingface_hub.PyTorchModelHubMixin``) writes: ``config.json`` naming a preset
(``{"model_name": "da3-base", ...}``) and ``model.safetensors`` whose keys are the network's,
prefixed ``model.``.

We do not call ``depth_anything_3.api.DepthAnything3.from_pretrained``: importing that module
imports the package's exporters and input transforms, which need torchvision (no build of it
loads against the pinned CPU torch), matplotlib, trimesh and imageio. Its loading is three steps,
done here with the package's own functions: the preset's YAML (``registry.MODEL_REGISTRY``) ->
``cfg.create_object`` -> the safetensors state dict. That reads the folder and nothing else: no
network, ever.

Preprocessing follows the package's ``InputProcessor`` (``upper_bound_resize`` at 504 px: the
longer side to 504, then each side to the nearest multiple of the 14 px patch; ImageNet
normalisation). Long clips go through overlapping chunks as the authors' DA3-Streaming does
(120 frames, 60 shared), each chained to the clip's world by a robust Sim(3) on the shared
frames' point maps, weighted by confidence.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..roles import GeometryPrediction
from ..runtime import Progress

LOADER = "depth-anything-3"
PATCH = 14  # the DINOv2 patch of every DA3 preset
PROCESS_RES = 504  # the package's default processing size (longer side)
CHUNK_FRAMES = 120  # DA3-Streaming's default chunk and overlap (its configs/base_config.yaml)
CHUNK_OVERLAP = 60
CONF_PERCENTILE = 40.0  # the package's GLB export keeps points above this confidence percentile
_MEAN = torch.tensor([0.485, 0.456, 0.406])
_STD = torch.tensor([0.229, 0.224, 0.225])


def is_depth_anything_3(folder: os.PathLike | str) -> bool:
    """True when ``folder`` looks like a DA3 hub folder: a config.json naming a ``model_name``
    and a model.safetensors beside it."""
    folder = Path(folder)
    cfg = _read_config(folder)
    return cfg is not None and isinstance(cfg.get("model_name"), str) and (folder / "model.safetensors").is_file()


def _read_config(folder: Path) -> Optional[dict]:
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) else None


def _quiet_package() -> None:
    # The package prints an INFO line per call (its own logger reads DA3_LOG_LEVEL when first
    # imported); our progress says the same. A user's own setting wins.
    os.environ.setdefault("DA3_LOG_LEVEL", "WARN")


def load_network(folder: os.PathLike | str, device="cpu") -> tuple[torch.nn.Module, str]:
    """The DA3 network of a hub folder and its preset name; ValueError saying what is wrong."""
    folder = Path(folder)
    cfg = _read_config(folder)
    if cfg is None:
        raise ValueError(f"{folder}: not a Depth Anything 3 model folder (no readable config.json)")
    name = cfg.get("model_name")
    weights = folder / "model.safetensors"
    if not isinstance(name, str) or not weights.is_file():
        raise ValueError(f"{folder}: not a Depth Anything 3 model folder (it needs a config.json with "
                         "\"model_name\" and a model.safetensors, as DepthAnything3.save_pretrained writes)")
    _quiet_package()
    try:
        from depth_anything_3.cfg import create_object, load_config
        from depth_anything_3.registry import MODEL_REGISTRY
    except ImportError as e:
        raise ValueError("Depth Anything 3 needs its package: pip install --no-deps depth-anything-3==0.1.1 "
                         f"omegaconf addict einops (see scripts/env.sh); import failed: {e}") from None
    if name not in MODEL_REGISTRY:
        raise ValueError(f"{folder}: config.json names model_name {name!r}, which depth-anything-3 does not know; "
                         f"known: {', '.join(MODEL_REGISTRY)}")
    from safetensors.torch import load_model

    net = create_object(load_config(MODEL_REGISTRY[name]))
    # The mixin saved the hub class, whose network is its ``model`` attribute, with
    # safetensors' save_model (tied tensors stored once); load_model reads it back the same way.
    holder = torch.nn.Module()
    holder.model = net
    missing, _unexpected = load_model(holder, str(weights), strict=False)
    if missing:  # random weights where the checkpoint has none: refuse rather than predict noise
        raise ValueError(f"{weights}: {len(missing)} weights of preset {name!r} are missing "
                         f"(e.g. {missing[0]}); the file does not belong to this config.json")
    return net.to(device).eval(), name


def preprocess(frames: np.ndarray, process_res: int = PROCESS_RES) -> tuple[torch.Tensor, tuple[int, int]]:
    """(F, H, W, 3) uint8 -> (F, 3, h, w) normalised, h and w multiples of 14, as the package's
    ``upper_bound_resize``: longer side to ``process_res`` (area down, cubic up), then each side
    to its nearest multiple of 14."""
    import cv2

    H, W = frames.shape[1:3]
    scale = process_res / max(H, W)
    w1, h1 = (max(1, round(W * scale)), max(1, round(H * scale))) if max(H, W) != process_res else (W, H)
    w2, h2 = _nearest_multiple(w1), _nearest_multiple(h1)
    out = []
    for img in frames:
        if (w1, h1) != (W, H):
            img = cv2.resize(img, (w1, h1), interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
        if (w2, h2) != (w1, h1):
            img = cv2.resize(img, (w2, h2), interpolation=cv2.INTER_CUBIC if (w2 > w1 or h2 > h1) else cv2.INTER_AREA)
        out.append(torch.from_numpy(np.ascontiguousarray(img)))
    x = torch.stack(out).permute(0, 3, 1, 2).float() / 255.0
    return (x - _MEAN[:, None, None]) / _STD[:, None, None], (h2, w2)


def _nearest_multiple(x: int, p: int = PATCH) -> int:
    down = (x // p) * p
    up = down + p
    return max(p, up if abs(up - x) <= abs(x - down) else down)


class DepthAnything3Geometry:
    """The geometry role filled by a DA3 network: ``predict(frames, K=None, progress=None)``.

    Args:
        net (`torch.nn.Module`): a ``DepthAnything3Net`` (see :func:`load_network`).
        model_id (`str`): its catalogue id or folder, written into bundles.
        preset (`str`): the package's preset name (``da3-base``...).
        device: where it runs.
        process_res (`int`): the longer side frames are resized to (the package's 504).
        chunk_frames (`int`), chunk_overlap (`int`): chunks of long clips and the frames
            consecutive chunks share (DA3-Streaming's 120 and 60).
    """

    name = LOADER

    def __init__(self, net, model_id: str, preset: str, device="cpu", process_res: int = PROCESS_RES,
                 chunk_frames: int = CHUNK_FRAMES, chunk_overlap: int = CHUNK_OVERLAP):
        if not 0 <= chunk_overlap < chunk_frames:
            raise ValueError(f"chunk_overlap ({chunk_overlap}) must be below chunk_frames ({chunk_frames})")
        self.net, self.model_id, self.preset = net, model_id, preset
        self.device = torch.device(device)
        self.process_res, self.chunk_frames, self.chunk_overlap = process_res, chunk_frames, chunk_overlap

    def chunks(self, n: int) -> list[tuple[int, int]]:
        """(start, end) of each chunk of an ``n``-frame clip (DA3-Streaming's get_chunk_indices)."""
        if n <= self.chunk_frames:
            return [(0, n)]
        step = self.chunk_frames - self.chunk_overlap
        count = (n - self.chunk_overlap + step - 1) // step
        return [(i * step, min(i * step + self.chunk_frames, n)) for i in range(count)]

    @torch.no_grad()
    def _forward(self, x: torch.Tensor) -> dict:
        """One chunk (F, 3, h, w) -> depth, conf (F, h, w), c2w (F, 4, 4) in the chunk's first
        frame's camera, K (F, 3, 3) in pixels of h x w with pixel centres at integers."""
        dev = self.device
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            out = self.net(x[None].to(dev), None, None, [], False, False, "saddle_balanced")
        depth = out["depth"][0].float().reshape(len(x), *x.shape[-2:]).cpu()
        conf = out["depth_conf"][0].float().reshape(len(x), *x.shape[-2:]).cpu()
        w2c = torch.eye(4, dtype=torch.float64).repeat(len(x), 1, 1)
        w2c[:, :3, :] = out["extrinsics"][0][:, :3, :].double().cpu()
        c2w = torch.linalg.inv(w2c)
        c2w = torch.linalg.inv(c2w[0]) @ c2w  # its reference view may be another frame: re-anchor
        K = out["intrinsics"][0].double().cpu().clone()
        K[:, 0, 2] -= 0.5  # the package's principal point is in pixel-corner coordinates (W / 2)
        K[:, 1, 2] -= 0.5
        return {"depth": depth, "conf": conf, "c2w": c2w, "K": K}

    def predict(self, frames, K: Optional[np.ndarray] = None, progress=None) -> GeometryPrediction:
        """Depth, cameras and confidence of a clip (``backend.roles.Geometry.predict``).

        ``K`` (3, 3), known intrinsics in pixels of ``frames``, replaces the predicted ones (the
        network takes intrinsics only together with poses, so it does not condition on them)."""
        from ..geometry.cameras import depth_to_pointmap, resize_intrinsics
        from ..geometry.chunks import chain_similarity

        progress = Progress.of(progress, device=self.device)
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) < 1:
            raise ValueError(f"Depth Anything 3 takes (F, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
        n, H, W = frames.shape[:3]
        with progress.timed("resize"):
            x, (h, w) = preprocess(frames, self.process_res)
        chunks = self.chunks(n)
        depth = torch.zeros(n, h, w)
        conf = torch.zeros(n, h, w)
        c2w = torch.full((n, 4, 4), float("nan"), dtype=torch.float64)
        Ks = torch.zeros(n, 3, 3, dtype=torch.float64)
        for c, (s0, s1) in enumerate(chunks):
            progress(0.9 * c / len(chunks), f"depth-anything-3: chunk {c + 1}/{len(chunks)}")
            with progress.timed("network"):
                res = self._forward(x[s0:s1])
            scale, T = 1.0, torch.eye(4, dtype=torch.float64)
            shared = list(range(s0, min(s1, chunks[c - 1][1]))) if c else []
            if shared:  # chain to the clip's world through the frames this chunk shares with the last
                loc = [f - s0 for f in shared]
                world = depth_to_pointmap(depth[shared].double(), Ks[shared], c2w[shared])
                mine = depth_to_pointmap(res["depth"][loc].double(), res["K"][loc], res["c2w"][loc])
                weights = (conf[shared] - 1).clamp_min(0) * (res["conf"][loc] - 1).clamp_min(0)
                T = chain_similarity(world, mine, weights)
                scale = float(torch.linalg.det(T[:3, :3]).abs() ** (1 / 3))
            keep_from = shared[len(shared) // 2] if shared else s0  # the overlap's later half: this chunk's
            for f in range(keep_from, s1):
                cam = T @ res["c2w"][f - s0]
                cam[:3, :3] /= scale
                c2w[f], Ks[f] = cam, res["K"][f - s0]
                depth[f], conf[f] = res["depth"][f - s0] * scale, res["conf"][f - s0]
        progress(0.92, "depth-anything-3: to the frames' size")
        K_out = resize_intrinsics(Ks, W / w, H / h)
        if K is not None:
            K_out = torch.as_tensor(np.asarray(K), dtype=torch.float64).expand(n, 3, 3).clone()
        up = lambda t: F.interpolate(t[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]  # noqa: E731
        conf_full = up(conf).numpy()
        threshold = float(np.percentile(conf.numpy(), CONF_PERCENTILE)) if conf.numel() else 0.0
        progress(1.0, "depth-anything-3: done")
        return GeometryPrediction(
            depth=up(depth).clamp_min(0).numpy().astype(np.float32), c2w=c2w.numpy(), K=K_out.numpy(),
            conf=conf_full.astype(np.float32), conf_threshold=threshold,
            extras={"preset": self.preset, "process_size": [h, w], "chunks": [list(ch) for ch in chunks],
                    "chunk_overlap": self.chunk_overlap if len(chunks) > 1 else 0})


def load(folder: os.PathLike | str, model_id: Optional[str] = None, device="cpu", **options) -> DepthAnything3Geometry:
    """A :class:`DepthAnything3Geometry` from a hub folder (see the module docstring)."""
    net, preset = load_network(folder, device)
    return DepthAnything3Geometry(net, model_id or str(folder), preset, device, **options)


__all__ = ["DepthAnything3Geometry", "LOADER", "is_depth_anything_3", "load", "load_network", "preprocess"]
