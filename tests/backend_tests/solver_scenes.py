"""The scenes the solver tests share: a rendered clip (seed 0 of the data engine, a static
scene with photo textures from ``../shared/textures`` when present, one camera motion), and a
noise-free pycolmap scene with its verified matches. Imported as ``backend_tests.solver_scenes``
(tests/conftest.py puts tests/ on sys.path)."""

from __future__ import annotations

import numpy as np
import pytest


def textured_clip(frames: int = 16, height: int = 192, width: int = 256, motion: str = "orbit"):
    """(clip, frames as contiguous (H, W, 3) uint8 arrays, ground-truth c2w (F, 4, 4) float64,
    K (3, 3) float64); skips when the data engine is not installed."""
    synth = pytest.importorskip("backend.data.synth", reason="needs backend.data.synth")
    from backend.eval.datasets import find_shared

    clip = synth.render_clip(seed=0, frames=frames, height=height, width=width, textures=find_shared("textures"),
                             dynamic=False, motion=motion)
    images = [np.ascontiguousarray(f) for f in clip.rgb[0].cpu().numpy()]
    return (clip, images, clip.c2w[0].cpu().numpy().astype(np.float64),
            clip.K[0, 0].cpu().numpy().astype(np.float64))


def colmap_scene(tmp_path, frames: int = 5):
    """A noise-free pycolmap synthetic scene (PINHOLE 640x480, 80 points) written to
    ``tmp_path/database.db``: (reconstruction, its verified matches, every one exact, image names)."""
    pycolmap = pytest.importorskip("pycolmap")
    from backend.engines.colmap_select import read_verified_matches

    db = pycolmap.Database.open(str(tmp_path / "database.db"))
    opts = pycolmap.SyntheticDatasetOptions()
    opts.num_rigs, opts.num_frames_per_rig, opts.num_points3D = 1, frames, 80
    opts.camera_model_id = pycolmap.CameraModelId.PINHOLE
    opts.camera_width, opts.camera_height, opts.camera_params = 640, 480, [500.0, 520.0, 330.0, 250.0]
    rec = pycolmap.synthesize_dataset(opts, db)
    db.close()
    names = [im.name for im in sorted(rec.images.values(), key=lambda im: im.name)]
    return rec, read_verified_matches(pycolmap, tmp_path / "database.db"), names
