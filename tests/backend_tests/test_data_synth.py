"""Ground-truth consistency of the synthetic data engine (backend.data), on small CPU clips."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from backend.bundle import read_bundle, write_bundle
from backend.data import scene as sc
from backend.data.camera_paths import look_at
from backend.data.materials import Material
from backend.data.primitives import Primitive
from backend.data.splits import is_heldout
from backend.data.synth import (HELDOUT_SEED_START, ClipBatch, render_batch, render_clip, render_specs,
                                sample_train_seeds)
from backend.data.to_bundle import clip_to_bundle

# Varied intrinsics: fx != fy, off-centre principal point, portrait and landscape.
CASES = [
    dict(seed=3, height=24, width=32, intrinsics=dict(fx=30.0, fy=26.0, cx=18.3, cy=10.1)),
    dict(seed=11, height=36, width=20, intrinsics=dict(fx=22.0, fy=25.0, cx=8.0, cy=20.5)),
    dict(seed=HELDOUT_SEED_START + 5, height=18, width=32, intrinsics=None),
]


@pytest.fixture(scope="module")
def clips() -> list[ClipBatch]:
    return [render_clip(c["seed"], frames=4, height=c["height"], width=c["width"], intrinsics=c["intrinsics"])
            for c in CASES]


def _pixel_grid(h, w):
    v, u = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    return np.stack([u, v, np.ones_like(u)], -1)  # (H, W, 3)


def test_shapes_and_types(clips):
    for c, case in zip(clips, CASES):
        B, F, H, W = 1, 4, case["height"], case["width"]
        assert c.rgb.shape == (B, F, H, W, 3) and c.rgb.dtype == torch.uint8
        assert c.depth.shape == (B, F, H, W) and c.depth.dtype == torch.float32
        assert c.points.shape == (B, F, H, W, 3) and c.rays.shape == (B, F, H, W, 6)
        assert c.c2w.shape == (B, F, 4, 4) and c.K.shape == (B, F, 3, 3)
        assert c.dynamic_mask.dtype == torch.bool
        assert len(c.captions) == len(c.motions) == len(c.seeds) == 1
        assert torch.allclose(c.c2w[0, 0], torch.eye(4), atol=1e-6)  # world = frame-0 camera
        if case["intrinsics"]:
            k = case["intrinsics"]
            assert torch.allclose(c.K[0, 0], torch.tensor([[k["fx"], 0, k["cx"]], [0, k["fy"], k["cy"]], [0, 0, 1.0]]))


def test_unprojected_depth_equals_point_map(clips):
    for c in clips:
        depth = c.depth[0].double().numpy()
        pts = c.points[0].double().numpy()
        F, H, W = depth.shape
        grid = _pixel_grid(H, W)
        for f in range(F):
            K, c2w = c.K[0, f].double().numpy(), c.c2w[0, f].double().numpy()
            ok = np.isfinite(depth[f])
            cam = (grid @ np.linalg.inv(K).T) * np.where(ok, depth[f], 1.0)[..., None]
            world = cam @ c2w[:3, :3].T + c2w[:3, 3]
            assert ok.sum() > 0.3 * H * W
            err = np.abs(world[ok] - pts[f][ok]).max(axis=-1) / (1 + np.linalg.norm(pts[f][ok], axis=-1))
            assert err.max() < 2e-5, err.max()
            assert np.isnan(pts[f][~ok]).all() and np.isinf(depth[f][~ok]).all()


def test_ray_map_matches_K_and_c2w(clips):
    for c in clips:
        rays = c.rays[0].double().numpy()
        F, H, W, _ = rays.shape
        grid = _pixel_grid(H, W)
        for f in range(F):
            K, c2w = c.K[0, f].double().numpy(), c.c2w[0, f].double().numpy()
            d = grid @ np.linalg.inv(K).T @ c2w[:3, :3].T
            d /= np.linalg.norm(d, axis=-1, keepdims=True)
            m = np.cross(np.broadcast_to(c2w[:3, 3], d.shape), d)
            assert np.abs(rays[f, ..., :3] - d).max() < 1e-5
            assert np.abs(rays[f, ..., 3:] - m).max() < 1e-5 * (1 + np.linalg.norm(c2w[:3, 3]))


def _controlled_spec(height=48, width=64):
    """A hand-built scene: a sphere and a box at known places, a known moving camera."""
    spec = sc.sample_scene(7, frames=3, height=height, width=width, n_objects=3, dynamic=False)
    F = spec.frames
    ident = np.repeat(np.eye(3)[None], F, 0)
    mat = Material("solid", np.array([0.8, 0.2, 0.2]), np.zeros(3), 1.0, np.array([1.0, 0, 0]), "red", "red")
    spec.prims = [
        Primitive("sphere", np.array([0.5, 0, 0]), mat, ident, np.repeat([[0.0, 0.0, 0.5]], F, 0), radius=0.5),
        Primitive("box", np.array([0.3, 0.4, 0.35]), mat, ident, np.repeat([[1.4, 0.3, 0.35]], F, 0),
                  radius=float(np.linalg.norm([0.3, 0.4, 0.35]))),
        Primitive("torus", np.array([0.3, 0.1, 0]), mat, ident, np.repeat([[-0.6, -1.2, 0.1]], F, 0), radius=0.4),
        Primitive("cone", np.array([0.3, 0.4, 0]), mat, ident, np.repeat([[-1.3, 0.2, 0.4]], F, 0), radius=0.5),
        Primitive("capsule", np.array([0.15, 0.2, 0]), mat, ident, np.repeat([[0.8, -1.2, 0.35]], F, 0),
                  radius=0.35),
        Primitive("cylinder", np.array([0.2, 0.3, 0]), mat, ident, np.repeat([[2.2, -0.6, 0.3]], F, 0),
                  radius=0.37),
    ]
    spec.setting, spec.room_size, spec.ceiling = "room", np.array([10.0, 10.0, 3.0]), True
    spec.c2w = np.stack([look_at([0.3 * f - 0.3, -3.5 + 0.2 * f, 1.1], [0.6, 0.0, 0.4]) for f in range(F)])
    spec.K = np.array([[55.0, 0, 30.2], [0, 60.0, 25.7], [0, 0, 1]])
    return spec


def test_known_points_project_where_drawn():
    spec = _controlled_spec()
    clip = render_specs([spec])
    ids = clip.object_ids[0].numpy()
    depth = clip.depth[0].double().numpy()
    for f in range(spec.frames):
        w2c = np.linalg.inv(spec.c2w[f])
        # The sphere's centre projects onto a sphere pixel whose depth matches the analytic hit.
        C = w2c[:3, :3] @ spec.prims[0].pos[f] + w2c[:3, 3]
        u, v = (spec.K @ C / C[2])[:2]
        ui, vi = int(round(u)), int(round(v))
        assert ids[f, vi, ui] == 0
        ray = np.linalg.inv(spec.K) @ [ui, vi, 1.0]
        dn = ray / np.linalg.norm(ray)
        b = dn @ C
        t = b - math.sqrt(b * b - (C @ C - 0.5 ** 2))
        assert abs(depth[f, vi, ui] - t * dn[2]) < 1e-4
        # The box's front-top corner (nearest the camera) projects onto the box.
        corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (1,)]) * [0.3, 0.4, 0.35]
        corners = corners + spec.prims[1].pos[f]
        cam = corners @ w2c[:3, :3].T + w2c[:3, 3]
        near = cam[np.argmin(cam[:, 2])]
        u, v = (spec.K @ near / near[2])[:2]
        # a pixel just inside the corner (towards the box centre's projection)
        Bc = w2c[:3, :3] @ spec.prims[1].pos[f] + w2c[:3, 3]
        bu, bv = (spec.K @ Bc / Bc[2])[:2]
        step = np.array([bu - u, bv - v]) / np.hypot(bu - u, bv - v)
        ui, vi = (np.array([u, v]) + 2.0 * step).round().astype(int)
        assert ids[f, vi, ui] == 1, (f, ui, vi, ids[f])


def test_points_lie_on_their_surfaces():
    spec = _controlled_spec()
    clip = render_specs([spec])
    ids = clip.object_ids[0].numpy()
    pts = clip.points[0].double().numpy()
    c2w0 = spec.c2w[0]
    for f in range(spec.frames):
        world = pts[f] @ c2w0[:3, :3].T + c2w0[:3, 3]
        on_sphere = world[ids[f] == 0]
        assert len(on_sphere) > 50
        r = np.linalg.norm(on_sphere - spec.prims[0].pos[f], axis=-1)
        assert np.abs(r - 0.5).max() < 1e-4
        on_box = np.abs(world[ids[f] == 1] - spec.prims[1].pos[f]) / [0.3, 0.4, 0.35]
        assert len(on_box) > 20 and np.abs(on_box.max(axis=-1) - 1).max() < 1e-4
        floor = world[(ids[f] == -1) & (np.abs(world[..., 2]) < 0.01)]
        assert len(floor) > 20
        # torus (sphere traced: 1 mm tolerance), cone (side or base), capsule, cylinder
        loc = [world[ids[f] == j] - spec.prims[j].pos[f] for j in (2, 3, 4, 5)]
        assert min(len(p) for p in loc) > 10, [len(p) for p in loc]
        x, y, z = loc[0].T
        assert np.abs(np.hypot(np.hypot(x, y) - 0.3, z) - 0.1).max() < 1.5e-3
        x, y, z = loc[1].T
        side = np.abs(np.hypot(x, y) - 0.3 * (0.4 - z) / 0.8)
        base = np.abs(z + 0.4) + np.maximum(np.hypot(x, y) - 0.3, 0)
        assert np.minimum(side, base).max() < 1e-4
        x, y, z = loc[2].T
        assert np.abs(np.sqrt(x ** 2 + y ** 2 + (z - np.clip(z, -0.2, 0.2)) ** 2) - 0.15).max() < 1e-4
        x, y, z = loc[3].T
        side = np.abs(np.hypot(x, y) - 0.2) + np.maximum(np.abs(z) - 0.3, 0)
        cap = np.abs(np.abs(z) - 0.3) + np.maximum(np.hypot(x, y) - 0.2, 0)
        assert np.minimum(side, cap).max() < 1e-4


def test_moving_objects_move_and_static_do_not():
    seeds = [21, 22, 23]
    clips = render_batch(seeds, frames=5, height=24, width=24, dynamic=True)
    specs = [sc.sample_scene(s, frames=5, height=24, width=24, dynamic=True) for s in seeds]
    seen_dynamic = False
    for i, spec in enumerate(specs):
        assert spec.moving_mask.any()
        for p in spec.prims:
            dp = np.abs(p.pos - p.pos[0]).max()
            dr = np.abs(p.rot - p.rot[0]).max()
            if p.moving:
                assert max(dp, dr) > 1e-2, p.motion
            else:
                assert dp == 0 and dr == 0
        ids = clips.object_ids[i].numpy().astype(int)
        moving_px = np.isin(ids, np.nonzero(spec.moving_mask)[0])
        assert np.array_equal(clips.dynamic_mask[i].numpy(), moving_px)
        seen_dynamic |= bool(moving_px.any())
    assert seen_dynamic
    static = render_batch([21], frames=3, height=16, width=16, dynamic=False)
    assert not static.dynamic_mask.any()


def test_deterministic_by_seed():
    a = render_batch([5, 6], frames=3, height=16, width=20)
    b = render_batch([5, 6], frames=3, height=16, width=20)
    for k in ("rgb", "depth", "points", "rays", "c2w", "K", "dynamic_mask"):
        assert torch.equal(getattr(a, k).nan_to_num(), getattr(b, k).nan_to_num()) if getattr(a, k).is_floating_point() \
            else torch.equal(getattr(a, k), getattr(b, k))
    assert a.captions == b.captions and a.motions == b.motions
    # A clip does not depend on its batch-mates.
    c = render_clip(6, frames=3, height=16, width=20)
    assert torch.equal(c.depth[0], a.depth[1]) and torch.equal(c.rgb[0], a.rgb[1])
    d = render_clip(7, frames=3, height=16, width=20)
    assert not torch.equal(d.rgb, c.rgb)


def test_bundle_round_trip(tmp_path, clips):
    clip = clips[0]
    path = write_bundle(clip_to_bundle(clip, 0, fps=12.0), tmp_path / "b")
    b = read_bundle(path)
    assert b.task == "ground_truth" and b.engine == "synthetic" and b.frame_count == 4
    assert b.source["seed"] == clip.seeds[0] and b.source["caption"] == clip.captions[0]
    K = clip.K[0].double().numpy()
    for f, cam in enumerate(b.cameras):
        assert np.allclose(cam.K, K[f])
        assert np.allclose(cam.c2w, clip.c2w[0, f].double().numpy(), atol=1e-6)
        assert len(b.points[f].xyz) == int(torch.isfinite(clip.depth[0, f]).sum())
        assert np.array_equal(b.depth[f].depth, clip.depth[0, f].numpy())


def test_cli_writes_bundles_and_ground_truth(tmp_path):
    from backend.data import cli

    args = SimpleNamespace(split="heldout", count=2, out=tmp_path, frames=3, height=20, width=28, device="cpu",
                           textures=None, seed=10, fps=24.0, batch=2, dynamic="random",
                           fx=25.0, fy=27.0, cx=12.0, cy=9.5, preview=tmp_path / "sheet.png")
    assert cli.main(args) == 0
    dirs = sorted(tmp_path.glob("clip_*"))
    assert [d.name for d in dirs] == [f"clip_{HELDOUT_SEED_START + 10}", f"clip_{HELDOUT_SEED_START + 11}"]
    for d in dirs:
        b = read_bundle(d)
        assert (b.width, b.height) == (28, 20) and b.cameras[1].fy == 27.0
        gt = np.load(d / "gt" / "ground_truth.npz")
        assert gt["points"].shape == (3, 20, 28, 3) and gt["rays"].shape == (3, 20, 28, 6)
        assert gt["dynamic_mask"].dtype == bool
        meta = json.loads((d / "gt" / "scene.json").read_text())
        assert meta["caption"] == b.source["caption"]
    assert (tmp_path / "sheet.png").read_bytes()[:4] == b"\x89PNG"


def test_heldout_seeds_never_drawn_for_training():
    for gen in (0, 1, np.random.default_rng(2), torch.Generator().manual_seed(3)):
        seeds = np.asarray(sample_train_seeds(20000, gen))
        assert seeds.min() >= 0 and seeds.max() < HELDOUT_SEED_START
        assert not any(is_heldout(int(s)) for s in seeds[:100])
    from backend.data.cli import seeds_for

    assert all(is_heldout(s) for s in seeds_for("heldout", 5, 0))
    assert not any(is_heldout(s) for s in seeds_for("train", 1000, 0))


def test_sampling_in_worker_processes_is_identical():
    from backend.data.synth import sample_specs

    seeds = list(range(300, 308))
    here = sample_specs(seeds, frames=4, height=16, width=16)
    pool = sample_specs(seeds, frames=4, height=16, width=16, workers=2)
    for a, b in zip(here, pool):
        assert a.motion == b.motion and np.array_equal(a.c2w, b.c2w) and np.array_equal(a.K, b.K)
        assert [(p.kind, p.motion) for p in a.prims] == [(p.kind, p.motion) for p in b.prims]
        assert all(np.array_equal(p.pos, q.pos) for p, q in zip(a.prims, b.prims))
