"""Imports are safe and all or nothing (issue 12, items 7, 10, 11, 12): a zip never replaces
its namesake folder, an import is identified by its bundle's identity, and a bundle with any
out-of-range value, a bad frame or a path leading out is refused before the scene changes."""

import json
import shutil
import uuid

import bpy
import numpy as np
import pytest

from backend import bundle as B
from backend_tests.test_bundle import make_bundle

KINDS = ("objects", "meshes", "cameras", "images", "materials", "node_groups", "actions", "collections")


def _counts():
    return {k: len(getattr(bpy.data, k)) for k in KINDS}


def _scene_state(scene):
    r = scene.render
    return (r.fps, r.fps_base, scene.frame_start, scene.frame_end, r.resolution_x, r.resolution_y,
            r.resolution_percentage, r.pixel_aspect_x, r.pixel_aspect_y, scene.view_settings.view_transform,
            scene.camera)


def _write(path, **kw):
    return B.write_bundle(make_bundle(**{"frames": 4, "width": 40, "height": 30, "points": 60, **kw}), path)


def _import(path, **kw):
    assert bpy.ops.parallax.import_bundle(filepath=str(path), **kw) == {"FINISHED"}


@pytest.fixture
def odd_scene(empty_scene):
    """A scene whose settings differ from any bundle's, to see that a failed import keeps them."""
    s = empty_scene
    s.render.fps, s.render.fps_base = 30, 1.0
    s.frame_start, s.frame_end = 10, 99
    s.render.resolution_x, s.render.resolution_y, s.render.resolution_percentage = 1234, 567, 50
    s.view_settings.view_transform = "AgX"
    return s


# -- 7 --------------------------------------------------------------------------------------


def test_importing_a_zip_leaves_its_namesake_folder_alone(empty_scene, tmp_path):
    src = _write(tmp_path / "src")
    B.zip_bundle(src, tmp_path / "myshot.zip")
    mine = tmp_path / "myshot"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    _import(tmp_path / "myshot.zip")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "the user's"
    coll = bpy.data.collections["Parallax myshot"]
    assert coll["parallax_bundle_id"] == B.read_bundle(src).id
    assert B.is_parallax_extraction(coll["parallax_bundle"])


def test_a_zip_that_is_not_a_bundle_imports_nothing_and_writes_nothing(empty_scene, tmp_path):
    import zipfile
    with zipfile.ZipFile(tmp_path / "myshot.zip", "w") as zf:
        zf.writestr("photo.jpg", b"\xff\xd8\xff")
    (tmp_path / "myshot").mkdir()
    (tmp_path / "myshot" / "notes.txt").write_text("x")
    before = _counts()
    with pytest.raises(RuntimeError, match="no bundle.json"):
        bpy.ops.parallax.import_bundle(filepath=str(tmp_path / "myshot.zip"))
    assert _counts() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["myshot", "myshot.zip"]


# -- 10 -------------------------------------------------------------------------------------


def _collections(scene):
    return sorted(c.name for c in scene.collection.children)


def test_same_folder_name_elsewhere_is_another_import(empty_scene, tmp_path):
    a, b = _write(tmp_path / "a" / "shot"), _write(tmp_path / "b" / "shot", seed=1)
    _import(a)
    _import(b)
    assert _collections(empty_scene) == ["Parallax shot", "Parallax shot.001"]
    coll_b = next(c for c in bpy.data.collections if c.get("parallax_bundle_id") == B.read_bundle(b).id)
    cam_b = next(o for o in coll_b.objects if o.type == "CAMERA")
    cam_b["my_edit"] = 1  # the user's work on the second import
    cam_b.data.lens_unit = "FOV"
    counts = _counts()
    _import(a)  # re-import the first: replaces it, and only it
    assert _counts() == counts
    assert _collections(empty_scene) == ["Parallax shot", "Parallax shot.001"]
    assert cam_b.name in bpy.data.objects and cam_b["my_edit"] == 1 and cam_b.data.lens_unit == "FOV"
    coll_a = next(c for c in bpy.data.collections if c.get("parallax_bundle_id") == B.read_bundle(a).id)
    assert coll_a.name == "Parallax shot"  # the replacement takes its predecessor's names


def test_bundles_without_an_id_are_told_apart_by_their_folder(empty_scene, tmp_path):
    paths = [_write(tmp_path / d / "shot", seed=i) for i, d in enumerate("ab")]
    for p in paths:
        meta = json.loads((p / "bundle.json").read_text())
        del meta["id"]
        (p / "bundle.json").write_text(json.dumps(meta))
        _import(p)
    _import(paths[0])
    assert len(empty_scene.collection.children) == 2
    assert {c["parallax_bundle_id"] for c in empty_scene.collection.children} == {f"path:{p.resolve()}" for p in paths}


def test_a_copied_bundle_is_the_same_bundle(empty_scene, tmp_path):
    a = _write(tmp_path / "a" / "shot")
    shutil.copytree(a, tmp_path / "b" / "shot")
    _import(a)
    _import(tmp_path / "b" / "shot")
    assert len(empty_scene.collection.children) == 1


# -- 11, 12: refused before anything changes ------------------------------------------------


def _meta(path, **changes):
    meta = json.loads((path / "bundle.json").read_text())
    meta.update(changes)
    (path / "bundle.json").write_text(json.dumps(meta))


def _camera(path, index, **changes):
    cams = json.loads((path / "cameras.json").read_text())
    cams["frames"][index].update(changes)
    (path / "cameras.json").write_text(json.dumps(cams))


def _damage(path, tmp_path, kind):
    if kind == "fps_1e10":
        _meta(path, fps=1e10)
    elif kind == "width_2_31":
        _meta(path, width=2**31)
    elif kind == "frame_count_2_31":
        _meta(path, frame_count=2**31)
    elif kind == "middle_frame_other_size":
        (path / "frames" / "000002.png").write_bytes(B.encode_png(np.zeros((30, 41, 3), np.uint8)))
    elif kind == "middle_frame_empty":
        (path / "frames" / "000001.png").write_bytes(b"")
    elif kind == "jpeg_named_png":
        (path / "frames" / "000002.png").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64))
    elif kind == "translation_1e300":
        c2w = np.eye(4).tolist()
        c2w[0][3] = 1e300
        _camera(path, 2, c2w=c2w)
    elif kind == "lens_below_1mm":
        _camera(path, 0, fx=0.5, fy=0.5)
    elif kind == "points_1e300":
        np.savez(path / "points" / "000002.npz", xyz=np.full((5, 3), 1e300), rgb=np.zeros((5, 3), np.uint8),
                 conf=np.ones(5, np.float16))
    elif kind == "points_as_strings":
        np.savez(path / "points" / "000001.npz", xyz=np.full((5, 3), "1.0"), rgb=np.zeros((5, 3), np.uint8),
                 conf=np.ones(5, np.float16))
    elif kind == "frames_part_not_a_path":
        meta = json.loads((path / "bundle.json").read_text())
        meta["parts"]["frames"] = ["frames"]
        (path / "bundle.json").write_text(json.dumps(meta))
    elif kind == "absolute_part":
        meta = json.loads((path / "bundle.json").read_text())
        meta["parts"]["cameras"] = str((tmp_path / "elsewhere.json").resolve())
        (path / "bundle.json").write_text(json.dumps(meta))
    elif kind == "frame_symlink_out":
        outside = tmp_path / "outside.png"
        shutil.copy(path / "frames" / "000001.png", outside)
        (path / "frames" / "000001.png").unlink()
        (path / "frames" / "000001.png").symlink_to(outside)
    elif kind == "deep_nesting":
        (path / "cameras.json").write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "pixel_aspect_1000":
        _camera(path, 0, fx=1000.0, fy=1.0)


DAMAGE = ["fps_1e10", "width_2_31", "frame_count_2_31", "middle_frame_other_size", "middle_frame_empty",
          "jpeg_named_png", "translation_1e300", "lens_below_1mm", "points_1e300", "points_as_strings",
          "frames_part_not_a_path", "absolute_part", "frame_symlink_out", "deep_nesting", "pixel_aspect_1000"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_bad_bundle_changes_nothing(odd_scene, tmp_path, kind):
    path = _write(tmp_path / "shot", unsolved=())
    _damage(path, tmp_path, kind)
    before, state = _counts(), _scene_state(odd_scene)
    with pytest.raises(RuntimeError, match="could not import bundle") as e:
        bpy.ops.parallax.import_bundle(filepath=str(path))
    assert "Traceback" not in str(e.value)
    assert _counts() == before and _scene_state(odd_scene) == state


def test_a_scale_that_overflows_float32_changes_nothing(odd_scene, tmp_path):
    path = _write(tmp_path / "shot")
    before, state = _counts(), _scene_state(odd_scene)
    with pytest.raises(RuntimeError, match="Scale"):
        bpy.ops.parallax.import_bundle(filepath=str(path), scale=1e38)
    assert _counts() == before and _scene_state(odd_scene) == state


def test_a_failure_midway_restores_the_scene_and_the_earlier_import(odd_scene, tmp_path, addon, monkeypatch):
    """Should Blender fail halfway (here: the plate), the new data goes, the scene settings
    come back and the earlier import of the same bundle stays as it was."""
    import importlib
    path = _write(tmp_path / "shot")
    _import(path)
    names = sorted(id_.name for k in KINDS for id_ in getattr(bpy.data, k))
    odd_scene.render.fps = 17
    odd_scene.frame_end = 77
    state = _scene_state(odd_scene)
    plate = importlib.import_module(addon.__name__ + ".importers.plate")

    def broken(*args, **kwargs):
        raise RuntimeError("Blender failed here")

    monkeypatch.setattr(plate, "create_plate", broken)
    with pytest.raises(RuntimeError, match="Blender failed here"):
        bpy.ops.parallax.import_bundle(filepath=str(path))
    assert sorted(id_.name for k in KINDS for id_ in getattr(bpy.data, k)) == names
    assert _scene_state(odd_scene) == state
    monkeypatch.undo()
    _import(path)  # and a later import still replaces it cleanly
    assert sorted(id_.name for k in KINDS for id_ in getattr(bpy.data, k)) == names
    assert len(odd_scene.collection.children) == 1


def test_a_new_bundle_id_is_a_plain_name(tmp_path):
    b = B.read_bundle(_write(tmp_path / "x"))
    assert uuid.UUID(b.id).hex == b.id


def test_an_import_made_before_identities_is_still_replaced(empty_scene, tmp_path):
    """Imports of earlier versions tagged their data-blocks with the collection's name; a
    re-import of the same folder replaces them rather than adding a second copy."""
    path = _write(tmp_path / "shot")
    _import(path)
    counts = _counts()
    coll = empty_scene.collection.children[0]
    legacy = coll.name
    for k in KINDS:
        for id_ in getattr(bpy.data, k):
            if "parallax_import" in id_:
                id_["parallax_import"] = legacy
    del coll["parallax_bundle_id"]
    coll["parallax_bundle"] = str(path)
    _import(path)
    assert _counts() == counts and len(empty_scene.collection.children) == 1
