"""Result bundle: round trip, atomic write, validating read, zip, and the exports."""

import json
import zipfile

import numpy as np
import pytest

from backend import bundle as B
from backend import exports
from backend.bundle import Bundle, CameraFrame, PointFrame, read_bundle, write_bundle


def _rot(axis, angle):
    c, s = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    R = np.eye(3)
    R[i, i] = R[j, j] = c
    R[i, j], R[j, i] = -s, s
    return R


def make_bundle(frames=6, width=40, height=30, points=200, seed=0, unsolved=(3,)):
    rng = np.random.default_rng(seed)
    cams, pts, imgs, depth = [], [], [], []
    for f in range(frames):
        c2w = np.eye(4)
        c2w[:3, :3] = _rot(1, 0.1 * f) @ _rot(0, -0.05 * f)
        c2w[:3, 3] = [0.2 * f, 0.01 * f, -0.1 * f]
        cams.append(B.CameraFrame(f, None if f in unsolved else c2w, 50.0 + f, 55.0, 19.2, 15.7))
        n = points + f
        pts.append(B.PointFrame(rng.normal(size=(n, 3)).astype(np.float32),
                                rng.integers(0, 256, (n, 3), dtype=np.uint8),
                                rng.random(n).astype(np.float16)))
        imgs.append(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        depth.append(B.DepthFrame(rng.random((height, width)).astype(np.float32),
                                  np.ones((height, width), np.float16)))
    return B.Bundle("solve", width, height, frames, fps=23.976, engine="test", model_id="none",
                    source={"clip": "x.mp4"}, scores={"confidence": 0.5}, timings={"solve": 1.0},
                    frames=imgs, cameras=cams, points=pts, depth=depth)


@pytest.fixture
def written(tmp_path):
    b = make_bundle()
    return b, B.write_bundle(b, tmp_path / "shot")


def test_round_trip(written):
    b, path = written
    r = B.read_bundle(path)
    assert (r.task, r.width, r.height, r.frame_count, r.fps) == ("solve", 40, 30, 6, 23.976)
    assert r.scores == b.scores and r.timings == b.timings and r.source == b.source
    for c_in, c_out in zip(b.cameras, r.cameras):
        assert (c_in.fx, c_in.fy, c_in.cx, c_in.cy) == (c_out.fx, c_out.fy, c_out.cx, c_out.cy)
        if c_in.c2w is None:
            assert c_out.c2w is None
        else:
            np.testing.assert_array_equal(c_in.c2w, c_out.c2w)
    for p_in, p_out in zip(b.points, r.points):
        np.testing.assert_array_equal(p_in.xyz, p_out.xyz)
        np.testing.assert_array_equal(p_in.rgb, p_out.rgb)
        np.testing.assert_array_equal(p_in.conf, p_out.conf)
    np.testing.assert_array_equal(b.depth[2].depth, r.depth[2].depth)
    assert [f.name for f in r.frames] == [f"{i:06d}.png" for i in range(6)]
    assert np.isnan(r.c2w_array()[3]).all() and np.isfinite(r.c2w_array()[0]).all()


def test_png_frames_decode_to_the_written_pixels(written):
    from PIL import Image
    b, path = written
    np.testing.assert_array_equal(np.asarray(Image.open(path / "frames" / "000004.png")), b.frames[4])


def test_write_is_atomic(tmp_path):
    good = B.write_bundle(make_bundle(), tmp_path / "shot")
    before = sorted(p.name for p in good.rglob("*"))
    bad = make_bundle(seed=1)
    bad.frames[4] = np.zeros((30, 40), np.uint8)  # not an RGB image: fails mid-write
    with pytest.raises(ValueError):
        B.write_bundle(bad, tmp_path / "shot")
    # The previous bundle is untouched and no partial directory is left behind.
    assert sorted(p.name for p in good.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shot"]
    B.read_bundle(good)


def _expect(path, match):
    with pytest.raises(B.BundleError, match=match) as info:
        B.read_bundle(path)
    return str(info.value)


def test_missing_file_is_named(written):
    _, path = written
    (path / "points" / "000002.npz").unlink()
    msg = _expect(path, "missing")
    assert "points/000002.npz" in msg


def test_missing_frame_is_named(written):
    _, path = written
    (path / "frames" / "000005.png").unlink()
    assert "frames/000005.png" in _expect(path, "frame file is missing")


def test_wrong_array_shape_is_named(written):
    _, path = written
    np.savez(path / "points" / "000001.npz", xyz=np.zeros((5, 2), np.float32),
             rgb=np.zeros((5, 3), np.uint8), conf=np.zeros(5, np.float16))
    msg = _expect(path, r"'xyz' has shape \(5, 2\)")
    assert "points/000001.npz" in msg


def test_nan_pose_is_named(written):
    _, path = written
    cams = json.loads((path / "cameras.json").read_text())
    cams["frames"][2]["c2w"][0][3] = float("nan")
    (path / "cameras.json").write_text(json.dumps(cams))  # json writes NaN as a bare token
    msg = _expect(path, r"frames\[2\]\.c2w contains NaN")
    assert "cameras.json" in msg


def test_bad_json_is_named(written):
    _, path = written
    (path / "bundle.json").write_text('{"schema": "parallax.bundle", ')
    assert "bundle.json" in _expect(path, "not valid JSON")


def test_unknown_schema_version(written):
    _, path = written
    meta = json.loads((path / "bundle.json").read_text())
    meta["schema_version"] = 99
    (path / "bundle.json").write_text(json.dumps(meta))
    assert "bundle.json" in _expect(path, "unknown schema_version 99")


def test_non_rotation_pose_rejected(written):
    _, path = written
    cams = json.loads((path / "cameras.json").read_text())
    cams["frames"][0]["c2w"][0][0] = 2.0
    (path / "cameras.json").write_text(json.dumps(cams))
    _expect(path, r"frames\[0\]\.c2w rotation is not a proper rotation")


def test_zip_round_trip_and_zip_slip(tmp_path, written):
    _, path = written
    z = B.zip_bundle(path, tmp_path / "shot.zip")
    r = B.read_bundle(z)
    # Extracted into a folder of its own beside the zip, not over its namesake `shot/`.
    assert r.frame_count == 6 and r.path.name.startswith("shot.parallax-") and r.path.parent == tmp_path
    assert r.id == B.read_bundle(path).id and B.is_parallax_extraction(r.path)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escaped.txt", "x")
    with pytest.raises(B.BundleError, match="outside"):
        B.unzip_bundle(evil, tmp_path / "evil_out")
    assert not (tmp_path / "escaped.txt").exists()


def _project(K, c2w, X):
    w2c = np.linalg.inv(c2w)
    Xc = X @ w2c[:3, :3].T + w2c[:3, 3]
    return (Xc[:, :2] / Xc[:, 2:]) * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]


def test_colmap_export_reads_back_with_pycolmap(tmp_path, written):
    pycolmap = pytest.importorskip("pycolmap")
    b, _ = written
    out = exports.export_colmap(b, tmp_path / "colmap")
    rec = pycolmap.Reconstruction(str(out))
    solved = [c for c in b.cameras if c.c2w is not None]
    assert len(rec.images) == len(solved)
    X = np.random.default_rng(3).normal(size=(20, 3)) + [0, 0, 5]
    for image_id, c in enumerate(solved, start=1):
        image = rec.images[image_id]
        cam = rec.cameras[image.camera_id]
        assert image.name == f"frames/{c.index:06d}.png"
        # COLMAP's pixel centres are at +0.5: the same projection, shifted half a pixel.
        np.testing.assert_allclose(cam.params, [c.fx, c.fy, c.cx + 0.5, c.cy + 0.5], atol=1e-9)
        pose = image.cam_from_world() if callable(image.cam_from_world) else image.cam_from_world
        w2c = np.eye(4)
        w2c[:3, :4] = pose.matrix()
        np.testing.assert_allclose(np.linalg.inv(w2c), c.c2w, atol=1e-9)
        uv_colmap = np.array([cam.img_from_cam(w2c[:3, :3] @ p + w2c[:3, 3])
                              for p in X])
        np.testing.assert_allclose(uv_colmap - 0.5, _project(c.K, c.c2w, X), atol=1e-6)
    assert len(rec.points3D) == sum(len(p.xyz) for p in b.points)


def test_nerfstudio_transforms_convention(tmp_path, written):
    _, path = written
    b = read_bundle(path)
    doc = json.loads(exports.export_nerfstudio(b, tmp_path / "transforms.json").read_text())
    assert doc["camera_model"] == "OPENCV"
    solved = [c for c in b.cameras if c.c2w is not None]
    # paths resolve from the file's own folder, wherever it was written
    for where in (tmp_path / "transforms.json", b.path / "transforms.json", tmp_path / "deep" / "er" / "t.json"):
        where.parent.mkdir(parents=True, exist_ok=True)
        paths = [f["file_path"] for f in json.loads(exports.export_nerfstudio(b, where).read_text())["frames"]]
        assert [(where.parent / f).resolve() for f in paths] == [(b.path / f"frames/{c.index:06d}.png").resolve()
                                                                 for c in solved]
        assert all((where.parent / f).is_file() for f in paths)
    X = np.random.default_rng(4).normal(size=(20, 3)) + [0, 0, 5]
    for f, c in zip(doc["frames"], solved):
        c2w_gl = np.array(f["transform_matrix"])
        # OpenGL camera: looks down -z, y up. Project as nerfstudio does (pixel centres at +0.5).
        Xc = (X - c2w_gl[:3, 3]) @ c2w_gl[:3, :3]
        u = f["fl_x"] * Xc[:, 0] / -Xc[:, 2] + f["cx"]
        v = -f["fl_y"] * Xc[:, 1] / -Xc[:, 2] + f["cy"]
        np.testing.assert_allclose(np.stack([u, v], 1) - 0.5, _project(c.K, c.c2w, X), atol=1e-6)


def test_tum_export_reads_back_with_evo(tmp_path, written):
    file_interface = pytest.importorskip("evo.tools.file_interface")
    b, _ = written
    traj = file_interface.read_tum_trajectory_file(str(exports.export_tum(b, tmp_path / "t.tum")))
    solved = [c for c in b.cameras if c.c2w is not None]
    np.testing.assert_allclose(traj.timestamps, [c.index / b.fps for c in solved], atol=1e-6)
    np.testing.assert_allclose(np.array(traj.poses_se3), [c.c2w for c in solved], atol=1e-6)


def test_ply_export_reads_back_with_plyfile(tmp_path, written):
    plyfile = pytest.importorskip("plyfile")
    b, _ = written
    ply = plyfile.PlyData.read(str(exports.export_ply(b, tmp_path / "p.ply")))
    v = ply["vertex"]
    xyz = np.concatenate([p.xyz for p in b.points])
    np.testing.assert_array_equal(np.stack([v["x"], v["y"], v["z"]], 1), xyz)
    np.testing.assert_array_equal(v["red"], np.concatenate([p.rgb for p in b.points])[:, 0])


def test_export_cli(tmp_path, written):
    from backend.__main__ import main
    _, path = written
    assert main(["export", str(path), "--format", "tum", "--out", str(tmp_path / "x.tum")]) == 0
    assert (tmp_path / "x.tum").read_text().count("\n") == 1 + 5
    folder = tmp_path / "exports"
    folder.mkdir()  # an existing folder gets the format's file inside it, never replaced by a file
    for fmt, name in (("tum", "trajectory.tum"), ("ply", "points.ply"), ("nerfstudio", "transforms.json")):
        assert main(["export", str(path), "--format", fmt, "--out", str(folder)]) == 0
        assert (folder / name).is_file()
    (path / "bundle.json").unlink()
    assert main(["export", str(path), "--format", "tum"]) == 1


def test_colmap_export_keeps_shared_cameras_unique_points_and_tracks_for_bundle_adjustment(tmp_path):
    """A structure-from-motion bundle (one camera, 3D points seen by several frames, their
    tracks kept) exports as COLMAP would have written it, and pycolmap's bundle adjustment runs."""
    pycolmap = pytest.importorskip("pycolmap")
    rng = np.random.default_rng(7)
    W, H, f = 320, 240, 280.0
    X = rng.uniform([-2, -1.5, 4], [2, 1.5, 8], size=(60, 3))
    cams, points = [], []
    for i in range(4):
        c2w = np.eye(4)
        c2w[:3, 3] = [0.3 * i, 0.0, 0.0]
        cam = CameraFrame(i, c2w, f, f, (W - 1) / 2, (H - 1) / 2)
        uv = _project(cam.K, c2w, X)
        seen = np.nonzero((uv[:, 0] > 0) & (uv[:, 0] < W - 1) & (uv[:, 1] > 0) & (uv[:, 1] < H - 1)
                          & (np.arange(len(X)) % 4 != i))[0]  # every point missed by one frame
        cams.append(cam)
        points.append(PointFrame(X[seen].astype(np.float32), np.full((len(seen), 3), 128, np.uint8),
                                 np.ones(len(seen), np.float16), track=seen.astype(np.int64),
                                 uv=uv[seen].astype(np.float32)))
    frames = [np.zeros((H, W, 3), np.uint8)] * 4
    b = read_bundle(write_bundle(Bundle("solve", W, H, 4, engine="colmap", frames=frames, cameras=cams,
                                        points=points), tmp_path / "sfm"))
    rec = pycolmap.Reconstruction(str(exports.export_colmap(b, tmp_path / "colmap")))
    assert len(rec.cameras) == 1  # one shared camera, as solved
    ids, counts = np.unique(np.concatenate([p.track for p in b.points]), return_counts=True)
    assert len(rec.points3D) == (counts >= 2).sum() > 40  # each tracked 3D point once, not once per frame
    for pid, p3d in rec.points3D.items():
        assert p3d.track.length() == sum(int(pid - 1 in p.track) for p in b.points)
        np.testing.assert_allclose(p3d.xyz, X[pid - 1], atol=1e-5)
    before = rec.compute_mean_reprojection_error()
    assert before < 1e-3  # the observations are the exact projections
    pycolmap.bundle_adjustment(rec)
    assert rec.compute_mean_reprojection_error() < 1e-3


def test_distortion_undistorted_frames_and_plots_round_trip(tmp_path):
    b = make_bundle(frames=3)
    for c in b.cameras:
        c.dist = (-0.12, 0.03, 0.001, -0.0005)
    b.undistorted = [np.full_like(f, 7) for f in b.frames]
    b.plots = {"quality": B.encode_png(np.zeros((4, 5, 3), np.uint8))}
    out = write_bundle(b, tmp_path / "b")
    assert B.is_parallax_bundle(out)
    back = read_bundle(out)
    assert [c.dist for c in back.cameras] == [(-0.12, 0.03, 0.001, -0.0005)] * 3
    assert len(back.undistorted) == 3 and B.png_size(back.undistorted[0]) == (b.width, b.height)
    assert set(back.plots) == {"quality"} and B.png_size(back.plots["quality"]) == (5, 4)
    again = write_bundle(back, tmp_path / "c")  # a read bundle writes again (paths, not arrays)
    assert read_bundle(again).plots["quality"].read_bytes() == back.plots["quality"].read_bytes()


def test_bad_distortion_and_plots_are_refused(tmp_path):
    b = make_bundle(frames=2)
    b.cameras[0].dist = (0.1, float("nan"), 0, 0)
    with pytest.raises(B.BundleError, match=r"frames\[0\]\.dist"):
        write_bundle(b, tmp_path / "nan")
    b.cameras[0].dist = None
    b.undistorted = list(b.frames)
    with pytest.raises(B.BundleError, match="undistorted frames need"):
        write_bundle(b, tmp_path / "nodist")
    b.undistorted, b.plots = None, {"../evil": b"\x89PNG\r\n\x1a\n"}
    with pytest.raises(B.BundleError, match="plot name"):
        write_bundle(b, tmp_path / "name")
    b.plots = None
    out = write_bundle(b, tmp_path / "ok")
    cams = json.loads((out / "cameras.json").read_text())
    cams["frames"][1]["dist"] = [0.1, 0.2]
    (out / "cameras.json").write_text(json.dumps(cams))
    with pytest.raises(B.BundleError, match=r"frames\[1\]\.dist must be"):
        read_bundle(out)
    cams["frames"][1]["dist"] = [1e9, 0, 0, 0]
    (out / "cameras.json").write_text(json.dumps(cams))
    with pytest.raises(B.BundleError, match=r"frames\[1\]\.dist must be 4 or 5 finite"):
        read_bundle(out)
    (out / "plots").mkdir()
    (out / "plots" / "x.png").write_text("not a png")
    meta = json.loads((out / "bundle.json").read_text())
    meta["parts"]["plots"] = "plots"
    cams["frames"][1]["dist"] = [0.1, 0, 0, 0]
    (out / "cameras.json").write_text(json.dumps(cams))
    (out / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(B.BundleError, match="not a PNG"):
        read_bundle(out)


def test_depth_pngs_for_nerfstudio_and_per_frame_ply(tmp_path):
    """Depth exports are 16-bit PNGs in thousandths of a unit that nerfstudio's frames name;
    ply-frames writes each frame's points with the dynamic flag."""
    import cv2
    from plyfile import PlyData

    b = make_bundle(frames=4, unsolved=(2,))
    b.depth[0].depth[0, 0] = 0.0  # unknown
    b.depth[1].depth[0, 1] = 1e6  # beyond the PNG's range: clipped, never wrapped
    b.points[3].dynamic = np.arange(len(b.points[3].xyz)) % 2 == 0
    path = write_bundle(b, tmp_path / "b")
    back = read_bundle(path)
    out = exports.export_nerfstudio(back, tmp_path / "ns" / "transforms.json")
    doc = json.loads(out.read_text())
    assert [f["depth_file_path"] for f in doc["frames"]] == [f"depth_png/{i:06d}.png" for i in (0, 1, 3)]
    png = cv2.imread(str(tmp_path / "ns" / "depth_png" / "000001.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.shape == (b.height, b.width)
    want = np.clip(np.rint(b.depth[1].depth * 1000), 1, 65535)
    assert png[0, 1] == 65535 and np.array_equal(png[1:], want[1:])
    assert cv2.imread(str(tmp_path / "ns" / "depth_png" / "000000.png"), cv2.IMREAD_UNCHANGED)[0, 0] == 0
    assert not (tmp_path / "ns" / "depth_png" / "000002.png").exists()  # unsolved frame: left out

    folder = exports.export_ply_frames(back, tmp_path / "plys")
    ply = PlyData.read(str(folder / "000003.ply"))["vertex"]
    assert len(ply) == len(b.points[3].xyz)
    np.testing.assert_allclose(np.stack([ply["x"], ply["y"], ply["z"]], 1), b.points[3].xyz)
    assert np.array_equal(ply["dynamic"].astype(bool), b.points[3].dynamic)
    assert "dynamic" not in PlyData.read(str(folder / "000000.ply"))["vertex"].data.dtype.names

    b.depth = None
    with pytest.raises(ValueError, match="no depth maps"):
        exports.export_depth(b, tmp_path / "none")


def test_export_cli_depth_and_ply_frames(tmp_path, written):
    from backend.__main__ import main as cli

    _, path = written
    assert cli(["export", str(path), "--format", "depth"]) == 0
    assert sorted(p.name for p in (path / "depth_png").iterdir())[:2] == ["000000.png", "000001.png"]
    assert cli(["export", str(path), "--format", "ply-frames"]) == 0
    assert B.is_parallax_bundle(path)  # exports inside a bundle keep it replaceable
