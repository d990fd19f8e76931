"""The auto engine's choice (exact, on a noise-free pycolmap scene), and the per-frame quality
and lens records every colmap solve carries."""

from __future__ import annotations

import numpy as np
import pytest

pycolmap = pytest.importorskip("pycolmap")

from backend.engines import ENGINES, get_engine  # noqa: E402
from backend.engines import features as F  # noqa: E402
from backend.engines.auto import choose, consistency  # noqa: E402
from backend.engines.colmap import _reader, frame_quality, lens_distortion  # noqa: E402
from backend.engines.colmap_select import VerifiedMatches  # noqa: E402
from backend_tests.solver_scenes import colmap_scene, textured_clip  # noqa: E402


def _turned(rec, name: str, degrees: float):
    out = pycolmap.Reconstruction(rec)
    frame_id = next(im.frame_id for im in out.images.values() if im.name == name)
    half = np.radians(degrees) / 2
    turn = pycolmap.Rigid3d(pycolmap.Rotation3d(np.array([np.sin(half), 0.0, 0.0, np.cos(half)])), np.zeros(3))
    out.frames[frame_id].rig_from_world = turn * out.frames[frame_id].rig_from_world
    return out


def test_auto_keeps_the_candidate_whose_cameras_explain_the_matches(tmp_path):
    """Candidate A (tried first) has one frame turned by 5 deg; B is the true scene. auto picks B
    on the pooled matches; an exact tie goes to the first candidate; a failed candidate scores
    0 and loses; the true model explains every match (consistency 1)."""
    true, verified, names = colmap_scene(tmp_path)
    wrong = _turned(true, names[2], 5.0)
    half = VerifiedMatches(verified.keypoints, verified.pairs[::2])  # a second pool: other matches
    pools = {"aliked": verified, "sift": half}

    assert consistency(true, pools) == pytest.approx({"aliked": 1.0, "sift": 1.0}, abs=1e-9)
    chosen, scored = choose({"aliked": wrong, "sift": true}, pools)
    assert chosen == "sift"
    assert scored["sift"]["consistency"] == pytest.approx(1.0)
    assert scored["aliked"]["consistency"] < scored["sift"]["consistency"]
    assert scored["aliked"]["consistency"] < 0.9  # the turned frame's matches (4 of 10 pairs) lose support
    assert choose({"aliked": true, "sift": pycolmap.Reconstruction(true)}, pools)[0] == "aliked"
    assert choose({"aliked": None, "sift": wrong}, pools)[0] == "sift"
    chosen, scored = choose({"aliked": None, "sift": None}, pools)
    assert chosen is None and scored["aliked"]["consistency"] == 0.0


def test_a_model_that_places_fewer_frames_scores_lower(tmp_path):
    true, verified, names = colmap_scene(tmp_path)
    fewer = pycolmap.Reconstruction(true)
    fewer.deregister_frame(next(im.frame_id for im in fewer.images.values() if im.name == names[0]))
    (score,) = consistency(fewer, {"p": verified}).values()
    own = sum(len(m) for a, b, m in verified.pairs if names[0] in (a, b))
    assert score == pytest.approx(1.0 - own / verified.total, abs=1e-9)
    assert choose({"fewer": fewer, "all": true}, {"p": verified})[0] == "all"


def test_frame_quality_lists(tmp_path):
    """Per frame: solved, mean reprojection error (0 on a noise-free scene; a frame turned by
    1 deg shows its error), point observations; an unregistered frame is (False, None, 0)."""
    true, _, names = colmap_scene(tmp_path)
    q = frame_quality(true, names)
    assert q["frame_solved"] == [True] * 5
    assert max(q["frame_reprojection_error_px"]) < 1e-6
    assert q["frame_tracks"] == [80] * 5
    turned = _turned(true, names[1], 1.0)
    err = frame_quality(turned, names)["frame_reprojection_error_px"]
    assert err[1] > 3.0 and max(err[0], err[2]) < 1e-6  # ~ f * 1 deg = 9 px
    fewer = pycolmap.Reconstruction(true)
    fewer.deregister_frame(next(im.frame_id for im in fewer.images.values() if im.name == names[3]))
    q = frame_quality(fewer, names + ["not-there.png"])
    assert q["frame_solved"][3:] == [False, True, False]
    assert q["frame_reprojection_error_px"][3] is None and q["frame_tracks"][3] == 0


def test_lens_models_become_opencv_coefficients():
    def camera(model, params):
        return pycolmap.Camera(model=model, width=640, height=480, params=params)

    assert lens_distortion(camera("PINHOLE", [500, 500, 320, 240])) is None
    assert lens_distortion(camera("SIMPLE_RADIAL", [500, 320, 240, -0.1]))["dist"] == [-0.1, 0.0, 0.0, 0.0]
    assert lens_distortion(camera("RADIAL", [500, 320, 240, -0.1, 0.02]))["dist"] == [-0.1, 0.02, 0.0, 0.0]
    lens = lens_distortion(camera("OPENCV", [500, 510, 320, 240, -0.1, 0.02, 0.001, -0.002]))
    assert lens["dist"] == [-0.1, 0.02, 0.001, -0.002] and lens["model"] == "OPENCV"


def test_known_intrinsics_seed_the_camera_model():
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    reader, extra = _reader(pycolmap, K, "OPENCV")
    assert reader.camera_model == "OPENCV" and extra
    assert [float(v) for v in reader.camera_params.split(",")] == [500, 500, 320, 240, 0, 0, 0, 0]
    reader, extra = _reader(pycolmap, K, None)
    assert reader.camera_model == "PINHOLE" and not extra
    reader, extra = _reader(pycolmap, None, "RADIAL")
    assert reader.camera_model == "RADIAL" and extra and reader.camera_params == ""


def test_auto_on_a_rendered_clip_records_both_scores(one_torch_thread):
    """End to end on a rendered orbit (8 frames, known K): auto solves with ALIKED and SIFT,
    both explain the pooled matches well, the bundle is the chosen one's and records both
    consistencies and the choice."""
    reason = ENGINES["auto"].unavailable_reason()
    if reason:
        pytest.skip(reason)
    metrics = pytest.importorskip("backend.geometry.metrics")
    clip, frames, _, K = textured_clip(frames=8)
    bundle = get_engine("auto").solve(frames, K=K, max_keypoints=512, learned_image_size=512, overlap=3,
                                      num_threads=1)
    auto = bundle.scores["auto"]
    assert set(auto["consistency"]) == {"aliked", "sift"} and auto["chosen"] in ("aliked", "sift")
    assert all(0.5 < c <= 1.0 for c in auto["consistency"].values()), auto
    assert bundle.engine == "auto" and bundle.source["features"] == auto["chosen"]
    assert bundle.source["auto"]["candidates"]["sift"]["verified_matches"] > 0
    m = metrics.pairwise_metrics(bundle.c2w_array(), clip.c2w[0].cpu().numpy().astype(np.float64))
    assert m["mAA@30"] >= 0.9, m
    assert {"aliked/total", "sift/total", "total"} <= set(bundle.timings)


def test_auto_needs_learned_features(monkeypatch, tmp_path):
    monkeypatch.setattr(F, "weights_dir", lambda: tmp_path)
    assert "aliked" in ENGINES["auto"].unavailable_reason()


def test_lens_distortion_is_recovered_from_distorted_footage(one_torch_thread):
    """A rendered orbit (16 frames, 384x288) warped with a known barrel distortion k1 = -0.2
    (OpenCV model), solved with the known focal length and camera_model SIMPLE_RADIAL: k1 comes
    back within 10 % (measured -0.2008), every frame registers, and the reprojection error
    with the distortion modelled is under 0.5 px (measured 0.45; estimating the focal length
    too gave k1 -0.192 and a focal 1.7 % long)."""
    cv2 = pytest.importorskip("cv2")
    h, w = 288, 384
    _, pinhole, _, K = textured_clip(frames=16, height=h, width=w)
    dist = np.array([-0.2, 0.0, 0.0, 0.0])
    # each distorted pixel samples the pinhole render where its undistorted ray lands
    uv = np.stack(np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)), -1)
    src = cv2.undistortPoints(uv.reshape(-1, 1, 2), K, dist, P=K).reshape(h, w, 2).astype(np.float32)
    frames = [cv2.remap(f, src[..., 0], src[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
              for f in pinhole]
    bundle = get_engine("colmap").solve(frames, focal_px=float(K[0, 0]), camera_model="SIMPLE_RADIAL",
                                        num_threads=1)
    lens = bundle.source["lens"]
    assert lens["model"] == "OPENCV" and lens["colmap_model"] == "SIMPLE_RADIAL"
    assert lens["dist"][0] == pytest.approx(-0.2, rel=0.1) and lens["dist"][1:] == [0.0, 0.0, 0.0]
    assert bundle.scores["registered"] == 16
    assert bundle.scores["mean_reprojection_error_px"] < 0.5
    assert bundle.cameras[0].fx == pytest.approx(K[0, 0]) and bundle.source["intrinsics"] == "given (held fixed)"
