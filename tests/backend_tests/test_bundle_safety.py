"""The bundle as untrusted input (issue 12, items 7, 8, 10-13): what reading, writing and
unzipping refuse, and that they never delete what Parallax did not write."""

import io
import json
import os
import shutil
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from backend import bundle as B
from backend_tests.test_bundle import make_bundle


@pytest.fixture
def shot(tmp_path):
    return B.write_bundle(make_bundle(frames=4, points=50), tmp_path / "shot")


def _meta(path, **changes):
    meta = json.loads((path / "bundle.json").read_text())
    meta.update(changes)
    (path / "bundle.json").write_text(json.dumps(meta))
    return meta


def _refused(path, match, **kw):
    with pytest.raises(B.BundleError, match=match) as info:
        B.read_bundle(path, **kw)
    return info.value


def _tree(folder):
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


# -- 7: a zip is extracted into a folder of its own, never over a namesake ----------------


def _user_folder(path):
    path.mkdir()
    (path / "notes.txt").write_text("the user's own notes")
    (path / "frames").mkdir()
    (path / "frames" / "edit.png").write_bytes(b"not ours")
    return _tree(path)


def test_reading_a_zip_leaves_its_namesake_folder_alone(tmp_path, shot):
    z = B.zip_bundle(shot, tmp_path / "myshot.zip")
    mine = _user_folder(tmp_path / "myshot")
    first = B.read_bundle(z)
    assert _tree(tmp_path / "myshot") == mine
    assert first.path != tmp_path / "myshot" and B.is_parallax_extraction(first.path)
    # Reading it again reuses (replaces) the extraction Parallax made: no pile of copies.
    again = B.read_bundle(z)
    assert again.path == first.path and again.id == first.id
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["shot", "myshot", "myshot.zip", first.path.name])


def test_a_zip_that_is_not_a_bundle_writes_nothing(tmp_path):
    z = tmp_path / "myshot.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("holiday.jpg", b"\xff\xd8\xff\xe0 a photo")
    mine = _user_folder(tmp_path / "myshot")
    _refused(z, "no bundle.json")
    assert _tree(tmp_path / "myshot") == mine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["myshot", "myshot.zip"]


def test_a_broken_bundle_zip_leaves_no_extraction(tmp_path, shot):
    (shot / "cameras.json").unlink()
    z = B.zip_bundle(shot, tmp_path / "broken.zip")
    _refused(z, "cameras.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.zip", "shot"]


def test_unzip_replaces_only_its_own_extractions(tmp_path, shot):
    z = B.zip_bundle(shot, tmp_path / "shot.zip")
    mine = _user_folder(tmp_path / "target")
    with pytest.raises(FileExistsError, match="not a Parallax extraction"):
        B.unzip_bundle(z, tmp_path / "target")
    assert _tree(tmp_path / "target") == mine
    # A Parallax *bundle* (not an extraction) is not replaced by an unzip either.
    with pytest.raises(FileExistsError):
        B.unzip_bundle(z, shot)
    (tmp_path / "empty").mkdir()
    out = B.unzip_bundle(z, tmp_path / "empty")
    assert B.read_bundle(out).frame_count == 4
    assert B.unzip_bundle(z, out) == out  # an earlier extraction: replaced
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial or aside folder left


def test_zip_members_outside_or_reserved_are_refused(tmp_path, shot):
    for name in ("../escaped.txt", "/abs.txt", "a/../../x", "C:/x", "a\\..\\x", B.EXTRACTION_MARKER):
        z = tmp_path / "evil.zip"
        with zipfile.ZipFile(z, "w") as zf:
            zf.writestr("bundle.json", "{}")
            zf.writestr(name, "x")
        with pytest.raises(B.BundleError):
            B.unzip_bundle(z, tmp_path / "out")
        assert not (tmp_path / "out").exists() and not (tmp_path / "escaped.txt").exists()


def test_zip_bomb_is_refused_before_inflating(tmp_path):
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("bundle.json", "{}")
        with zf.open("points/000000.npz", "w", force_zip64=True) as m:
            zero = bytes(1 << 20)
            for _ in range(256):  # 256 MiB of zeros: about 250 KB zipped
                m.write(zero)
    assert z.stat().st_size < 1 << 20
    t0 = time.perf_counter()
    with pytest.raises(B.BundleError, match="zip bomb"):
        B.unzip_bundle(z, tmp_path / "out")
    assert time.perf_counter() - t0 < 1.0 and not (tmp_path / "out").exists()


def test_zip_member_larger_than_its_header_says_is_refused(tmp_path):
    z = tmp_path / "liar.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bundle.json", "{}")
        zf.writestr("big.bin", bytes(4 << 20))
    data = bytearray(z.read_bytes())
    # Declare 16 bytes for big.bin in its central directory entry (uncompressed size field).
    cd = data.rfind(b"PK\x01\x02", 0, data.rfind(b"big.bin"))
    data[cd + 24:cd + 28] = (16).to_bytes(4, "little")
    z.write_bytes(bytes(data))
    with pytest.raises(B.BundleError):
        B.unzip_bundle(z, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- 8: write_bundle replaces only a Parallax bundle (or an empty folder) -----------------


def test_write_refuses_a_folder_parallax_did_not_write(tmp_path):
    mine = _user_folder(tmp_path / "renders")
    with pytest.raises(FileExistsError, match="not a Parallax bundle"):
        B.write_bundle(make_bundle(), tmp_path / "renders")
    assert _tree(tmp_path / "renders") == mine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["renders"]  # no partial folder left
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        B.write_bundle(make_bundle(), tmp_path / "file")
    (tmp_path / "link").symlink_to(tmp_path / "renders")
    with pytest.raises(FileExistsError, match="symbolic link"):
        B.write_bundle(make_bundle(), tmp_path / "link")
    assert _tree(tmp_path / "renders") == mine


def test_write_replaces_a_parallax_bundle_but_not_one_holding_a_users_file(tmp_path, shot):
    from backend.exports import export_tum
    export_tum(B.read_bundle(shot), shot / "trajectory.tum")  # exports Parallax writes inside count as its own
    old_id = B.read_bundle(shot).id
    B.write_bundle(make_bundle(seed=2), shot)
    assert B.read_bundle(shot).id != old_id and not (shot / "trajectory.tum").exists()
    (shot / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        B.write_bundle(make_bundle(seed=3), shot)
    assert (shot / "notes.txt").read_text() == "mine"
    (shot / "notes.txt").unlink()
    (shot / "frames" / "my_edit.png").write_bytes(b"x")
    with pytest.raises(FileExistsError):
        B.write_bundle(make_bundle(seed=3), shot)
    (tmp_path / "empty").mkdir()
    B.write_bundle(make_bundle(), tmp_path / "empty")
    B.read_bundle(tmp_path / "empty")


def test_export_names_are_the_exporters_defaults():
    from backend.exports import EXPORTERS
    assert sorted(B.EXPORT_ENTRIES) == sorted(name for _, name in EXPORTERS.values())


def test_zip_bundle_replaces_only_a_bundle_zip(tmp_path, shot):
    (tmp_path / "shot.zip").write_bytes(b"my own archive")
    with pytest.raises(FileExistsError):
        B.zip_bundle(shot, tmp_path / "shot.zip")
    assert (tmp_path / "shot.zip").read_bytes() == b"my own archive"
    (tmp_path / "shot.zip").unlink()
    B.zip_bundle(shot, tmp_path / "shot.zip")
    B.zip_bundle(shot, tmp_path / "shot.zip")  # its own earlier zip: replaced


@pytest.mark.parametrize("command", [["solve", "nowhere.mp4", "--engine", "colmap"], ["generate", "a red box"]])
def test_cli_refuses_an_out_folder_of_other_files_before_working(tmp_path, capsys, command):
    from backend.__main__ import main
    mine = _user_folder(tmp_path / "out")
    t0 = time.perf_counter()
    assert main([*command, "--out", str(tmp_path / "out")]) == 1
    assert time.perf_counter() - t0 < 5.0  # refused up front: no solve, no model load
    assert "not a Parallax bundle" in capsys.readouterr().err
    assert _tree(tmp_path / "out") == mine


def test_writer_refuses_what_the_reader_would(tmp_path):
    for change in (dict(fps=1e10), dict(width=2**31), dict(frame_count=10**9)):
        b = make_bundle(frames=2)
        for k, v in change.items():
            setattr(b, k, v)
        with pytest.raises(B.BundleError):
            B.write_bundle(b, tmp_path / "x")
    b = make_bundle(frames=2)
    b.cameras[0].c2w[0, 3] = 1e300
    with pytest.raises(B.BundleError, match="float32"):
        B.write_bundle(b, tmp_path / "x")
    b = make_bundle(frames=2)
    b.frames[1] = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(B.BundleError, match=r"frames\[1\] has shape"):
        B.write_bundle(b, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


# -- 10: identity -------------------------------------------------------------------------


def test_identity_is_written_kept_by_copies_and_derived_for_old_bundles(tmp_path, shot):
    b = B.read_bundle(shot)
    assert B._ID.fullmatch(b.id)
    shutil.copytree(shot, tmp_path / "copy")
    assert B.read_bundle(tmp_path / "copy").id == b.id  # the same bundle, elsewhere
    assert B.write_bundle(make_bundle(), tmp_path / "other").name == "other"
    assert B.read_bundle(tmp_path / "other").id != b.id
    meta = json.loads((shot / "bundle.json").read_text())
    del meta["id"]  # a bundle from before identities
    (shot / "bundle.json").write_text(json.dumps(meta))
    assert B.read_bundle(shot).id == f"path:{shot.resolve()}"
    _meta(shot, id="../../x")
    _refused(shot, "field 'id'")


# -- 11: every path stays inside the bundle -----------------------------------------------


@pytest.mark.parametrize("part,value", [
    ("frames", "/etc"), ("cameras", "/etc/passwd"), ("cameras", "../outside/cameras.json"),
    ("points", "points/../../outside"), ("video", "C:/video.mp4"), ("frames", "frames\\..\\x")])
def test_parts_must_be_relative_paths_inside(tmp_path, shot, part, value):
    meta = json.loads((shot / "bundle.json").read_text())
    meta["parts"][part] = value
    (shot / "bundle.json").write_text(json.dumps(meta))
    e = _refused(shot, "inside the bundle")
    assert e.path.endswith("bundle.json")


def test_symlinks_leading_out_are_refused(tmp_path, shot):
    outside = tmp_path / "outside"
    outside.mkdir()
    frame = shot / "frames" / "000002.png"
    shutil.copy(frame, outside / "frame.png")
    frame.unlink()
    frame.symlink_to(outside / "frame.png")
    assert "frames/000002.png" in _refused(shot, "leads outside").path
    frame.unlink()
    frame.symlink_to("000001.png")  # a link that stays inside is fine
    B.read_bundle(shot)
    shutil.move(shot / "points", outside / "points")
    (shot / "points").symlink_to(outside / "points")
    _refused(shot, "leads outside")
    (shot / "points").unlink()
    shutil.move(outside / "points", shot / "points")
    (outside / "bundle.json").write_text((shot / "bundle.json").read_text())
    (shot / "bundle.json").unlink()
    (shot / "bundle.json").symlink_to(outside / "bundle.json")
    _refused(shot, "leads outside")


# -- 12: every value in range, every frame checked, named errors only ---------------------


@pytest.mark.parametrize("field,value,match", [
    ("fps", 1e10, "'fps' must be"), ("fps", 0, "'fps' must be"), ("fps", 10**400, "'fps'"),
    ("fps", "24", "'fps' must be a number"), ("width", 2**31, "width and height"),
    ("frame_count", 2**31, "'frame_count' must be"), ("height", True, "wrong type"),
    ("schema_version", True, "schema_version"), ("source", [1, 2], "'source' has the wrong type"),
    ("engine", {"a": 1}, "'engine' must be text")])
def test_out_of_range_fields_are_named(shot, field, value, match):
    _meta(shot, **{field: value})
    assert _refused(shot, match).path.endswith("bundle.json")


@pytest.mark.parametrize("value", [5, ["frames"], {"a": 1}, True])
def test_parts_of_the_wrong_type_are_named(shot, value):
    meta = json.loads((shot / "bundle.json").read_text())
    meta["parts"]["frames"] = value
    (shot / "bundle.json").write_text(json.dumps(meta))
    _refused(shot, "parts.frames' has the wrong type")


@pytest.mark.parametrize("damage", ["other_size", "empty", "jpeg"])
def test_every_frame_is_checked(shot, damage):
    middle = shot / "frames" / "000002.png"
    if damage == "other_size":
        middle.write_bytes(B.encode_png(np.zeros((30, 41, 3), np.uint8)))
        match = "frame is 41x30"
    elif damage == "empty":
        middle.write_bytes(b"")
        match = "not a PNG file"
    else:
        middle.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(100))
        match = "not a PNG file"
    assert _refused(shot, match).path.endswith("frames/000002.png")


@pytest.mark.parametrize("key,value,match", [
    ("fx", 1e300, r"frames\[1\]\.fx .*float32"), ("cx", "19.2", "must be a number"), ("fy", True, "must be a number"),
    ("fx", 10**400, "fx"), ("index", True, "index"), ("c2w", [[1, 0, 0, 1e300], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
                                                      "c2w contains NaN or infinity"),
    ("c2w", [["1", 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "must be a number"),
    ("c2w", [[[1]] * 4] * 4, "must be a number"), ("c2w", "eye", "not a numeric 4x4")])
def test_camera_values_are_checked(shot, key, value, match):
    cams = json.loads((shot / "cameras.json").read_text())
    cams["frames"][1][key] = value
    (shot / "cameras.json").write_text(json.dumps(cams))
    assert _refused(shot, match).path.endswith("cameras.json")


def test_deep_nesting_is_a_named_error(shot):
    (shot / "bundle.json").write_text("[" * 100_000 + "]" * 100_000)
    _refused(shot, "not valid JSON")
    _meta_text = json.dumps({"schema": B.SCHEMA})[:-1] + ', "source": ' + "[" * 50_000 + "]" * 50_000 + "}"
    (shot / "bundle.json").write_text(_meta_text)
    _refused(shot, "not valid JSON")


@pytest.mark.parametrize("arrays,match", [
    (dict(xyz=np.array([["a", "b", "c"]]), rgb=np.zeros((1, 3), np.uint8), conf=np.zeros(1, np.float16)),
     "'xyz' has dtype <U1"),
    (dict(xyz=np.zeros((1, 3), np.float32), rgb=np.zeros((1, 3), np.uint8), conf=np.array(["x"])), "'conf' has dtype"),
    (dict(xyz=np.full((1, 3), 1e300), rgb=np.zeros((1, 3), np.uint8), conf=np.zeros(1, np.float16)), "float32"),
    (dict(xyz=np.zeros((1, 3), np.complex64), rgb=np.zeros((1, 3), np.uint8), conf=np.zeros(1)), "'xyz' has dtype"),
    (dict(xyz=np.zeros((1, 3), np.float32), rgb=np.zeros((1, 3), np.int64), conf=np.zeros(1)), "'rgb' has dtype"),
    (dict(xyz=np.zeros((1, 3), np.float32), rgb=np.zeros((1, 3), np.uint8), conf=np.zeros(1),
          dynamic=np.array(["yes"])), "'dynamic'"),
    (dict(xyz=np.zeros(3, np.float32), rgb=np.zeros((1, 3), np.uint8), conf=np.zeros(1)), "'xyz' has shape"),
    (dict(xyz=np.zeros((2, 3), [("a", "f4")]), rgb=np.zeros((2, 3), np.uint8), conf=np.zeros(2)), "plain numbers"),
])
def test_array_types_and_values_are_checked(shot, arrays, match):
    np.savez(shot / "points" / "000001.npz", **arrays)
    assert _refused(shot, match).path.endswith("points/000001.npz")
    # Not loading the points still checks their headers (what the client and server validate).
    if "float32" not in match:
        _refused(shot, match, load_points=False)


def test_string_depth_is_a_named_error(shot):
    b = make_bundle(frames=2)
    path = B.write_bundle(b, shot)
    np.savez(path / "depth" / "000001.npz", depth=np.full((30, 40), "x"), conf=np.zeros((30, 40), np.float16))
    assert _refused(path, "'depth' has dtype").path.endswith("depth/000001.npz")


# -- 13: everything bounded before allocating ---------------------------------------------


def _bounded(fn, seconds=1.0, megabytes=32):
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        fn()
    finally:
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < seconds and peak < megabytes * 2**20, (elapsed, peak)


def test_a_billion_frames_in_a_small_bundle_json_is_refused_at_once(shot):
    _meta(shot, frame_count=10**9)
    assert (shot / "bundle.json").stat().st_size < 2048
    _bounded(lambda: _refused(shot, "frame_count"))


def _npy_header(shape, dtype="<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_an_npz_claiming_a_billion_points_is_refused_without_allocating(shot):
    with zipfile.ZipFile(shot / "points" / "000000.npz", "w") as zf:
        zf.writestr("xyz.npy", _npy_header((10**9, 3)) + bytes(120))
        zf.writestr("rgb.npy", _npy_header((10**9, 3), "|u1") + bytes(30))
        zf.writestr("conf.npy", _npy_header((10**9,), "<f2") + bytes(20))
    _bounded(lambda: _refused(shot, "truncated"))


def test_arrays_beyond_the_budget_are_refused_before_loading(tmp_path, monkeypatch):
    path = B.write_bundle(make_bundle(frames=4, points=200), tmp_path / "b")  # 3.4 KB of points a frame
    monkeypatch.setattr(B, "MAX_ARRAY_BYTES", 8000)
    e = _refused(path, "limit", load_depth=False)
    assert e.path.endswith("points/000002.npz")


def test_an_npz_with_a_huge_directory_is_refused(shot):
    with zipfile.ZipFile(shot / "points" / "000000.npz", "w") as zf:
        for i in range(200):
            zf.writestr(f"junk{i}.npy", b"")
    _refused(shot, "entries")


def test_oversized_cameras_json_is_refused_before_parsing(shot):
    cams = json.loads((shot / "cameras.json").read_text())
    cams["padding"] = "x" * (B.CAMERAS_JSON_BYTES[0] + 4 * B.CAMERAS_JSON_BYTES[1])
    (shot / "cameras.json").write_text(json.dumps(cams))
    _refused(shot, "bytes")


def test_reading_is_fast_for_the_largest_allowed_frame_count(tmp_path):
    """MAX_FRAME_COUNT frames' paths are made and checked (no points): seconds, not minutes."""
    n = 2000
    path = B.write_bundle(make_bundle(frames=2, points=1), tmp_path / "b")
    png = (path / "frames" / "000000.png").read_bytes()
    for i in range(n):
        (path / "frames" / B.FRAME_NAME.format(i)).write_bytes(png)
    meta = json.loads((path / "bundle.json").read_text())
    meta.update(frame_count=n, parts={**meta["parts"], "cameras": None, "points": None, "depth": None})
    (path / "bundle.json").write_text(json.dumps(meta))
    t0 = time.perf_counter()
    assert len(B.read_bundle(path).frames) == n
    per_frame = (time.perf_counter() - t0) / n
    assert per_frame * B.MAX_FRAME_COUNT < 30.0, per_frame
    assert os.path.getsize(path / "bundle.json") < B.MAX_BUNDLE_JSON_BYTES


def test_a_pair_pose_result_with_its_generated_video_can_be_written_again(tmp_path):
    """A pair-pose bundle holds the selected generated video as a bundle in ``generated/``:
    Parallax wrote it, so a new result may replace it; a ``generated/`` of the user's may not be."""
    frames = [np.full((8, 8, 3), 30 * i, np.uint8) for i in range(2)]
    out = B.write_bundle(B.Bundle("pair_pose", 8, 8, 2, frames=frames), tmp_path / "pair")
    B.write_bundle(B.Bundle("generate", 8, 8, 2, frames=frames), out / "generated")
    assert B.is_parallax_bundle(out)
    B.write_bundle(B.Bundle("pair_pose", 8, 8, 2, frames=frames), out)  # replaced, no error
    (out / "generated").mkdir()
    (out / "generated" / "notes.txt").write_text("mine")
    assert not B.is_parallax_bundle(out)
    with pytest.raises(FileExistsError):
        B.write_bundle(B.Bundle("pair_pose", 8, 8, 2, frames=frames), out)
    assert (out / "generated" / "notes.txt").read_text() == "mine"
