"""Importing ground-truth bundles: camera projection, points per frame, scene settings, re-import."""

import json
import shutil

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

from backend.bundle import read_bundle


def _import(path, **kw):
    assert bpy.ops.parallax.import_bundle(filepath=str(path), **kw) == {"FINISHED"}
    return bpy.data.collections[f"Parallax {path.name}"]


def _objects(coll):
    by_kind = {}
    for obj in coll.objects:
        kind = "points" if "Parallax Points" in obj.modifiers else obj.type.lower()
        by_kind[kind] = obj
    return by_kind


def _opencv_pixels(cam, X):
    w2c = np.linalg.inv(cam.c2w)
    Xc = X @ w2c[:3, :3].T + w2c[:3, 3]
    return np.stack([cam.fx * Xc[:, 0] / Xc[:, 2] + cam.cx, cam.fy * Xc[:, 1] / Xc[:, 2] + cam.cy], 1), Xc[:, 2]


def _blender_pixels(scene, cam_obj, Xb):
    w, h = scene.render.resolution_x, scene.render.resolution_y
    out = []
    for p in Xb:
        ndc = world_to_camera_view(scene, cam_obj, Vector(p))
        out.append((ndc.x * w - 0.5, (1.0 - ndc.y) * h - 0.5))  # OpenCV pixel centres
    return np.array(out)


@pytest.mark.parametrize("name,options", [
    ("landscape", {}),
    ("portrait", {"scale": 2.5}),
    ("square", {"align_to_floor": True}),
])
def test_camera_reprojects_points_onto_their_pixels(empty_scene, gt_bundles, name, options):
    """>= 50 points at >= 5 frames: Blender's camera projection equals the bundle's OpenCV one."""
    path = gt_bundles[name]
    bundle = read_bundle(path)
    coll = _import(path, **options)
    objs = _objects(coll)
    scene = empty_scene
    assert scene.camera == objs["camera"]
    assert (scene.render.resolution_x, scene.render.resolution_y) == (bundle.width, bundle.height)

    # The points object holds the same points in Blender's world: recover the mapping from it.
    mesh = objs["points"].data
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    frame_attr = np.empty(len(mesh.vertices), np.int32)
    mesh.attributes["frame"].data.foreach_get("value", frame_attr)

    rng = np.random.default_rng(0)
    worst = 0.0
    frames = np.linspace(0, bundle.frame_count - 1, 5).round().astype(int)
    for f in frames:
        scene.frame_set(1 + f)
        cam = bundle.cameras[f]
        # Points seen by a *later* frame's camera too: tests the pose, not just frame f's own pixels.
        src = bundle.points[min(f + 1, bundle.frame_count - 1)].xyz
        idx = rng.choice(len(src), 60, replace=False)
        uv_cv, z = _opencv_pixels(cam, src[idx].astype(np.float64))
        keep = z > 1e-3
        start = np.searchsorted(frame_attr, 1 + min(f + 1, bundle.frame_count - 1))
        Xb = co[start + idx][keep]
        uv_b = _blender_pixels(scene, objs["camera"], Xb)
        err = np.abs(uv_b - uv_cv[keep]).max()
        assert keep.sum() >= 50
        worst = max(worst, err)
    assert worst <= 0.5, f"max reprojection difference {worst:.4f} px"


def test_points_visible_only_on_their_frame(empty_scene, gt_bundles):
    path = gt_bundles["landscape"]
    bundle = read_bundle(path)
    objs = _objects(_import(path))
    pts = objs["points"]
    counts = [len(p.xyz) for p in bundle.points]
    for f in (0, 3, bundle.frame_count - 1):
        empty_scene.frame_set(1 + f)
        pos = _evaluated_positions(pts)
        assert len(pos) == counts[f]
        # And they are that frame's points: compare positions with the bundle's (mapped) ones.
        mesh_co = np.empty(len(pts.data.vertices) * 3, np.float32)
        pts.data.vertices.foreach_get("co", mesh_co)
        start = sum(counts[:f])
        np.testing.assert_allclose(pos, mesh_co.reshape(-1, 3)[start:start + counts[f]], atol=1e-6)

    from parallax.importers import points as points_importer
    points_importer.set_inputs(pts, show_all_frames=True)
    assert len(_evaluated_positions(pts)) == sum(counts)
    points_importer.set_inputs(pts, show_all_frames=False, conf_threshold=2.0)  # GT confidence is 1
    assert len(_evaluated_positions(pts)) == 0


def _evaluated_positions(obj) -> np.ndarray:
    """Positions of the native point cloud the modifier outputs (what Cycles and EEVEE render)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    geometry = obj.evaluated_get(depsgraph).evaluated_geometry()
    pc = geometry.pointcloud
    if pc is None:
        return np.zeros((0, 3), np.float32)
    assert isinstance(pc, bpy.types.PointCloud)
    assert geometry.mesh is None or len(geometry.mesh.vertices) == 0  # all became points
    pos = np.empty(len(pc.points) * 3, np.float32)
    pc.attributes["position"].data.foreach_get("vector", pos)
    return pos.reshape(-1, 3)


def test_scene_settings_and_plate(empty_scene, gt_bundles):
    path = gt_bundles["portrait"]
    bundle = read_bundle(path)
    objs = _objects(_import(path))
    scene = empty_scene
    assert (scene.frame_start, scene.frame_end) == (1, bundle.frame_count)
    assert abs(scene.render.fps / scene.render.fps_base - bundle.fps) < 1e-6
    coll = bpy.data.collections[f"Parallax {path.name}"]
    assert list(coll["parallax_summary"]) == bundle.summary()  # what the panel shows of the result
    assert coll["parallax_summary"][0].startswith(f"{bundle.frame_count}/{bundle.frame_count} frames solved")
    plate = next(o for o in objs.values() if o.type == "MESH" and o.parent == objs["camera"])
    cam_data = objs["camera"].data
    assert cam_data.show_background_images and cam_data.background_images[0].image is not None
    # The plate's corners project onto the image's outer pixel edges at every frame.
    for f in (0, bundle.frame_count - 1):
        scene.frame_set(1 + f)
        corners = [plate.matrix_world @ v.co for v in plate.data.vertices]
        uv = _blender_pixels(scene, objs["camera"], [tuple(c) for c in corners])
        expect = [(-0.5, bundle.height - 0.5), (bundle.width - 0.5, bundle.height - 0.5),
                  (bundle.width - 0.5, -0.5), (-0.5, -0.5)]
        np.testing.assert_allclose(uv, expect, atol=1e-3)


def test_reimport_replaces_cleanly(empty_scene, gt_bundles):
    path = gt_bundles["square"]
    _import(path)

    def counts():
        return {k: len(getattr(bpy.data, k)) for k in ("objects", "meshes", "cameras", "images", "materials",
                                                       "node_groups", "actions", "collections")}
    first = counts()
    _import(path)
    assert counts() == first
    assert [c.name for c in empty_scene.collection.children] == [f"Parallax {path.name}"]


def test_floor_alignment_puts_the_floor_at_zero(empty_scene, gt_bundles):
    path = gt_bundles["square"]
    objs = _objects(_import(path, align_to_floor=True))
    mesh = objs["points"].data
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    z = co.reshape(-1, 3)[:, 2]
    extent = np.percentile(z, 99) - np.percentile(z, 1)
    # Synthetic rooms have a floor: a large share of points lies on Z = 0, and (almost) none below.
    assert np.mean(np.abs(z) < 0.01 * extent) > 0.15
    assert np.percentile(z, 1) > -0.02 * extent


@pytest.mark.parametrize("damage", ["missing_camera_file", "nan_pose", "bad_json", "wrong_shape"])
def test_corrupt_bundle_imports_nothing(empty_scene, gt_bundles, tmp_path, damage):
    path = tmp_path / "broken"
    shutil.copytree(gt_bundles["landscape"], path)
    if damage == "missing_camera_file":
        (path / "cameras.json").unlink()
    elif damage == "nan_pose":
        cams = json.loads((path / "cameras.json").read_text())
        cams["frames"][1]["c2w"][2][3] = float("nan")
        (path / "cameras.json").write_text(json.dumps(cams))
    elif damage == "bad_json":
        (path / "bundle.json").write_text("{not json")
    else:
        np.savez(path / "points" / "000002.npz", xyz=np.zeros((4, 3, 1), np.float32),
                 rgb=np.zeros((4, 3), np.uint8), conf=np.zeros(4, np.float16))
    before = {k: len(getattr(bpy.data, k)) for k in ("objects", "collections", "images", "meshes")}
    with pytest.raises(RuntimeError, match="could not import bundle"):
        bpy.ops.parallax.import_bundle(filepath=str(path))
    assert {k: len(getattr(bpy.data, k)) for k in before} == before
