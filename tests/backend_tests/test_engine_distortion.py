"""Lens distortion end to end: synthetic footage shot through a known lens (backend/data/lens.py),
the colmap engine's lens decision and undistorted frames, and the COLMAP / nerfstudio exports
of a distorted camera read back by their own readers' rules."""

from __future__ import annotations

import json

import numpy as np
import pytest

pycolmap = pytest.importorskip("pycolmap")
cv2 = pytest.importorskip("cv2")

from backend.bundle import Bundle, CameraFrame, PointFrame, read_bundle, write_bundle  # noqa: E402
from backend.engines import EngineError, get_engine  # noqa: E402
from backend.engines.colmap import lens_models  # noqa: E402
from backend.engines.lens import MIN_SHIFT_PX, decide, is_monotonic, max_shift_px, undistort_frames  # noqa: E402
from backend.exports import export_colmap, export_nerfstudio  # noqa: E402

DIST = (-0.15, 0.05, 0.0, 0.0)


@pytest.fixture(scope="module")
def clip():
    """Seed 0, 16 frames of 256x192 with a 60 deg field of view (orbit, photo textures), shot
    through k1 -0.15, k2 0.05: up to 10 px of barrel distortion at the corners."""
    synth = pytest.importorskip("backend.data.synth")  # noqa: F841 (torch renderer)
    from backend.data.lens import render_distorted_clip
    from backend.eval.datasets import find_shared

    return render_distorted_clip(0, DIST, frames=16, height=192, width=256, textures=find_shared("textures"),
                                 fov_deg=60)


def _blur(frames):
    return np.stack([cv2.GaussianBlur(np.asarray(f), (0, 0), 1.0) for f in frames]).astype(np.float64)


def test_undistorting_the_shot_frames_gives_the_pinhole_rendering(clip):
    """Round trip: the footage as shot, undistorted with the known K and dist, is the pinhole
    render of the same views (measured: mean difference 0.37 grey levels after a 1 px blur that
    hides the two bilinear resamplings; the distortion itself makes 3.55, ~10x that)."""
    assert max_shift_px(clip.K, DIST, 256, 192) == pytest.approx(10.0, abs=1.0)
    back = undistort_frames(clip.frames, clip.K, clip.dist)
    # cv2.undistort's own (fixed-point) tables agree with the float ones to rounding
    same = np.abs(back[3].astype(int) - cv2.undistort(clip.frames[3], clip.K, clip.dist))
    assert same.max() <= 4 and same.mean() < 0.2
    pinhole = _blur(clip.pinhole)
    inner = (slice(None), slice(4, -4), slice(4, -4))  # the border samples the canvas edge
    err = np.abs(_blur(back) - pinhole)[inner].mean()
    err_shot = np.abs(_blur(clip.frames) - pinhole)[inner].mean()
    assert err < 1.0 and err < err_shot / 4, (err, err_shot)


def _undistorted_reprojection_px(bundle) -> np.ndarray:
    """Per observation: the 3D point projected by the bundle's pinhole camera, against its
    observation (as shot) moved to the undistorted image with the bundle's K and dist."""
    out = []
    for cam, pts in zip(bundle.cameras, bundle.points):
        if cam.c2w is None or not len(pts.xyz):
            continue
        K, dist = cam.K, np.asarray(cam.dist)
        seen = cv2.undistortPoints(pts.uv.reshape(-1, 1, 2).astype(np.float64), K, dist, P=K,
                                   criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-10)).reshape(-1, 2)
        w2c = np.linalg.inv(cam.c2w)
        x = pts.xyz.astype(np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
        proj = x @ K.T
        out.append(np.linalg.norm(proj[:, :2] / proj[:, 2:] - seen, axis=1))
    return np.concatenate(out)


def test_distorted_clip_keeps_its_lens_and_undistorted_frames(clip, tmp_path):
    """lens "auto" (the default) on the distorted clip: the radial model is kept (measured k1
    -0.150 to -0.151, k2 0.051-0.053; error 14-15 % lower than the pinhole solve's), k1 within
    10 %, every camera carries the same dist, the points reproject onto the undistorted
    observations within 0.5 px (measured 0.23 px), the undistorted frames are the pinhole
    rendering (measured 0.38 grey levels apart after a 1 px blur), and the bundle keeps all of
    it through a write and read."""
    bundle = get_engine("colmap").solve(clip.frames, num_threads=2)
    lens = bundle.source["lens"]
    assert lens["decision"] == "distorted" and lens["option"] == "auto", lens
    assert lens["colmap_model"] == "RADIAL" and lens["max_shift_px"] > MIN_SHIFT_PX
    assert "undistorted" in lens["summary"]
    dist = bundle.cameras[0].dist
    assert dist[0] == pytest.approx(DIST[0], rel=0.10), dist
    assert all(c.dist == dist for c in bundle.cameras)
    assert bundle.scores["registered"] == 16
    err = _undistorted_reprojection_px(bundle)
    assert len(err) > 500 and err.mean() < 0.5, err.mean()
    assert len(bundle.undistorted) == 16
    diff = np.abs(_blur(bundle.undistorted) - _blur(clip.pinhole))[:, 12:-12, 12:-12].mean()
    assert diff < 1.5, diff  # the solved lens, not the true one: close, not equal
    assert set(bundle.plots) == {"quality"} and bundle.plots["quality"][:8] == b"\x89PNG\r\n\x1a\n"

    back = read_bundle(write_bundle(bundle, tmp_path / "b"))
    assert back.cameras[0].dist == pytest.approx(dist) and len(back.undistorted) == 16
    assert set(back.plots) == {"quality"}


def test_pinhole_clip_keeps_no_lens(clip):
    """The same views through a pinhole: "auto" maps both cameras and keeps the pinhole one
    (the radial estimate moves the image by 0.28 px and lowers the error by 0.3 %)."""
    bundle = get_engine("colmap").solve(clip.pinhole, num_threads=2)
    lens = bundle.source["lens"]
    assert lens["decision"] == "pinhole" and lens["model"] == "pinhole", lens
    assert "distorted" in lens and "reason" in lens and lens["summary"].startswith("lens: pinhole")
    assert all(c.dist is None for c in bundle.cameras) and bundle.undistorted is None
    assert bundle.scores["registered"] == 16 and "quality" in bundle.plots


def test_lens_decision_rules():
    """The decision on made-up solves: a plausible lens that lowers the error is kept; a tiny
    one, a fold-back, a focal far off the pinhole's, fewer frames or no better error are not."""
    K = np.array([[220.0, 0, 127.5], [0, 220.0, 95.5], [0, 0, 1]])
    pin = {"K": K, "registered": 16, "error_px": 0.30}
    good = {"K": K * [[0.9], [0.9], [1]], "dist": [-0.15, 0.05, 0, 0], "registered": 16, "error_px": 0.25}
    assert decide(256, 192, pin, good, focal_known=False)["keep"] == "distorted"
    tiny = dict(good, dist=[-0.002, 0, 0, 0])
    assert decide(256, 192, pin, tiny, focal_known=False)["keep"] == "pinhole"
    assert not is_monotonic(K, [-1.5, 0, 0, 0], 256, 192)
    assert decide(256, 192, pin, dict(good, dist=[-1.5, 0, 0, 0]), focal_known=False)["keep"] == "pinhole"
    far = dict(good, K=K * [[2.7], [2.7], [1]], dist=[1.8, 12.2, 0, 0])
    verdict = decide(256, 192, pin, far, focal_known=False)
    assert verdict["keep"] == "pinhole" and "focal length" in verdict["reason"]
    assert decide(256, 192, pin, far, focal_known=True)["keep"] == "distorted"  # a known focal cannot drift
    assert decide(256, 192, pin, dict(good, registered=15), focal_known=False)["keep"] == "pinhole"
    assert decide(256, 192, pin, dict(good, error_px=0.29), focal_known=False)["keep"] == "pinhole"


def test_lens_option_and_camera_model_must_agree():
    assert lens_models("auto", None, None) == [("pinhole", "SIMPLE_PINHOLE"), ("distorted", "RADIAL")]
    K = np.array([[500.0, 0, 320], [0, 520.0, 240], [0, 0, 1]])
    assert lens_models("distorted", None, K) == [("distorted", "OPENCV")]  # two focal lengths
    assert lens_models("auto", "SIMPLE_RADIAL", None)[1] == ("distorted", "SIMPLE_RADIAL")
    assert lens_models("auto", "PINHOLE", K) == [("pinhole", "PINHOLE")]
    with pytest.raises(EngineError, match="lens 'pinhole' estimates no distortion"):
        lens_models("pinhole", "RADIAL", None)
    with pytest.raises(EngineError, match="lens must be one of"):
        lens_models("fisheye", None, None)
    from backend.engines.options import ColmapOptions

    with pytest.raises(ValueError, match="lens 'distorted' estimates distortion"):
        ColmapOptions(lens="distorted", camera_model="PINHOLE")


# ----------------------------------------------------------------------------------------
# Exports of a distorted camera


def _distorted_bundle(dist=(-0.12, 0.03, 0.001, -0.0005)):
    """Four frames orbiting 30 points, the points' observations projected through K and dist
    (OpenCV), the cameras carrying dist."""
    rng = np.random.default_rng(0)
    K = np.array([[300.0, 0, 159.5], [0, 310.0, 119.5], [0, 0, 1]])
    X = rng.uniform([-1, -1, 3], [1, 1, 5], (30, 3))
    cams, points = [], []
    for i in range(4):
        a = np.radians(4 * i)
        c2w = np.eye(4)
        c2w[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        c2w[:3, 3] = [0.3 * i, 0, 0]
        cams.append(CameraFrame(i, c2w, K[0, 0], K[1, 1], K[0, 2], K[1, 2], dist=tuple(dist)))
        w2c = np.linalg.inv(c2w)
        uv, _ = cv2.projectPoints(X, cv2.Rodrigues(w2c[:3, :3])[0], w2c[:3, 3], K, np.asarray(dist, np.float64))
        points.append(PointFrame(X.astype(np.float32), np.full((30, 3), 200, np.uint8), np.ones(30, np.float16),
                                 track=np.arange(30, dtype=np.int64), uv=uv.reshape(-1, 2).astype(np.float32)))
    frames = [np.zeros((240, 320, 3), np.uint8) for _ in range(4)]
    return Bundle(task="solve", width=320, height=240, frame_count=4, frames=frames, cameras=cams, points=points), X


def test_colmap_export_writes_an_opencv_camera_pycolmap_reads(tmp_path):
    """The export's camera is OPENCV with fx fy cx+0.5 cy+0.5 k1 k2 p1 p2; pycolmap reads it, and
    its own projection of every 3D point lands on the observation (+0.5) to 1e-3 px, so bundle
    adjustment starts from a model that fits."""
    bundle, X = _distorted_bundle()
    export_colmap(bundle, tmp_path / "colmap")
    rec = pycolmap.Reconstruction(str(tmp_path / "colmap"))
    (cam,) = rec.cameras.values()
    assert cam.model_name == "OPENCV"
    np.testing.assert_allclose(cam.params, [300, 310, 160, 120, -0.12, 0.03, 0.001, -0.0005], atol=1e-9)
    assert rec.compute_mean_reprojection_error() < 1e-3
    five, _ = _distorted_bundle((-0.12, 0.03, 0.001, -0.0005, 0.01))
    export_colmap(five, tmp_path / "five")
    (cam5,) = pycolmap.Reconstruction(str(tmp_path / "five")).cameras.values()
    assert cam5.model_name == "FULL_OPENCV" and cam5.params[8] == pytest.approx(0.01)
    pinhole, _ = _distorted_bundle()
    for c in pinhole.cameras:
        c.dist = None
    export_colmap(pinhole, tmp_path / "pinhole")
    assert next(iter(pycolmap.Reconstruction(str(tmp_path / "pinhole")).cameras.values())).model_name == "PINHOLE"


def test_nerfstudio_export_carries_the_distortion_where_its_dataparser_reads_it(tmp_path):
    """nerfstudio's dataparser takes camera_model and, when any of k1..k4, p1, p2 is at the top
    level, one distortion for all frames from there (per frame otherwise)."""
    bundle, _ = _distorted_bundle()
    doc = json.loads(export_nerfstudio(bundle, tmp_path / "transforms.json").read_text())
    assert doc["camera_model"] == "OPENCV"
    assert [doc[k] for k in ("k1", "k2", "p1", "p2")] == pytest.approx([-0.12, 0.03, 0.001, -0.0005])
    assert "k1" not in doc["frames"][0] and doc["frames"][0]["cx"] == pytest.approx(160.0)
    bundle.cameras[1].dist = (-0.1, 0.0, 0.0, 0.0)  # frames that differ: per frame
    doc = json.loads(export_nerfstudio(bundle, tmp_path / "per_frame.json").read_text())
    assert not any(k in doc for k in ("k1", "k2", "k3", "k4", "p1", "p2"))
    assert doc["frames"][1]["k1"] == pytest.approx(-0.1) and doc["frames"][0]["k2"] == pytest.approx(0.03)
