"""auto with the unified model as a candidate: per-frame pinhole cameras judged on verified
matches by the same rule as a COLMAP model, and an end-to-end solve with the real model."""

from __future__ import annotations

import numpy as np
import pytest

pycolmap = pytest.importorskip("pycolmap")

from backend.engines import ENGINES, EngineError, get_engine  # noqa: E402
from backend.engines.auto import _candidate_list, choose, consistency  # noqa: E402
from backend.engines.colmap_select import PinholeCameras, epipolar_support, pinhole_support  # noqa: E402
from backend.engines.options import AutoOptions  # noqa: E402
from backend_tests.solver_scenes import colmap_scene, textured_clip  # noqa: E402


def _as_pinhole(rec, shift_px: float = 0.5) -> PinholeCameras:
    """The reconstruction's cameras as a bundle holds them: OpenCV c2w, and K with pixel centres
    at integers (COLMAP's principal point minus ``shift_px``)."""
    views = {}
    for img in rec.images.values():
        fx, fy, cx, cy = rec.cameras[img.camera_id].params
        w2c = np.eye(4)
        w2c[:3, :] = img.cam_from_world().matrix()
        views[img.name] = (np.array([[fx, 0, cx - shift_px], [0, fy, cy - shift_px], [0, 0, 1.0]]),
                           np.linalg.inv(w2c))
    return PinholeCameras(views)


def _turn(c2w: np.ndarray, degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    R = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    out = c2w.copy()
    out[:3, :3] = out[:3, :3] @ R
    return out


def test_true_pinhole_cameras_explain_every_match_like_the_colmap_model(tmp_path):
    """The true cameras, given as per-frame K and c2w in the bundle's pixel convention, support
    every match fully, exactly as the COLMAP model does; forgetting the half-pixel shift, a frame
    turned by 3 deg, or a frame left out each lose support."""
    rec, verified, _ = colmap_scene(tmp_path)
    total = verified.total
    assert epipolar_support(rec, verified) == pytest.approx(total, rel=1e-9)
    true = _as_pinhole(rec)
    assert pinhole_support(true, verified) == pytest.approx(total, rel=1e-9)

    unshifted = pinhole_support(_as_pinhole(rec, shift_px=0.0), verified)
    assert unshifted < total - 1.0  # half a pixel off in the principal point is seen

    name = sorted(true.views)[2]
    turned = PinholeCameras(dict(true.views))
    K, c2w = turned.views[name]
    turned.views[name] = (K, _turn(c2w, 3.0))
    own = sum(len(m) for a, b, m in verified.pairs if name in (a, b))
    assert pinhole_support(turned, verified) < total - 0.5 * own  # ~ f * 3 deg = 26 px: no support

    fewer = PinholeCameras({k: v for k, v in true.views.items() if k != name})
    assert pinhole_support(fewer, verified) == pytest.approx(total - own, rel=1e-9)


def test_pinhole_cameras_from_a_bundle(tmp_path):
    """Bundle cameras become named views; an unsolved frame (c2w None) is not placed."""
    from backend.bundle import Bundle, CameraFrame

    rec, verified, _ = colmap_scene(tmp_path, frames=3)
    true = _as_pinhole(rec)
    names = sorted(true.views)
    cams = [CameraFrame(index=i, c2w=true.views[n][1], fx=true.views[n][0][0, 0], fy=true.views[n][0][1, 1],
                        cx=true.views[n][0][0, 2], cy=true.views[n][0][1, 2]) for i, n in enumerate(names)]
    cams[1] = CameraFrame(index=1, c2w=None, fx=500.0, fy=520.0, cx=329.5, cy=249.5)
    bundle = Bundle(task="solve", width=640, height=480, frame_count=3, cameras=cams)
    views = PinholeCameras.from_bundle(bundle, names).views
    assert sorted(views) == [names[0], names[2]]
    np.testing.assert_allclose(views[names[2]][1], true.views[names[2]][1])


def test_auto_chooses_between_a_colmap_model_and_pinhole_cameras(tmp_path):
    """On the same pool: correct unified cameras beat a COLMAP model with one frame turned by
    5 deg, and the correct COLMAP model (tried first) keeps a tie with correct unified cameras."""
    rec, verified, _ = colmap_scene(tmp_path)
    pools = {"sift": verified}
    true = _as_pinhole(rec)
    wrong = pycolmap.Reconstruction(rec)
    img = next(im for im in wrong.images.values() if im.name == sorted(true.views)[2])
    half = np.radians(5.0) / 2
    turn = pycolmap.Rigid3d(pycolmap.Rotation3d(np.array([np.sin(half), 0.0, 0.0, np.cos(half)])), np.zeros(3))
    wrong.frames[img.frame_id].rig_from_world = turn * wrong.frames[img.frame_id].rig_from_world

    assert consistency(true, pools)["sift"] == pytest.approx(1.0, abs=1e-9)
    chosen, scored = choose({"sift": wrong, "unified": true}, pools)
    assert chosen == "unified" and scored["sift"]["consistency"] < 0.9
    assert choose({"sift": rec, "unified": true}, pools)[0] == "sift"
    assert choose({"sift": None, "unified": true}, {})[0] == "unified"  # no pool: the one with cameras


def test_the_unified_margin_keeps_it_when_nearly_as_consistent(tmp_path):
    """The unified model's cameras are not fitted to the matches they are judged on, so they win
    when within UNIFIED_MARGIN + TIE of a colmap model's consistency, and lose beyond it."""
    from backend.engines.auto import TIE, UNIFIED_MARGIN

    rec, verified, _ = colmap_scene(tmp_path)
    pools = {"sift": verified}
    true = _as_pinhole(rec)
    name = sorted(true.views)[2]

    def with_frame_turned(degrees):
        views = dict(true.views)
        views[name] = (views[name][0], _turn(views[name][1], degrees))
        return PinholeCameras(views)

    # drop the pinhole score just below the model's by shrinking one frame's support
    scores = {d: consistency(with_frame_turned(d), pools)["sift"] for d in np.linspace(0.005, 0.3, 60)}
    near = next(d for d, v in scores.items() if 1.0 - (UNIFIED_MARGIN + TIE) < v < 1.0 - TIE)
    far = next(d for d, v in scores.items() if v < 1.0 - (UNIFIED_MARGIN + TIE) - 0.005)
    margins = {"unified": UNIFIED_MARGIN}
    assert choose({"sift": rec, "unified": with_frame_turned(near)}, pools)[0] == "sift"
    assert choose({"unified": with_frame_turned(near), "sift": rec}, pools, margins)[0] == "unified"
    assert choose({"unified": with_frame_turned(far), "sift": rec}, pools, margins)[0] == "sift"


def test_candidates_are_checked():
    assert _candidate_list("sift, unified") == ["sift", "unified"]
    with pytest.raises(EngineError, match="unknown candidate"):
        _candidate_list("sift,colmap")
    with pytest.raises(EngineError, match="at least one"):
        _candidate_list("")
    if ENGINES["unified"].unavailable_reason() is None:
        assert AutoOptions(candidates=["sift", "unified"]).candidates == ["sift", "unified"]
    with pytest.raises(ValueError, match="named twice"):
        AutoOptions(candidates=["unified", "unified"])
    with pytest.raises(ValueError):
        AutoOptions(candidates=["sift", "vggt"])


def test_auto_with_the_unified_model_on_a_rendered_clip(one_torch_thread):
    """End to end with the real unified model and SIFT on a rendered 8-frame orbit (128x128):
    both candidates place cameras, both are scored on SIFT's verified matches, the bundle is the
    chosen one's, recorded as auto's, and it is as accurate as the chosen candidate's own."""
    reason = ENGINES["unified"].unavailable_reason()
    if reason:
        pytest.skip(reason)
    metrics = pytest.importorskip("backend.geometry.metrics")
    clip, frames, gt, _ = textured_clip(frames=8, height=128, width=128)
    bundles, chosen = get_engine("auto").solve_all(frames, candidates="sift,unified", overlap=3, num_threads=1)
    assert set(bundles) == {"sift", "unified"} and bundles["unified"] is not None
    auto = bundles[chosen].scores["auto"]
    assert auto["chosen"] == chosen and set(auto["consistency"]) == {"sift", "unified"}
    info = bundles[chosen].source["auto"]["candidates"]
    assert info["unified"]["registered"] == 8 and info["unified"]["verified_matches"] == 0
    if bundles["sift"] is not None:
        assert info["sift"]["verified_matches"] > 0
        # the unified model's cameras explain SIFT's matches: a wrong solve would score near 0
        assert auto["consistency"]["unified"] > 0.3, auto
    assert bundles[chosen].engine == "auto" and {"unified/total", "sift/total", "total"} <= set(bundles[chosen].timings)
    m = metrics.pairwise_metrics(bundles[chosen].c2w_array(), gt)
    assert m["mAA@30"] >= 0.5, m


def test_eval_sets_auto_beside_its_candidates_and_the_oracle():
    """The eval's summaries: the per-clip better of colmap and unified by ground truth, and auto's
    choice beside its own candidates (a clip where auto failed scores 0 for every candidate)."""
    from backend.eval.v2c import auto_choices, oracle

    def rows(values):
        return {"rows": [{"metrics": {"mAA@30": v}} for v in values]}

    results = {"colmap": rows([0.9, 0.1, float("nan")]), "unified": rows([0.5, 0.7, 0.2])}
    best = oracle(results)
    assert best["mean"] == pytest.approx((0.9 + 0.7 + 0.2) / 3) and best["picked"] == {"colmap": 1, "unified": 2}
    assert oracle({"colmap": results["colmap"]}) is None

    auto = {"rows": [
        {"metrics": {"mAA@30": 0.9}, "auto": {"chosen": "sift", "candidates": {
            "sift": {"mAA@30": 0.9}, "unified": {"mAA@30": 0.5}}}},
        {"metrics": {"mAA@30": 0.1}, "auto": {"chosen": "sift", "candidates": {
            "sift": {"mAA@30": 0.1}, "unified": {"mAA@30": 0.7}}}},
        {"metrics": {"mAA@30": float("nan")}},  # every candidate failed
    ]}
    got = auto_choices({"auto": auto})
    assert got["kept"] == {"sift": 2, "none (failed)": 1}
    assert got["candidates"] == pytest.approx({"sift": 1.0 / 3, "unified": 1.2 / 3})
    assert got["oracle"] == pytest.approx(1.6 / 3) and got["auto"] == pytest.approx(1.0 / 3)
