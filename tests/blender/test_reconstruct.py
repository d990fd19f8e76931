"""Dynamic-scene (4D) results in real Blender (bpy 5.0.1).

A synthetic reconstruct bundle (written here with backend.bundle: a static wall and floor seen
by a trucking camera, and a small box of points moving through it, flagged ``dynamic``) checks
the point node group's live inputs on the evaluated point cloud (what Cycles and EEVEE render):
static only, dynamic only, and the accumulated static background with the current frame's
dynamic points; the colour modes; and that results without flags behave as before. Then the
import path (the flags arrive as a point attribute, the import options reach the modifier, a
Cycles render shows the moving points magenta), the Reconstruct operator and console API without
a backend, and an end-to-end reconstruction of a rendered dynamic clip on a real backend.

The end-to-end test (~30 s on 2 cores) is skipped, with the backend's reason, where the backend
does not offer reconstruct.
"""

import importlib
import subprocess
import time
from pathlib import Path

import bpy
import numpy as np
import pytest

from backend.bundle import Bundle, CameraFrame, PointFrame, read_bundle, write_bundle
from blender.images import read_png

ROOT = Path(__file__).resolve().parents[2]
FRAMES, WIDTH, HEIGHT = 6, 48, 36
STATIC_RGB, DYNAMIC_RGB = (90, 140, 200), (220, 40, 30)



# -- a synthetic 4D bundle ----------------------------------------------------------------

def _static_cloud() -> np.ndarray:
    """A wall at z = 4 and a floor (OpenCV: y down, so y = +1 is below the camera)."""
    wx, wy = np.meshgrid(np.linspace(-1.5, 1.5, 12), np.linspace(-1.0, 1.0, 9))
    wall = np.stack([wx.ravel(), wy.ravel(), np.full(wx.size, 4.0)], 1)
    fx, fz = np.meshgrid(np.linspace(-1.5, 1.5, 12), np.linspace(2.0, 3.8, 6))
    floor = np.stack([fx.ravel(), np.full(fx.size, 1.0), fz.ravel()], 1)
    return np.concatenate([wall, floor]).astype(np.float32)


def _box(frame: int) -> np.ndarray:
    """A 4x4x2 box of points that moves +x by 0.15 per frame, in front of the wall."""
    g = np.stack(np.meshgrid(np.arange(4), np.arange(4), np.arange(2), indexing="ij"), -1).reshape(-1, 3)
    return (g * 0.08 + [-0.5 + 0.15 * frame, 0.2, 3.0]).astype(np.float32)


def write_dynamic_bundle(path: Path, flags: bool = True) -> Path:
    static = _static_cloud()
    rng = np.random.default_rng(0)
    cams, points = [], []
    for f in range(FRAMES):
        c2w = np.eye(4)
        c2w[0, 3] = 0.05 * f  # truck right
        cams.append(CameraFrame(f, c2w, 40.0, 40.0, WIDTH / 2 - 0.5, HEIGHT / 2 - 0.5))
        box = _box(f)
        xyz = np.concatenate([static, box])
        rgb = np.array([STATIC_RGB] * len(static) + [DYNAMIC_RGB] * len(box), np.uint8)
        conf = np.concatenate([rng.uniform(0.5, 1.0, len(static)), np.full(len(box), 0.9)]).astype(np.float16)
        dynamic = np.r_[np.zeros(len(static), bool), np.ones(len(box), bool)] if flags else None
        points.append(PointFrame(xyz, rgb, conf, dynamic))
    frames = [np.full((HEIGHT, WIDTH, 3), 40, np.uint8) for _ in range(FRAMES)]
    return write_bundle(Bundle("reconstruct", WIDTH, HEIGHT, FRAMES, fps=24.0, engine="synthetic-4d",
                               frames=frames, cameras=cams, points=points), path)


N_STATIC, N_DYNAMIC = len(_static_cloud()), len(_box(0))


@pytest.fixture(scope="module")
def bundle4d(tmp_path_factory):
    return write_dynamic_bundle(tmp_path_factory.mktemp("dyn") / "street")


@pytest.fixture(scope="module")
def bundle_plain(tmp_path_factory):
    return write_dynamic_bundle(tmp_path_factory.mktemp("plain") / "street_plain", flags=False)


@pytest.fixture
def points_mod(addon):
    return importlib.import_module(addon.__name__ + ".importers.points")


def _points_object(points_mod, path: Path, **kw):
    """The points object as the importer makes it, from the bundle's arrays (bundle world)."""
    b = read_bundle(path, load_depth=False)
    xyz = np.concatenate([p.xyz for p in b.points])
    rgb = np.concatenate([p.rgb for p in b.points])
    conf = np.concatenate([p.conf for p in b.points]).astype(np.float32)
    frame = np.repeat(np.arange(b.frame_count, dtype=np.int32) + 1, [len(p.xyz) for p in b.points])
    dynamic = None if b.points[0].dynamic is None else np.concatenate([p.dynamic for p in b.points])
    coll = bpy.data.collections.new("Parallax test")
    bpy.context.scene.collection.children.link(coll)
    return points_mod.create_points("Points", xyz, rgb, conf, frame, np.full(len(xyz), 0.01, np.float32), coll,
                                    1.5, dynamic=dynamic, **kw)


def _evaluated(obj, frame: int):
    """(positions, dynamic flags) of the native point cloud the modifier outputs on ``frame``."""
    bpy.context.scene.frame_set(frame)
    geometry = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).evaluated_geometry()
    pc = geometry.pointcloud  # valid while ``geometry`` lives
    if pc is None:
        return np.zeros((0, 3), np.float32), np.zeros(0, bool)
    pos = np.empty(len(pc.points) * 3, np.float32)
    pc.attributes["position"].data.foreach_get("vector", pos)
    dyn = np.zeros(len(pc.points), bool)
    if "dynamic" in pc.attributes:
        pc.attributes["dynamic"].data.foreach_get("value", dyn)
    return pos.reshape(-1, 3), dyn


def _rows(a: np.ndarray) -> np.ndarray:
    """Points in a canonical order, to compare sets of points."""
    a = np.round(np.asarray(a, np.float64), 5)
    return a[np.lexsort(a.T[::-1])]


# -- the node group's live inputs ----------------------------------------------------------

def test_static_only_points_stay_put_between_frames(empty_scene, points_mod, bundle4d):
    obj = _points_object(points_mod, bundle4d, show_dynamic=False)
    assert obj.data.attributes["dynamic"].data_type == "BOOLEAN"
    seen = []
    for frame in (2, 5):
        pos, dyn = _evaluated(obj, frame)
        assert len(pos) == N_STATIC and not dyn.any()
        seen.append(_rows(pos))
    np.testing.assert_array_equal(seen[0], seen[1])
    np.testing.assert_allclose(seen[0], _rows(_static_cloud()), atol=1e-5)


def test_dynamic_only_points_follow_their_frame(empty_scene, points_mod, bundle4d):
    obj = _points_object(points_mod, bundle4d, show_static=False)
    for frame in (2, 5):
        pos, dyn = _evaluated(obj, frame)
        assert len(pos) == N_DYNAMIC and dyn.all()
        np.testing.assert_allclose(_rows(pos), _rows(_box(frame - 1)), atol=1e-5)


def test_accumulated_static_background_with_the_current_dynamic_points(empty_scene, points_mod, bundle4d):
    obj = _points_object(points_mod, bundle4d, accumulate_static=True)
    for frame in (1, 4):
        pos, dyn = _evaluated(obj, frame)
        # Every frame's static points (the same wall and floor, so each FRAMES times) ...
        assert (~dyn).sum() == FRAMES * N_STATIC
        np.testing.assert_allclose(_rows(pos[~dyn]), _rows(np.tile(_static_cloud(), (FRAMES, 1))), atol=1e-5)
        # ... and only this frame's dynamic points.
        np.testing.assert_allclose(_rows(pos[dyn]), _rows(_box(frame - 1)), atol=1e-5)
    points_mod.set_inputs(obj, show_dynamic=False)  # the clean background cloud alone
    pos, dyn = _evaluated(obj, 3)
    assert len(pos) == FRAMES * N_STATIC and not dyn.any()
    points_mod.set_inputs(obj, conf_threshold=0.95)  # the other inputs still apply
    assert len(_evaluated(obj, 3)[0]) < FRAMES * N_STATIC


def test_results_without_flags_behave_as_before(empty_scene, points_mod, bundle_plain):
    obj = _points_object(points_mod, bundle_plain)
    assert "dynamic" not in obj.data.attributes
    per_frame = N_STATIC + N_DYNAMIC
    assert len(_evaluated(obj, 3)[0]) == per_frame  # the current frame's points, all of them
    points_mod.set_inputs(obj, show_all_frames=True)
    assert len(_evaluated(obj, 3)[0]) == FRAMES * per_frame
    # Unflagged points count as static: "Accumulate Static" is then "Show All Frames".
    points_mod.set_inputs(obj, show_all_frames=False, accumulate_static=True)
    assert len(_evaluated(obj, 3)[0]) == FRAMES * per_frame
    points_mod.set_inputs(obj, accumulate_static=False, show_dynamic=False)
    assert len(_evaluated(obj, 3)[0]) == per_frame


def _material(obj):
    ng = obj.modifiers["Parallax Points"].node_group
    return next(n for n in ng.nodes if n.bl_idname == "GeometryNodeSetMaterial").inputs["Material"].default_value


def test_colour_modes(empty_scene, points_mod, bundle4d):
    attributes = {}
    for mode in points_mod.COLOR_MODES:
        nodes = _material(_points_object(points_mod, bundle4d, color_mode=mode)).node_tree.nodes
        attributes[mode] = {n.attribute_name for n in nodes if n.bl_idname == "ShaderNodeAttribute"}
    assert attributes == {"IMAGE": {"Col"}, "CONFIDENCE": {"conf"}, "MARKER": set(), "DYNAMIC": {"Col", "dynamic"}}
    # The flag reaches the rendered points, where the DYNAMIC material reads it.
    obj = _points_object(points_mod, bundle4d, color_mode="DYNAMIC")
    pos, dyn = _evaluated(obj, 2)
    assert dyn.sum() == N_DYNAMIC and len(pos) == N_STATIC + N_DYNAMIC
    with pytest.raises(ValueError, match="colour mode"):
        _points_object(points_mod, bundle4d, color_mode="RAINBOW")
    with pytest.raises(TypeError, match="unknown point input"):
        points_mod.set_inputs(obj, show_moving=True)


def test_update_points_values_come_from_the_scene_settings(settings, points_mod, bundle4d):
    s = settings
    s.show_static, s.show_dynamic, s.accumulate_static, s.point_size = False, True, True, 0.0
    values = points_mod.display_values(s)
    assert "point_size" not in values  # 0: keep each object's own size
    assert (values["show_static"], values["show_dynamic"], values["accumulate_static"]) == (False, True, True)
    obj = _points_object(points_mod, bundle4d)
    points_mod.set_inputs(obj, **values)
    pos, dyn = _evaluated(obj, 2)
    assert len(pos) == N_DYNAMIC and dyn.all()



def test_update_points_operator_applies_the_dynamic_toggles(settings, points_mod, bundle4d):
    obj = _points_object(points_mod, bundle4d)
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    s = settings
    s.show_static, s.show_dynamic, s.accumulate_static = True, False, True
    assert bpy.ops.parallax.set_point_display() == {"FINISHED"}
    pos, dyn = _evaluated(obj, 2)
    assert len(pos) == FRAMES * N_STATIC and not dyn.any()


# -- the import path ----------------------------------------------------------------------

def _import(path, **kw):
    assert bpy.ops.parallax.import_bundle(filepath=str(path), **kw) == {"FINISHED"}
    coll = bpy.data.collections[f"Parallax {path.name}"]
    return next(o for o in coll.objects if "Parallax Points" in o.modifiers), coll


def test_import_carries_the_dynamic_flags_and_options(empty_scene, bundle4d):
    obj, _ = _import(bundle4d, show_static=False, show_dynamic=True, point_color="DYNAMIC")
    attr = obj.data.attributes["dynamic"]
    assert (attr.data_type, attr.domain) == ("BOOLEAN", "POINT")
    got = np.zeros(len(obj.data.vertices), bool)
    attr.data.foreach_get("value", got)
    want = np.concatenate([p.dynamic for p in read_bundle(bundle4d, load_depth=False).points])
    np.testing.assert_array_equal(got, want)
    pos, dyn = _evaluated(obj, 3)  # the operator's Static Points = off reached the modifier
    assert len(pos) == N_DYNAMIC and dyn.all()
    # A subsample keeps each point's own flag.
    obj, _ = _import(bundle4d, max_points_per_frame=50, accumulate_static=True, show_dynamic=False)
    flags = np.zeros(len(obj.data.vertices), bool)
    obj.data.attributes["dynamic"].data.foreach_get("value", flags)
    picks = np.linspace(0, N_STATIC + N_DYNAMIC - 1, 50).astype(np.int64)
    assert flags.sum() == FRAMES * (picks >= N_STATIC).sum()
    pos, dyn = _evaluated(obj, 2)
    assert len(pos) == FRAMES * (picks < N_STATIC).sum() and not dyn.any()


def test_plain_bundle_import_has_no_dynamic_attribute(empty_scene, bundle_plain):
    obj, _ = _import(bundle_plain)
    assert "dynamic" not in obj.data.attributes
    assert len(_evaluated(obj, 2)[0]) == N_STATIC + N_DYNAMIC


def _render(scene, frame: int, out: Path) -> np.ndarray:
    """A tiny Cycles render of ``frame``: (H, W, 3) sRGB floats, top row first."""
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples, scene.cycles.use_denoising = "CPU", 2, False
    scene.render.image_settings.file_format, scene.render.image_settings.color_mode = "PNG", "RGB"
    scene.render.filepath = str(out)
    scene.frame_set(frame)
    bpy.ops.render.render(write_still=True)
    return read_png(out)[:, :, :3]


def test_dynamic_colour_renders_the_moving_points_magenta(empty_scene, bundle4d, tmp_path):
    _import(bundle4d, point_color="DYNAMIC", import_plate=False, camera_background=False, point_size=4.0)
    frame = 3
    img = _render(empty_scene, frame, tmp_path / "dynamic.png")
    # The box's centre, projected with frame 3's OpenCV camera (it trucks 0.05 per frame).
    c = _box(frame - 1).mean(0) - [0.05 * (frame - 1), 0, 0]
    u, v = 40.0 * c[0] / c[2] + WIDTH / 2 - 0.5, 40.0 * c[1] / c[2] + HEIGHT / 2 - 0.5
    magenta = np.array([1.0, 0.0, 1.0])  # DYNAMIC_COLOR
    assert np.abs(img[int(round(v)), int(round(u))] - magenta).max() < 0.03, img[int(round(v)), int(round(u))]
    static = np.array(STATIC_RGB) / 255.0  # the wall keeps its image colour
    assert (np.abs(img - static).max(axis=2) < 0.03).sum() > 50


# -- the operator and the console API, without a backend -------------------------------

def _frames_folder(path: Path, n: int) -> Path:
    path.mkdir()
    for i in range(n):
        (path / f"{i:06d}.png").touch()
    return path


def test_reconstruct_operator_sends_the_panels_settings(captured, settings, tmp_path):
    frames = _frames_folder(tmp_path / "frames", 3)
    s = settings
    s.recon_source, s.recon_start, s.recon_stride, s.recon_max_frames, s.recon_window_stride = \
        str(frames), 2, 3, 40, 4
    assert bpy.ops.parallax.reconstruct_scene() == {"FINISHED"}
    task, inputs, params = captured[-1]
    assert task == "reconstruct" and inputs == sorted(frames.iterdir())
    assert params == {"start": 2, "stride": 3, "max_frames": 40, "window_stride": 4}
    # 0 means "the backend's default": left out, so the backend decides.
    s.recon_max_frames = s.recon_window_stride = 0
    assert bpy.ops.parallax.reconstruct_scene(source=str(frames / "000000.png")) == {"FINISHED"}
    assert captured[-1][2] == {"start": 2, "stride": 3} and captured[-1][1] == [frames / "000000.png"]
    with pytest.raises(RuntimeError, match="reconstructing needs 2 or more"):
        bpy.ops.parallax.reconstruct_scene(source=str(_frames_folder(tmp_path / "one", 1)))


def test_console_api_reconstruct_mirrors_solve(captured, addon, tmp_path):
    api = importlib.import_module(addon.__name__ + ".api")
    frames = _frames_folder(tmp_path / "frames", 2)
    assert api.reconstruct(str(frames), stride=2, window_stride=8, wait=False, iterations=100) is None
    assert captured[-1][0] == "reconstruct"
    assert captured[-1][2] == {"start": 0, "stride": 2, "window_stride": 8, "iterations": 100}
    assert "reconstruct" in api.__all__


# -- end to end: a real backend reconstructs a rendered dynamic clip ----------------------

def _conftest():
    # tests/conftest.py shadows the name "conftest": load this folder's by path.
    import importlib.util
    spec = importlib.util.spec_from_file_location("_parallax_blender_conftest", Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dynamic_clip(tmp_path_factory):
    """A held-out synthetic clip with moving objects: 20 frames of 96x96, rendered by the backend.
    Held-out seed 1: a crane shot past a striped cylinder, moving objects on ~15 % of the pixels
    (most seeds' moving objects cover 1 % or less, too few pixels at the model's 64x64 maps)."""
    out = tmp_path_factory.mktemp("dynclip")
    cmd = [_conftest().BACKEND_PYTHON, "-m", "backend", "synth", "--split", "heldout", "--count", "1", "--seed", "1",
           "--frames", "20", "--width", "96", "--height", "96", "--dynamic", "yes", "--out", str(out),
           "--device", "cpu"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=600)
    return next(out.rglob("bundle.json")).parent


@pytest.fixture(scope="module")
def local_backend(addon):
    backend = importlib.import_module(addon.__name__ + ".backend_link")
    api = importlib.import_module(addon.__name__ + ".api")
    prefs = backend.prefs()
    prefs.backend_mode, prefs.python_path, prefs.device = "LOCAL", _conftest().BACKEND_PYTHON, "cpu"
    backend.stop()  # a backend left by another module would not have this environment
    # One OpenMP thread for the backend this module starts: on a shared 2-core machine more
    # threads only fight.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        if not api.tasks().get("reconstruct"):
            task = backend.Health.data.get("tasks", {}).get("reconstruct")
            pytest.skip("the backend does not offer reconstruct: "
                        + (str(task.get("reason")) if task else "not listed in /v1/health"))
    yield api
    backend.stop()


def _median_nn(points: np.ndarray, reference: np.ndarray) -> float:
    """Median distance from each of ``points`` to its nearest neighbour in ``reference``."""
    from mathutils import kdtree
    tree = kdtree.KDTree(len(reference))
    for i, p in enumerate(reference):
        tree.insert(p, i)
    tree.balance()
    return float(np.median([tree.find(p)[2] for p in points]))


def test_reconstruct_dynamic_clip_end_to_end(local_backend, dynamic_clip, settings, empty_scene, tmp_path):
    api = local_backend  # imports with the default options: this frame's points, static and dynamic
    t0 = time.perf_counter()
    coll = api.reconstruct(str(dynamic_clip / "frames"))
    print(f"reconstruct + import: {time.perf_counter() - t0:.1f} s")
    scene = empty_scene
    assert (scene.frame_start, scene.frame_end) == (1, 20)
    cam = next(o for o in coll.all_objects if o.type == "CAMERA")
    assert scene.camera == cam
    obj = next(o for o in coll.all_objects if "Parallax Points" in o.modifiers)
    flags = np.zeros(len(obj.data.vertices), bool)
    obj.data.attributes["dynamic"].data.foreach_get("value", flags)
    assert 0 < flags.sum() < len(flags), "expected both static and dynamic points"

    first, last = _evaluated(obj, 1), _evaluated(obj, 20)
    static_a, static_b = first[0][~first[1]], last[0][~last[1]]
    dyn_a, dyn_b = first[0][first[1]], last[0][last[1]]
    assert len(static_a) and len(static_b) and len(dyn_a) and len(dyn_b)
    extent = float(np.linalg.norm(np.percentile(static_a, 95, 0) - np.percentile(static_a, 5, 0)))
    # Static points of the first and last frame describe the same surfaces: each lies near one of
    # the other frame's (measured: 1 % of the scene's extent). The dynamic points have moved well
    # beyond that between the two (measured: 18 times as far).
    static_gap, dynamic_gap = _median_nn(static_b, static_a), _median_nn(dyn_b, dyn_a)
    print(f"extent {extent:.3f}, static gap {static_gap:.4f}, dynamic gap {dynamic_gap:.4f}")
    assert static_gap < 0.05 * extent, (static_gap, extent)
    assert dynamic_gap > 3 * static_gap, (dynamic_gap, static_gap)

    # One frame through the imported camera with Cycles: footage plate and points render.
    scene.render.resolution_percentage = 50
    img = _render(scene, 10, tmp_path / "e2e.png")
    assert img.shape == (48, 48, 3) and img.std() > 0.01
