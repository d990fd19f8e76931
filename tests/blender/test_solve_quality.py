"""A solve's quality after import: the summary and the per-frame plot in the N-panel, the
unsolved frames listed and keyed as such, and the camera path (a curve through the solved
camera centres, broken at unsolved frames, with frustum markers, never rendered)."""

import importlib
import types

import bpy
import numpy as np
import pytest

from backend import bundle as B
from blender.test_distortion import distorted_solve
from blender.ui_layout import RecordingLayout as _Layout

UNSOLVED = (3, 4)


class _Panel:
    def __init__(self, cls, layout):
        self._cls, self.layout = cls, layout

    def __getattr__(self, name):
        attr = getattr(self._cls, name)
        return attr.__get__(self) if isinstance(attr, types.FunctionType) else attr


def _draw(panel_name):
    log = []
    cls = getattr(bpy.types, panel_name)
    cls.draw(_Panel(cls, _Layout(log)), bpy.context)
    return log


def _import(path, **kw):
    assert bpy.ops.parallax.import_bundle(filepath=str(path), **kw) == {"FINISHED"}
    return bpy.data.collections[f"Parallax {path.name}"]


@pytest.fixture
def solve(tmp_path):
    path, _, _ = distorted_solve(tmp_path / "shot", frames=12, unsolved=UNSOLVED)
    return path, B.read_bundle(path)


def test_panel_shows_summary_plot_and_unsolved_frames(empty_scene, solve, addon):
    path, bundle = solve
    coll = _import(path)
    log = _draw("PARALLAX_PT_import")
    labels = [entry[1] for entry in log if entry[0] == "label"]
    text = "\n".join(labels)
    assert "10/12 frames solved" in text
    assert "reprojection error 0.31 px" in text
    assert "auto chose aliked: consistency aliked 0.83, sift 0.41" in text
    assert "worst: frame 12, 0.75 px" in text  # bundle frame 11 is scene frame 12
    # Scene frame numbers (bundle frames 3 and 4), the way the timeline counts.
    assert "Not solved: 2 frames (no camera key there)" in text and "  4-5" in labels
    assert not any(line.startswith("not solved:") for line in labels)  # bundle numbering stays out
    icons = [entry for entry in log if entry[0] == "icon"]
    assert len(icons) == 1
    image = bpy.data.images[coll["parallax_quality_plot"]]
    assert tuple(image.size) == (10 * bundle.frame_count, 40)  # the bundle's plot, as drawn
    assert image.packed_file is not None  # kept in the .blend with the import
    assert image.preview is not None and icons[0][1] == image.preview.icon_id
    assert f"Per-frame quality: {image.name}" in labels
    assert f"Redistort renders: node group {coll['parallax_redistort_group']}" in labels

    # The solve section shows the same after its job imported the result.
    jobs = importlib.import_module(addon.__name__ + ".operators.jobs")
    saved = jobs.Job.task, jobs.Job.collection, jobs.Job.error
    jobs.Job.task, jobs.Job.collection, jobs.Job.error = "solve", coll.name, ""
    try:
        log = []
        panels = importlib.import_module(addon.__name__ + ".panels")
        panels._job_status(_Layout(log), "solve")
    finally:
        jobs.Job.task, jobs.Job.collection, jobs.Job.error = saved
    assert "auto chose aliked: consistency aliked 0.83, sift 0.41" in [e[1] for e in log if e[0] == "label"]
    assert sum(e[0] == "icon" for e in log) == 1


def test_unsolved_frames_are_keyed_as_such(empty_scene, solve):
    path, bundle = solve
    coll = _import(path)
    cam = empty_scene.camera
    assert list(coll["parallax_unsolved_frames"]) == [1 + i for i in UNSOLVED]
    for f in range(bundle.frame_count):
        empty_scene.frame_set(1 + f)
        assert cam["parallax_solved"] == (0 if f in UNSOLVED else 1), f
    # No pose key sits on an unsolved frame.
    keyed = {int(kp.co[0]) for fc in cam.animation_data.action.layers[0].strips[0].channelbags[0].fcurves
             if fc.data_path == "location" for kp in fc.keyframe_points}
    assert keyed == {1 + c.index for c in bundle.cameras if c.c2w is not None}


def test_camera_path_follows_the_solved_centres(empty_scene, solve):
    path, bundle = solve
    coll = _import(path, path_marker_every=5)
    cam = empty_scene.camera
    path_coll = next(c for c in coll.children if c.name.endswith("Camera Path"))
    assert path_coll.hide_render
    curve_obj = next(o for o in path_coll.objects if o.type == "CURVE")
    markers = next(o for o in path_coll.objects if o.type == "MESH")
    assert curve_obj.hide_render and markers.hide_render

    # One spline per run of solved frames: 0-2 and 5-11, nothing across the gap.
    splines = curve_obj.data.splines
    assert [len(s.points) for s in splines] == [3, 7]
    pts = np.array([tuple(p.co)[:3] for s in splines for p in s.points])
    centres = []
    for c in bundle.cameras:
        if c.c2w is not None:
            empty_scene.frame_set(1 + c.index)
            centres.append(tuple(cam.matrix_world.translation))
    np.testing.assert_allclose(pts, np.array(centres), atol=1e-5)

    # Frustum markers at the solved frames 0, 5, 10: 8 vertices each, the apex on the centre.
    assert list(markers["parallax_frames"]) == [0, 5, 10]
    co = np.empty(len(markers.data.vertices) * 3, np.float32)
    markers.data.vertices.foreach_get("co", co)
    co = co.reshape(-1, 8, 3)
    for k, f in enumerate((0, 5, 10)):
        empty_scene.frame_set(1 + f)
        np.testing.assert_allclose(co[k, 0], np.array(cam.matrix_world.translation), atol=1e-5)
        # The far rectangle lies in front of the camera (its -Z), centred near the view axis.
        forward = -np.array(cam.matrix_world.to_3x3().col[2])
        assert np.dot(co[k, 1:5].mean(axis=0) - co[k, 0], forward) > 0

    # Options off: no path, no markers.
    coll = _import(path, camera_path=False)
    assert not any(c.name.endswith("Camera Path") for c in coll.children)
    assert len(bpy.data.curves) == 0
    coll = _import(path, path_marker_every=0)
    path_coll = next(c for c in coll.children if c.name.endswith("Camera Path"))
    assert [o.type for o in path_coll.objects] == ["CURVE"]


def test_panel_without_quality_data_draws_plain_summary(empty_scene, tmp_path):
    """A bundle with no plots, no per-frame scores and every frame solved: the summary only."""
    from backend_tests.test_bundle import make_bundle
    path = B.write_bundle(make_bundle(frames=4, width=40, height=30, points=20, unsolved=()), tmp_path / "plain")
    coll = _import(path)
    log = _draw("PARALLAX_PT_import")
    assert not any(e[0] == "icon" for e in log)
    labels = [e[1] for e in log if e[0] == "label"]
    summary = B.read_bundle(path).summary()
    assert summary[0].startswith("4/4 frames solved") and all(line in labels for line in summary)
    assert not any(t.startswith("Not solved") for t in labels)
    assert "parallax_quality_plot" not in coll
