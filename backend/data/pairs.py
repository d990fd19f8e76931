"""Wide-baseline image pairs of one static scene, ground truth first (the InterPose evaluation).

A pair is two views A and B of a static held-out scene (rooms and open ground, procedural or
photo textures: the engine's ``textures`` option) whose relative rotation is 30-120 deg and whose
co-visibility, measured from the ground-truth depth, is 5-50 %. Both intrinsics and the relative
pose are known exactly. The cameras are sampled here (the scene's own camera path is replaced):

- A stands at a random azimuth and distance around the objects, looking near them with a yaw
  offset of up to 35 deg, so pairs are not all centre-facing (InterPose's hard cases are
  outward-facing: ScanNet, Cambridge);
- B stands 20-110 deg of azimuth further round, with a yaw offset of its own;
- a candidate is kept when the rotation is in range, both cameras and the in-between path
  (an arc from A to B, rotation slerped) stay inside the room and clear of every object, and
  the co-visibility measured on the rendered depth is in range. Candidates are rendered in
  batches of :data:`CANDIDATES_PER_RENDER`; a scene that yields none in :data:`ATTEMPTS` is skipped.

Co-visibility (:func:`covisibility`): A's pixels with finite depth are lifted with their depth,
moved into B's camera and projected; one counts when it lands inside B's frame, in front of B,
and within :data:`DEPTH_TOLERANCE` of B's own depth there (not occluded). The pair's figure is
the mean of A->B and B->A (sky pixels, infinitely far, give no correspondences and are left out).

The split is fixed: pairs come from held-out seeds ``HELDOUT_SEED_START + PAIR_SEED_OFFSET + i``
in order, the first ``count`` scenes that yield a pair at the asked size (the acceptance test is
made at that size, so the list depends on it). No training seed is ever drawn here.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from .camera_paths import camera_ok, look_at
from .scene import SceneSpec, sample_scene
from .splits import heldout_seeds
from .vectors import rot_axis, rot_z

ROTATION_RANGE = (30.0, 120.0)  # deg, relative rotation of A and B
COVIS_RANGE = (0.05, 0.50)  # fraction of surface pixels seen by both views
# Pair scenes come from this offset of the held-out range: the V2C clips use offsets from 0, so
# the two benchmarks never score the same scene.
PAIR_SEED_OFFSET = 500_000
ATTEMPTS = 48  # camera pairs tried per scene before it is skipped
CANDIDATES_PER_RENDER = 8  # candidate pairs rendered together (2 frames each)
# A reprojected pixel is "seen" when its depth in B agrees with B's depth map within 5 %: at
# 64-128 px a sloped floor changes depth by a few % between neighbouring pixels, so a tighter
# test would call visible floor occluded.
DEPTH_TOLERANCE = 0.05
MAX_YAW_OFFSET = 35.0  # deg a camera turns away from the objects
AZIMUTH_STEP = (20.0, 110.0)  # deg of azimuth between A and B around the objects


@dataclass
class ImagePair:
    """One ground-truth pair. World = A's camera (OpenCV axes), so ``c2w[0]`` is the identity."""

    seed: int
    rgb: np.ndarray  # (2, H, W, 3) uint8: A, B
    depth: np.ndarray  # (2, H, W) float32 z-depth, +inf for sky
    c2w: np.ndarray  # (2, 4, 4) float64
    K: np.ndarray  # (3, 3) float64, both views
    rotation_deg: float
    covisibility: float  # mean of the two directions
    covis_ab: float
    covis_ba: float
    caption: str
    setting: str  # "room" or "open"
    spec: SceneSpec = field(repr=False)  # the scene with the pair's two cameras (scene world)
    polar: tuple = field(repr=False, default=())  # (azimuth, distance, height) of A and B: the arc between

    @property
    def relative_pose(self) -> np.ndarray:
        """InterPose's T_rel = T_B T_A^-1 (world-to-camera T): B's w2c in A's camera (4x4)."""
        return np.linalg.inv(self.c2w[1])

    def info(self) -> dict:
        return {"seed": self.seed, "rotation_deg": self.rotation_deg, "covisibility": self.covisibility,
                "covis_ab": self.covis_ab, "covis_ba": self.covis_ba, "setting": self.setting,
                "caption": self.caption, "baseline_m": float(np.linalg.norm(self.c2w[1, :3, 3]))}


# ----------------------------------------------------------------------------------------
# Measurements on ground truth


def rotation_angle_deg(R1: np.ndarray, R2: np.ndarray) -> float:
    c = (np.trace(R1.T @ R2) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def covisibility(depth_a: torch.Tensor, depth_b: torch.Tensor, K: torch.Tensor, a_to_b: torch.Tensor,
                 tolerance: float = DEPTH_TOLERANCE) -> float:
    """Fraction of A's finite-depth pixels that B sees (inside its frame, in front, not occluded).

    depth_a, depth_b: (H, W) z-depth (+inf = sky); K (3, 3) of both; a_to_b (4, 4): B's
    world-to-camera times A's camera-to-world (A's camera coordinates -> B's)."""
    from ..geometry.cameras import depth_to_pointmap, project, transform_points

    H, W = depth_a.shape
    da, db = depth_a.double(), depth_b.double()
    valid = torch.isfinite(da) & (da > 0)
    if not valid.any():
        return 0.0
    Xa = depth_to_pointmap(torch.where(valid, da, torch.ones_like(da)), K.double())[valid]
    Xb = transform_points(a_to_b.double(), Xa)
    uv, z = project(Xb, K.double())
    u, v = uv[:, 0].round().long(), uv[:, 1].round().long()
    inside = (z > 1e-6) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    seen = torch.zeros_like(inside)
    d_there = db[v[inside], u[inside]]
    seen[inside] = torch.isfinite(d_there) & ((d_there - z[inside]).abs() <= tolerance * z[inside])
    return float(seen.double().sum() / valid.sum())


# ----------------------------------------------------------------------------------------
# Camera sampling


def _yawed(c2w: np.ndarray, yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Turn a camera about world up (z) by ``yaw`` and about its own x axis by ``pitch``."""
    out = c2w.copy()
    out[:3, :3] = rot_z(math.radians(yaw_deg)) @ c2w[:3, :3] @ rot_axis([1, 0, 0], math.radians(pitch_deg))
    return out


def _slerp_path(c2w_a: np.ndarray, c2w_b: np.ndarray, polar_a: tuple, polar_b: tuple, frames: int) -> np.ndarray:
    """(frames, 4, 4): the eye along an arc around the scene's centre (azimuth, distance and
    height interpolated), the rotation slerped from A's to B's; frame 0 is A, the last B."""
    (az_a, r_a, z_a), (az_b, r_b, z_b) = polar_a, polar_b
    Rrel = c2w_a[:3, :3].T @ c2w_b[:3, :3]
    angle = math.radians(rotation_angle_deg(np.eye(3), Rrel))
    axis = np.array([Rrel[2, 1] - Rrel[1, 2], Rrel[0, 2] - Rrel[2, 0], Rrel[1, 0] - Rrel[0, 1]])
    axis = axis / np.linalg.norm(axis) if np.linalg.norm(axis) > 1e-9 else np.array([0, 0, 1.0])
    out = np.repeat(np.eye(4)[None], frames, axis=0)
    for i, u in enumerate(np.linspace(0.0, 1.0, frames)):
        az, r, z = az_a + u * (az_b - az_a), r_a + u * (r_b - r_a), z_a + u * (z_b - z_a)
        out[i, :3, :3] = c2w_a[:3, :3] @ rot_axis(axis, u * angle)
        out[i, :3, 3] = [r * math.cos(az), r * math.sin(az), z]
    out[0], out[-1] = c2w_a, c2w_b
    return out


def _candidate(rng: np.random.Generator, spec: SceneSpec, path_frames: int) -> Optional[tuple]:
    """A camera pair for ``spec`` in its scene world, ((c2w_a, c2w_b), (polar_a, polar_b)), or
    None when this draw breaks the rotation range or its path leaves the room / hits an object."""
    room, prims = spec.room_size, retime(spec, spec.c2w[:1]).prims  # static: one pose broadcasts over the path
    area = max([float(np.linalg.norm(p.pos[0, :2])) for p in prims] + [1.0])
    min_r = area * 0.6 + 0.9
    max_r = (min(room[:2]) / 2 - 0.5) if spec.setting == "room" else area + 4.0
    if max_r <= min_r:
        return None
    top = room[2] - 0.5 if spec.setting == "room" else 2.2

    def camera(az: float):
        r = rng.uniform(min_r, max_r)
        z = rng.uniform(0.5, max(0.6, min(2.0, top)))
        eye = np.array([r * math.cos(az), r * math.sin(az), z])
        target = np.array([rng.uniform(-0.4, 0.4) * area, rng.uniform(-0.4, 0.4) * area, rng.uniform(0.1, 0.7)])
        c2w = _yawed(look_at(eye, target), rng.uniform(-MAX_YAW_OFFSET, MAX_YAW_OFFSET), rng.uniform(-8, 8))
        return c2w, (az, r, z)

    az_a = rng.uniform(0, 2 * math.pi)
    step = math.radians(rng.uniform(*AZIMUTH_STEP)) * (1 if rng.random() < 0.5 else -1)
    (c2w_a, polar_a), (c2w_b, polar_b) = camera(az_a), camera(az_a + step)
    rot = rotation_angle_deg(c2w_a[:3, :3], c2w_b[:3, :3])
    if not ROTATION_RANGE[0] <= rot <= ROTATION_RANGE[1]:
        return None
    path = _slerp_path(c2w_a, c2w_b, polar_a, polar_b, max(2, path_frames))
    if not camera_ok(path, prims, spec.setting, room):
        return None
    return (c2w_a, c2w_b), (polar_a, polar_b)


def retime(spec: SceneSpec, c2w: np.ndarray) -> SceneSpec:
    """The static scene ``spec`` seen by the cameras ``c2w`` (F, 4, 4, scene world)."""
    F = len(c2w)
    prims = [dataclasses.replace(p, rot=np.repeat(p.rot[:1], F, axis=0), pos=np.repeat(p.pos[:1], F, axis=0))
             for p in spec.prims]
    return dataclasses.replace(spec, frames=F, c2w=np.asarray(c2w, np.float64), prims=prims, motion="pair",
                               motion_parts=[], frame_stride=1)


# ----------------------------------------------------------------------------------------
# The split


def pair_seeds(count: int, start: int = 0) -> list[int]:
    """Held-out seeds the pair split draws its scenes from, in order (more than ``count``: a
    scene that yields no pair is skipped)."""
    return heldout_seeds(count, start=PAIR_SEED_OFFSET + start)


def _scene(seed: int, height: int, width: int, textures) -> SceneSpec:
    return sample_scene(seed, frames=2, height=height, width=width, textures=textures, dynamic=False,
                        motion="static")


def find_pair(seed: int, height: int = 128, width: int = 128, textures=None, device="cpu",
              path_frames: int = 16) -> Optional[ImagePair]:
    """The pair of held-out scene ``seed`` (deterministic), or None when no camera pair of
    :data:`ATTEMPTS` draws meets the ranges."""
    from .synth import render_specs

    spec = _scene(seed, height, width, textures)
    if not spec.prims:
        return None
    rng = np.random.default_rng([int(seed), 0x9A125])
    found = [c for c in (_candidate(rng, spec, path_frames) for _ in range(ATTEMPTS)) if c is not None]
    for i in range(0, len(found), CANDIDATES_PER_RENDER):
        chunk = found[i:i + CANDIDATES_PER_RENDER]
        specs = [retime(spec, np.stack(cams)) for cams, _ in chunk]
        batch = render_specs(specs, device=device)
        for j, (cams, polar) in enumerate(chunk):
            c2w = np.linalg.inv(cams[0]) @ np.stack(cams)  # world = A's camera, float64
            c2w[0] = np.eye(4)
            K = torch.as_tensor(spec.K, dtype=torch.float64)
            depth = batch.depth[j].cpu()
            a_to_b = torch.as_tensor(np.linalg.inv(c2w[1]))
            ab = covisibility(depth[0], depth[1], K, a_to_b)
            ba = covisibility(depth[1], depth[0], K, torch.linalg.inv(a_to_b))
            cv = (ab + ba) / 2
            if not COVIS_RANGE[0] <= cv <= COVIS_RANGE[1]:
                continue
            return ImagePair(seed=int(seed), rgb=batch.rgb[j].cpu().numpy(), depth=depth.numpy(), c2w=c2w,
                             K=np.asarray(spec.K, np.float64), rotation_deg=rotation_angle_deg(c2w[0, :3, :3],
                                                                                               c2w[1, :3, :3]),
                             covisibility=cv, covis_ab=ab, covis_ba=ba, caption=batch.captions[j],
                             setting=spec.setting, spec=specs[j], polar=polar)
    return None


def wide_pairs(count: int, height: int = 128, width: int = 128, textures=None, start: int = 0, device="cpu",
               max_scenes: Optional[int] = None) -> Iterator[ImagePair]:
    """The first ``count`` pairs of the split (scenes from pair offset ``start``), in order.
    ``max_scenes`` bounds the scenes tried (default 20 x count)."""
    if count < 1:
        raise ValueError("count must be at least 1")
    tried, found = 0, 0
    limit = max_scenes or 20 * count
    for seed in pair_seeds(limit, start):
        if found >= count:
            return
        tried += 1
        pair = find_pair(seed, height, width, textures, device)
        if pair is not None:
            found += 1
            yield pair
    if found < count:
        raise RuntimeError(f"only {found} of {count} pairs in {tried} scenes: widen the ranges or max_scenes")


def inbetween_video(pair: ImagePair, frames: int = 16, device="cpu") -> tuple[np.ndarray, np.ndarray]:
    """The real video from A to B along the pair's path (``frames`` frames, rendered): what a
    perfect generator would produce. Returns rgb (F, H, W, 3) uint8 and c2w (F, 4, 4) in A's camera."""
    from .synth import render_specs

    path = _slerp_path(pair.spec.c2w[0], pair.spec.c2w[1], pair.polar[0], pair.polar[1], frames)
    if not camera_ok(path, retime(pair.spec, path[:1]).prims, pair.spec.setting, pair.spec.room_size):
        raise ValueError(f"pair {pair.seed}: the path at {frames} frames leaves the room or meets an object")
    batch = render_specs([retime(pair.spec, path)], device=device)
    c2w = np.linalg.inv(path[0]) @ path
    return batch.rgb[0].cpu().numpy(), c2w


# ----------------------------------------------------------------------------------------
# `python -m backend synth --pairs N --out DIR`


def write_pairs(count: int, out: Path, height: int = 128, width: int = 128, textures=None, start: int = 0,
                device="cpu", log=print) -> list[Path]:
    """Each pair as a two-frame ground-truth bundle ``OUT/pair_<seed>/`` (frames A, B, their
    cameras with A at the origin, points, depth) plus ``gt/ground_truth.npz`` (depth, c2w, K) and
    ``gt/pair.json`` (seed, rotation, co-visibility both ways, caption, split)."""
    from ..bundle import Bundle, write_bundle
    from .synth import render_specs
    from .to_bundle import clip_ground_truth, clip_to_bundle

    written = []
    for pair in wide_pairs(count, height, width, textures, start, device):
        batch = render_specs([pair.spec], device=device)  # the two frames again, as a ClipBatch
        b: Bundle = clip_to_bundle(batch, 0)
        for cam, c2w in zip(b.cameras, pair.c2w):
            cam.c2w = c2w  # the float64 relative pose, exact
        b.source.update({"pair": True, "split": "heldout-pairs", **pair.info()})
        d = write_bundle(b, Path(out) / f"pair_{pair.seed}")
        (d / "gt").mkdir(exist_ok=True)
        gt = clip_ground_truth(batch, 0)
        np.savez_compressed(d / "gt" / "ground_truth.npz", depth=gt["depth"], c2w=pair.c2w, K=pair.K)
        (d / "gt" / "pair.json").write_text(json.dumps({**pair.info(), "split": "heldout-pairs"}, indent=1))
        log(f"{pair.seed}: rotation {pair.rotation_deg:.1f} deg, co-visibility {100 * pair.covisibility:.1f}% "
            f"({pair.setting}) {pair.caption}")
        written.append(d)
    return written
