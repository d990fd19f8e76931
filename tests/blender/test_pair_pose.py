"""Pose from an image pair (InterPose) in real Blender (bpy 5.0.1): the import of a pair result,
the panel, the operator and the console API, without and with a real backend.

Without a backend: a pair bundle written here with backend.bundle (B turned 50 deg and moved
sideways from A, and a generated in-between video of 5 frames) imports as two still cameras
with their photos as background and image plane, and a generated fly-through camera keyed along
the video's cameras; the pair Scale sets B's distance from A, and Apply Scale re-imports with a
new one; a pair bundle pointing outside itself is refused with the scene untouched; the
operator names a missing, folder or non-image input before any backend starts.

With a real backend subprocess (the shipped tiny model on CPU, one OpenMP thread): a synthetic
wide-baseline pair (``python -m backend synth --pairs``) imports as two cameras whose relative
rotation is the bundle's within 0.1 deg, plus the fly-through; identical images come back as the
identity with a note, images of different sizes with a note, a 1x1 image and a non-image file
with a message naming the problem, and a cancel during generation stops the job with nothing
imported. One video of 4 frames at 1 denoising step keeps each job to a few seconds.
"""

import importlib
import json
import subprocess
import time
from pathlib import Path

import bpy
import numpy as np
import pytest

from blender.ui_layout import RecordingLayout as _Layout
from blender.images import read_png

from backend.bundle import Bundle, CameraFrame, encode_png, read_bundle, write_bundle

ROOT = Path(__file__).resolve().parents[2]
W, H = 64, 48
FX, FY, CX, CY = 56.0, 54.0, 31.2, 24.3
GEN_FRAMES, GEN_SIDE = 5, 32
ROT_TOL_DEG = 0.1
FLIP = np.diag([1.0, -1.0, -1.0])  # OpenCV camera axes <-> Blender camera axes (both ways)


def _conftest():
    # tests/conftest.py shadows the name "conftest": load this folder's by path.
    import importlib.util
    spec = importlib.util.spec_from_file_location("_parallax_blender_conftest", Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _yaw(deg: float) -> np.ndarray:
    """Rotation about the OpenCV y axis (down): a camera turning in the horizontal plane."""
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def _c2w(R, t) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = R, t
    return m


def _image(seed: int, w: int = W, h: int = H) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


B_C2W = _c2w(_yaw(-50.0), np.array([0.8, 0.0, 0.6]))  # baseline exactly 1, as the backend writes it


def write_pair_bundle(path: Path, generated: str | None = "generated") -> Path:
    """A pair_pose bundle as the backend writes it, with a generated in-between video whose
    cameras slerp from A to B on an arc (A at the origin, the last camera at B)."""
    source = {"images": ["a.png", "b.png"], "notes": []}
    if generated:
        source["generated"] = {"bundle": generated, "candidate": 0, "frames": GEN_FRAMES}
    scores = {"method": "interpose", "selected": 0, "d_med": 7.5, "d_total": 12.25, "top_agreement": 3.5,
              "reliability": "high", "videos": 2, "rotation_deg": 50.0}
    cams = [CameraFrame(0, np.eye(4), FX, FY, CX, CY), CameraFrame(1, B_C2W, FX, FY, CX, CY)]
    out = write_bundle(Bundle("pair_pose", W, H, 2, fps=1.0, engine="interpose", frames=[_image(1), _image(2)],
                              cameras=cams, source=source, scores=scores), path)
    if generated == "generated":
        gen_cams = []
        for i in range(GEN_FRAMES):
            s = i / (GEN_FRAMES - 1)
            gen_cams.append(CameraFrame(i, _c2w(_yaw(-50.0 * s), B_C2W[:3, 3] * s + [0, 0, 0.3 * np.sin(np.pi * s)]),
                                        28.0, 28.0, GEN_SIDE / 2 - 0.5, GEN_SIDE / 2 - 0.5))
        write_bundle(Bundle("generate", GEN_SIDE, GEN_SIDE, GEN_FRAMES, fps=8.0, engine="unified",
                            frames=[_image(10 + i, GEN_SIDE, GEN_SIDE) for i in range(GEN_FRAMES)], cameras=gen_cams,
                            source={"generated": True}), out / "generated")
    return out


@pytest.fixture(scope="module")
def pair_bundle(tmp_path_factory):
    return write_pair_bundle(tmp_path_factory.mktemp("pair") / "set_pair")


def _objects(coll) -> dict:
    """{"A": camera A, "B": camera B, "fly": fly-through camera or None, ...} of a pair import."""
    bpy.context.view_layer.update()  # matrix_world of objects made outside an operator
    by_name = {o.name.removeprefix(coll.name + " "): o for o in coll.objects}
    return {"A": by_name["Camera A"], "B": by_name["Camera B"], "fly": by_name.get("Fly-through (generated)"),
            "path": by_name.get("Fly-through path (generated)"),
            "planes": [o for o in coll.objects if o.type == "MESH"]}


def _rotation_deg(R) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))


def _relative_rotation_error(coll, bundle_path: Path) -> float:
    """Angle (deg) between B's rotation relative to A in Blender and in the bundle's cameras."""
    obj = _objects(coll)
    MA, MB = (np.array(obj[k].matrix_world.to_3x3().normalized()) for k in "AB")
    cams = read_bundle(bundle_path, load_points=False, load_depth=False).cameras
    RA, RB = (np.asarray(c.c2w)[:3, :3] for c in cams)
    want = FLIP @ RA.T @ RB @ FLIP  # Blender camera axes are OpenCV's with y and z flipped
    return _rotation_deg((MA.T @ MB).T @ want)


def _distance(a, b) -> float:
    return float((a.matrix_world.translation - b.matrix_world.translation).length)


def _import(path: Path) -> bpy.types.Collection:
    assert bpy.ops.parallax.import_bundle(filepath=str(path)) == {"FINISHED"}
    return bpy.data.collections[f"Parallax {path.name}"]


# -- the import, without a backend ---------------------------------------------------------

def test_pair_imports_two_cameras_with_photos_and_the_generated_fly_through(settings, pair_bundle):
    scene = settings.id_data
    coll = _import(pair_bundle)
    obj = _objects(coll)
    assert _relative_rotation_error(coll, pair_bundle) < 1e-3
    assert np.allclose(obj["A"].matrix_world.translation, (0, 0, 0), atol=1e-6)
    assert _distance(obj["A"], obj["B"]) == pytest.approx(1.0, abs=1e-5)
    # B's centre in Blender's world is the bundle's, axes mapped (x, z, -y): 0.8 right, 0.6 ahead.
    assert np.allclose(obj["B"].matrix_world.translation, (0.8, 0.6, 0.0), atol=1e-5)
    for label, cam in (("A", obj["A"]), ("B", obj["B"])):
        assert cam.animation_data is None  # still cameras: nothing snaps a moved camera back
        bg = cam.data.background_images[0]
        assert cam.data.show_background_images and bg.image.name == f"{coll.name} Photo {label}"
        assert tuple(bg.image.size) == (W, H)
        assert cam.data.lens == pytest.approx(FX * 36.0 / W)
    # One image plane per photo, parented to its camera, and the fly-through's.
    parents = sorted(p.parent.name.removeprefix(coll.name + " ") for p in obj["planes"])
    assert parents == ["Camera A", "Camera B", "Fly-through (generated)"]

    fly = obj["fly"]
    assert fly.type == "CAMERA" and fly.get("parallax_generated") is True
    assert fly.data.background_images[0].image.source == "SEQUENCE"
    # Keyed along the generated video: A at its first frame, B's place at its last.
    assert (scene.frame_start, scene.frame_end) == (1, GEN_FRAMES)
    scene.frame_set(1)
    assert _distance(fly, obj["A"]) < 1e-5
    scene.frame_set(GEN_FRAMES)
    assert _distance(fly, obj["B"]) < 1e-5
    assert _rotation_deg(np.array(fly.matrix_world.to_3x3()).T @ np.array(obj["B"].matrix_world.to_3x3())) < 1e-3
    assert obj["path"] is not None and len(obj["path"].data.splines[0].points) == GEN_FRAMES
    assert scene.camera == obj["A"] and (scene.render.resolution_x, scene.render.resolution_y) == (W, H)

    facts = coll["parallax_pair"]
    assert (facts["reliability"], facts["d_total"], facts["agreement"]) == ("high", 12.25, 3.5)
    summary = list(coll["parallax_summary"])
    assert summary[:3] == ["Reliability: high", "D_total 12.2 deg (D_med 7.5)", "top videos agree within 3.5 deg"]


def test_scale_sets_bs_distance_and_apply_scale_reimports(settings, pair_bundle):
    scene = settings.id_data
    settings.pair_scale = 3.5  # the known baseline, metres
    coll = _import(pair_bundle)
    obj = _objects(coll)
    assert _distance(obj["A"], obj["B"]) == pytest.approx(3.5, rel=1e-6)
    assert _relative_rotation_error(coll, pair_bundle) < 1e-3  # rotation does not scale
    scene.frame_set(GEN_FRAMES)
    assert _distance(obj["fly"], obj["A"]) == pytest.approx(3.5, rel=1e-6)  # the fly-through scales with it
    assert coll["parallax_pair"]["baseline"] == pytest.approx(3.5)

    settings.pair_scale = 0.25
    assert bpy.ops.parallax.pair_apply_scale(collection=coll.name) == {"FINISHED"}
    coll = bpy.data.collections[f"Parallax {pair_bundle.name}"]  # the same import, replaced
    assert sum(c.get("parallax_task") == "pair_pose" for c in bpy.data.collections) == 1
    assert _distance(*(_objects(coll)[k] for k in "AB")) == pytest.approx(0.25, rel=1e-6)
    with pytest.raises(RuntimeError, match="no imported pair result"):
        bpy.ops.parallax.pair_apply_scale(collection="nothing here")


def test_a_generated_folder_outside_the_bundle_is_refused_untouched(settings, tmp_path):
    bad = write_pair_bundle(tmp_path / "escaping", generated="../elsewhere")
    before = (set(bpy.data.objects.keys()), set(bpy.data.collections.keys()), settings.id_data.frame_end)
    with pytest.raises(RuntimeError, match="points outside the bundle folder"):
        bpy.ops.parallax.import_bundle(filepath=str(bad))
    assert (set(bpy.data.objects.keys()), set(bpy.data.collections.keys()), settings.id_data.frame_end) == before
    # No generated video (the pair-only estimate): the two cameras alone.
    plain = write_pair_bundle(tmp_path / "pair_only", generated=None)
    obj = _objects(_import(plain))
    assert obj["fly"] is None and obj["path"] is None and _distance(obj["A"], obj["B"]) == pytest.approx(1.0)


# -- the panel, the operator and the console API, without a backend ---------------------------

def _png(path: Path, rgb: np.ndarray) -> Path:
    path.write_bytes(encode_png(rgb))
    return path


def test_operator_sends_the_panels_settings_and_names_bad_inputs(captured, settings, tmp_path):
    a, b = _png(tmp_path / "a.png", _image(1)), _png(tmp_path / "b.png", _image(2))
    s = settings
    s.image_a, s.image_b, s.pair_videos, s.pair_steps, s.pair_estimator = str(a), str(b), 6, 12, "colmap"
    assert bpy.ops.parallax.pair_pose() == {"FINISHED"}
    task, inputs, params = captured[-1]
    assert task == "pair_pose" and inputs == [a, b]
    assert params == {"videos": 6, "frames": 16, "steps": 12, "subsets": 10, "estimator": "colmap",
                      "generator": "unified"}
    calls = len(captured)
    (tmp_path / "notes.txt").write_text("not a picture")
    for kwargs, words in [({"image_a": " "}, "choose image A first"),
                          ({"image_b": str(tmp_path / "gone.png")}, "image B: no such file"),
                          ({"image_a": str(tmp_path)}, "is a folder"),
                          ({"image_b": str(tmp_path / "notes.txt")}, "'notes.txt' is not an image file")]:
        with pytest.raises(RuntimeError, match=words):
            bpy.ops.parallax.pair_pose(**kwargs)
    assert len(captured) == calls  # refused before any job started
    assert (s.image_a, s.image_b) == (str(a), str(b))  # inputs kept


def test_console_api_pair_pose(captured, addon, settings, tmp_path):
    api = importlib.import_module(addon.__name__ + ".api")
    a, b = _png(tmp_path / "a.png", _image(1)), _png(tmp_path / "b.png", _image(2))
    assert api.pair_pose(str(a), str(b), videos=0, scale=2.0, intrinsics=(50, 50, 32, 24), seed=3, wait=False) is None
    task, inputs, params = captured[-1]
    assert task == "pair_pose" and inputs == [a, b] and settings.pair_scale == 2.0
    assert params == {"videos": 0, "frames": 16, "steps": 25, "subsets": 10, "estimator": "unified",
                      "generator": "unified", "intrinsics": [50.0, 50.0, 32.0, 24.0], "seed": 3}
    with pytest.raises(ValueError, match="image B: no such file"):
        api.pair_pose(str(a), str(tmp_path / "missing.jpg"))
    assert "pair_pose" in api.__all__


def _draw():
    import types
    cls = bpy.types.PARALLAX_PT_pair_pose
    log = []

    class Stand:  # the panel instance Blender would make, with the recorder as its layout
        layout = _Layout(log)

        def __getattr__(self, name):
            attr = getattr(cls, name)
            return attr.__get__(self) if isinstance(attr, types.FunctionType) else attr

    cls.draw(Stand(), bpy.context)
    return log


@pytest.fixture
def health(addon):
    link = importlib.import_module(addon.__name__ + ".backend_link")
    prefs = link.prefs()
    saved = link.Health.data, link.Health.error, prefs.backend_mode, prefs.python_path
    prefs.backend_mode, prefs.python_path = "LOCAL", _conftest().BACKEND_PYTHON
    yield link.Health
    link.Health.data, link.Health.error, prefs.backend_mode, prefs.python_path = saved


def test_panel_follows_health_and_shows_the_result(health, settings, pair_bundle):
    cls = bpy.types.PARALLAX_PT_pair_pose
    health.data = {"tasks": {"solve": {"available": True, "reason": None}}}
    assert not cls.poll(bpy.context) and not bpy.ops.parallax.pair_pose.poll()
    schema = {"properties": {"generator": {"const": "unified"}, "estimator": {"enum": ["unified", "colmap"]}}}
    health.data = {"tasks": {"pair_pose": {"available": True, "reason": None, "params_schema": schema}}}
    assert cls.poll(bpy.context) and bpy.ops.parallax.pair_pose.poll()
    log = _draw()
    props = {name for kind, name in log if kind == "prop"}
    assert props == {"image_a", "image_b", "pair_videos", "pair_steps", "pair_frames", "pair_subsets",
                     "pair_estimator", "pair_scale"}  # one generator offered: no choice to show
    assert ("operator", "parallax.pair_pose") in log
    assert not any(kind == "label" for kind, _ in log)  # no result yet
    schema["properties"]["generator"] = {"type": "string", "default": "unified"}  # hub models: any id
    assert ("prop", "pair_generator") in _draw()

    _import(pair_bundle)  # a result in the scene: its grade and scores, plainly
    labels = [text for kind, text in _draw() if kind == "label"]
    assert {"Reliability: high", "D_total 12.2 deg (D_med 7.5)", "top videos agree within 3.5 deg"} <= set(labels)
    settings.pair_scale = 2.0  # a Scale not yet applied offers to apply it
    assert ("operator", "parallax.pair_apply_scale") in _draw()

    reason = "the model weights are missing"
    health.data["tasks"]["pair_pose"] = {"available": False, "reason": reason}
    log = _draw()
    assert any(reason in text for kind, text in log if kind == "label")
    assert ("operator", "parallax.pair_pose") not in log


# -- end to end: a real backend ------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic_pair(tmp_path_factory):
    """One held-out wide-baseline pair (64x48) with its true intrinsics, rendered by the backend."""
    out = tmp_path_factory.mktemp("pairs")
    cmd = [_conftest().BACKEND_PYTHON, "-m", "backend", "synth", "--pairs", "1", "--width", str(W), "--height", str(H),
           "--out", str(out), "--device", "cpu"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=600)
    root = next(out.rglob("bundle.json")).parent
    cam = json.loads((root / "cameras.json").read_text())["frames"][0]
    return root / "frames" / "000000.png", root / "frames" / "000001.png", [cam[k] for k in ("fx", "fy", "cx", "cy")]


@pytest.fixture(scope="module")
def local_backend(addon):
    link = importlib.import_module(addon.__name__ + ".backend_link")
    api = importlib.import_module(addon.__name__ + ".api")
    prefs = link.prefs()
    prefs.backend_mode, prefs.python_path, prefs.device = "LOCAL", _conftest().BACKEND_PYTHON, "cpu"
    link.stop()  # a backend left by another module would not have this environment
    with pytest.MonkeyPatch.context() as mp:  # one OpenMP thread: on 2 shared cores more only fight
        mp.setenv("OMP_NUM_THREADS", "1")
        if not api.tasks().get("pair_pose"):
            task = link.Health.data.get("tasks", {}).get("pair_pose")
            pytest.skip("the backend does not offer pair_pose: "
                        + (str(task.get("reason")) if task else "not listed in /v1/health"))
    yield api, importlib.import_module(addon.__name__ + ".operators.jobs")
    link.stop()


SMALL = {"videos": 1, "frames": 4, "steps": 1, "subsets": 2}


def test_synthetic_pair_end_to_end(local_backend, synthetic_pair, settings):
    api, _ = local_backend
    a, b, K = synthetic_pair
    t0 = time.perf_counter()
    coll = api.pair_pose(str(a), str(b), intrinsics=K, **SMALL)
    print(f"pair_pose + import: {time.perf_counter() - t0:.1f} s")
    bundle_path = Path(coll["parallax_bundle"])
    error = _relative_rotation_error(coll, bundle_path)
    print(f"relative rotation: Blender vs bundle {error:.2e} deg, "
          f"{coll['parallax_pair']['rotation_deg']:.1f} deg between A and B")
    assert error < ROT_TOL_DEG
    obj = _objects(coll)
    assert _distance(obj["A"], obj["B"]) == pytest.approx(1.0, rel=1e-5)
    fly = obj["fly"]
    assert fly is not None and fly.type == "CAMERA"
    assert len(read_bundle(bundle_path / "generated", load_points=False).frames) == SMALL["frames"]
    assert settings.id_data.frame_end == SMALL["frames"]
    assert coll["parallax_pair"]["reliability"] in ("high", "medium", "low")
    assert list(coll["parallax_summary"])[0].startswith("Reliability: ")

    # The known baseline: B (and the fly-through with it) moves out along the same direction.
    direction, name = np.array(obj["B"].matrix_world.translation), coll.name
    settings.pair_scale = 2.5
    assert bpy.ops.parallax.pair_apply_scale(collection=name) == {"FINISHED"}
    coll = bpy.data.collections[name]  # the same result, imported again in its place
    assert np.allclose(np.array(_objects(coll)["B"].matrix_world.translation), 2.5 * direction, atol=1e-5)
    assert _relative_rotation_error(coll, bundle_path) < ROT_TOL_DEG


def _run_operator(settings, a, b, **small):
    s = settings
    s.image_a, s.image_b = str(a), str(b)
    s.pair_videos, s.pair_frames, s.pair_steps, s.pair_subsets = (small.get(k, v) for k, v in SMALL.items())
    return bpy.ops.parallax.pair_pose()


def test_identical_images_give_the_identity_with_a_note(local_backend, synthetic_pair, settings, capfd):
    a, _, _ = synthetic_pair
    assert _run_operator(settings, a, a) == {"FINISHED"}
    out = capfd.readouterr().out
    assert "the two images are the same picture: the relative pose is the identity" in out  # the WARNING report
    _, jobs = local_backend
    coll = bpy.data.collections[jobs.Job.collection]
    obj = _objects(coll)
    assert _distance(obj["A"], obj["B"]) < 1e-9 and obj["fly"] is None
    assert _rotation_deg(np.array(obj["A"].matrix_world.to_3x3()).T @ np.array(obj["B"].matrix_world.to_3x3())) < 1e-4
    assert coll["parallax_pair"]["method"] == "identical"


def test_images_of_different_sizes_are_answered_with_a_note(local_backend, synthetic_pair, settings, tmp_path, capfd):
    a, b, _ = synthetic_pair
    smaller = _png(tmp_path / "b_cropped.png", np.ascontiguousarray(_read_png(b)[:, 4:-4]))  # 56x48 against 64x48
    assert _run_operator(settings, a, smaller) == {"FINISHED"}
    assert "the images have different sizes" in capfd.readouterr().out


def _read_png(path: Path) -> np.ndarray:
    return np.round(read_png(path)[:, :, :3] * 255).astype(np.uint8)


def test_bad_images_get_a_clear_message(local_backend, synthetic_pair, settings, tmp_path):
    a, _, _ = synthetic_pair
    tiny = _png(tmp_path / "tiny.png", np.full((1, 1, 3), 128, np.uint8))
    with pytest.raises(RuntimeError, match=r"tiny\.png.*1x1 px are too small"):
        _run_operator(settings, a, tiny)
    fake = tmp_path / "fake.jpg"
    fake.write_text("this is a text file with an image's name")
    with pytest.raises(RuntimeError, match=r"'fake\.jpg' is not a readable image"):
        _run_operator(settings, fake, a)
    assert not any(c.get("parallax_task") == "pair_pose" for c in bpy.data.collections)


def test_cancel_during_generation_stops_the_job(local_backend, synthetic_pair, settings):
    api, jobs = local_backend
    a, b, _ = synthetic_pair
    s = settings
    s.image_a, s.image_b, s.pair_videos, s.pair_frames, s.pair_steps = str(a), str(b), 2, 16, 100
    before = set(bpy.data.collections.keys())
    assert bpy.ops.parallax.pair_pose(wait=False) == {"FINISHED"}
    deadline = time.monotonic() + 120
    while "generating" not in (jobs.Job.snapshot.stage or "") and time.monotonic() < deadline:
        assert jobs.Job.handle is not None, jobs.Job.error  # ended before generating
        jobs.poll()  # what the timer runs in the UI
        time.sleep(0.05)
    stage = jobs.Job.snapshot.stage
    assert "generating" in stage, jobs.Job.snapshot
    assert bpy.ops.parallax.cancel_job() == {"FINISHED"}
    t0 = time.monotonic()
    while jobs.Job.handle is not None and time.monotonic() - t0 < 60:
        jobs.poll()
        time.sleep(0.05)
    print(f"cancelled at {stage!r}, stopped in {time.monotonic() - t0:.1f} s")
    assert jobs.Job.snapshot.phase == "cancelled" and "cancelled" in jobs.Job.error
    assert set(bpy.data.collections.keys()) == before  # nothing imported
    assert api.tasks()["pair_pose"]  # the server still serves
