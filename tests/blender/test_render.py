"""Cycles renders of imported bundles: points land on their pixels; the plate shows frame k at k."""

import bpy
import numpy as np

from backend.bundle import read_bundle
from blender.images import read_png


def load_rgb(path) -> np.ndarray:
    """(H, W, 3) uint8 top-down, read through Blender's own PNG loader."""
    return (read_png(path)[:, :, :3] * 255.0 + 0.5).astype(np.uint8)


def render_frame(scene, frame: int, out_path) -> np.ndarray:
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 4
    scene.cycles.use_denoising = False
    scene.cycles.pixel_filter_type = "BOX"
    scene.cycles.filter_width = 0.01  # sample pixel centres: compare pixel for pixel
    scene.render.film_transparent = False
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.filepath = str(out_path)
    scene.frame_set(frame)
    bpy.ops.render.render(write_still=True)
    return load_rgb(out_path)


def _import(path, **kw):
    assert bpy.ops.parallax.import_bundle(filepath=str(path), **kw) == {"FINISHED"}


def test_cycles_points_render_on_their_pixels(empty_scene, gt_bundles, tmp_path):
    """Points only (no plate): a point per pixel, so the render must reproduce the frame."""
    path = gt_bundles["landscape"]
    bundle = read_bundle(path)
    # 1.5 pixels wide (the default, in pixels of each point's frame) closes the gaps between
    # neighbouring pixels' points at every depth.
    _import(path, import_plate=False, camera_background=False)
    k = 5
    img = render_frame(empty_scene, 1 + k, tmp_path / "points.png")
    truth = np.asarray(load_rgb(bundle.frames[k]), np.float32)
    other = np.asarray(load_rgb(bundle.frames[0]), np.float32)
    valid = np.isfinite(bundle.depth[k].depth)  # sky pixels have no point
    covered = img.max(axis=2) > 0
    assert covered[valid].mean() > 0.95
    err = np.abs(img.astype(np.float32) - truth)[valid].mean()
    err_other = np.abs(img.astype(np.float32) - other)[valid].mean()
    assert err < 12.0, f"mean abs difference {err:.1f}/255"
    assert err < 0.6 * err_other, "render matches another frame as well as its own"


def test_cycles_plate_shows_bundle_frame_k_at_frame_k(empty_scene, gt_bundles, tmp_path):
    path = gt_bundles["square"]
    bundle = read_bundle(path)
    _import(path, import_points=False)
    for k in (0, 4, bundle.frame_count - 1):
        img = render_frame(empty_scene, 1 + k, tmp_path / f"plate_{k}.png").astype(np.int16)
        diffs = [np.abs(img - load_rgb(f).astype(np.int16)).mean() for f in bundle.frames]
        assert diffs[k] < 1.0, f"frame {k}: mean abs difference {diffs[k]:.2f}/255"
        assert int(np.argmin(diffs)) == k
