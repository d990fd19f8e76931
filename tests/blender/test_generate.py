"""Generate a shot from real Blender (bpy 5.0.1): the add-on starts a REAL backend (.venv, CPU,
the shipped tiny model), ``parallax.generate_shot`` blocks in background mode, and the result is
imported: the plate (an image sequence on a plane parented to the camera, and the camera
background) and a camera keyed on every generated frame, matching the bundle's cameras.
~15 s on 2 cores (most of it the backend starting and loading the model)."""

from pathlib import Path

import bpy
import numpy as np
import pytest


def _conftest():
    # tests/conftest.py shadows the name "conftest": load this folder's by path.
    import importlib.util
    spec = importlib.util.spec_from_file_location("_parallax_blender_conftest", Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BACKEND_PYTHON = _conftest().BACKEND_PYTHON
FRAMES, STEPS = 4, 3


@pytest.fixture(scope="module")
def local(addon):
    import importlib
    jobs = importlib.import_module(addon.__name__ + ".operators.jobs")
    backend = importlib.import_module(addon.__name__ + ".backend_link")
    api = importlib.import_module(addon.__name__ + ".api")
    bundle = importlib.import_module(addon.__name__ + ".backend.bundle")
    prefs = backend.prefs()
    prefs.backend_mode, prefs.python_path, prefs.device = "LOCAL", BACKEND_PYTHON, "cpu"
    backend.stop()  # a backend left by another module would not have this environment
    # One OpenMP thread for the backend this module starts: on a shared 2-core machine more
    # threads only fight (measured 10x slower).
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        if not api.tasks().get("generate"):
            pytest.skip("the backend reports generate unavailable: "
                        + str(backend.Health.data["tasks"]["generate"]["reason"]))
    yield jobs, backend, bundle
    backend.stop()


def _keyed_frames(obj, path):
    ad = obj.animation_data
    action = ad.action
    if hasattr(action, "layers") and len(action.layers):
        from bpy_extras import anim_utils
        curves = anim_utils.action_get_channelbag_for_slot(action, ad.action_slot).fcurves
    else:
        curves = action.fcurves
    return {fc.array_index: sorted(k.co[0] for k in fc.keyframe_points) for fc in curves if fc.data_path == path}


def test_generate_shot_imports_plate_and_animated_camera(local, empty_scene):
    jobs, backend, bundle_mod = local
    s = empty_scene.parallax
    s.gen_prompt, s.gen_frames, s.gen_steps, s.gen_seed = "a camera orbits a red box on a table", FRAMES, STEPS, 3
    assert bpy.ops.parallax.generate_shot() == {"FINISHED"}, jobs.Job.error
    snap = jobs.Job.snapshot
    assert snap.phase == "done" and not jobs.Job.error
    coll = bpy.data.collections[jobs.Job.collection]
    bundle = bundle_mod.read_bundle(snap.bundle_dir)
    assert bundle.task == "generate" and bundle.frame_count == FRAMES
    assert bundle.source["prompt"] == s.gen_prompt and bundle.source["steps"] == STEPS

    scene = empty_scene
    assert (scene.frame_start, scene.frame_end) == (1, FRAMES)
    assert (scene.render.resolution_x, scene.render.resolution_y) == (bundle.width, bundle.height)
    cam = next(o for o in coll.all_objects if o.type == "CAMERA")
    assert scene.camera == cam
    # Keyed on every frame: each location and quaternion channel has a key at frames 1..F.
    every = [float(f) for f in range(1, FRAMES + 1)]
    loc, rot = _keyed_frames(cam, "location"), _keyed_frames(cam, "rotation_quaternion")
    assert sorted(loc) == [0, 1, 2] and sorted(rot) == [0, 1, 2, 3]
    assert all(frames == every for frames in [*loc.values(), *rot.values()]), (loc, rot)
    # The keys reproduce the bundle's cameras: relative poses (Blender camera -> OpenCV: flip Y, Z).
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    got = []
    for f in range(FRAMES):
        scene.frame_set(1 + f)
        got.append(np.array(cam.matrix_world) @ flip)
    got, want = np.array(got), np.array([c.c2w for c in bundle.cameras])
    rel_got = np.linalg.inv(got[0]) @ got
    np.testing.assert_allclose(rel_got[:, :3, :3], want[:, :3, :3], atol=1e-4)
    np.testing.assert_allclose(rel_got[:, :3, 3], want[:, :3, 3], atol=1e-4 * max(1.0, np.abs(want).max()))

    # The plate: the generated frames as an image sequence, on a plane that follows the camera
    # and as the camera's background.
    plate = next(o for o in coll.all_objects if o.type == "MESH" and o.parent == cam)
    image = next(n.image for n in plate.active_material.node_tree.nodes if n.type == "TEX_IMAGE")
    assert image.source == "SEQUENCE" and tuple(image.size) == (bundle.width, bundle.height)
    assert Path(bpy.path.abspath(image.filepath)).resolve() == Path(bundle.frames[0]).resolve()
    bg = cam.data.background_images[0]
    assert cam.data.show_background_images and bg.image == image and bg.image_user.frame_duration == FRAMES

