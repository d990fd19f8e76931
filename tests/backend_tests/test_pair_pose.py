"""Pose from an image pair (InterPose): the wide-baseline pair split, the selection, the pipeline
with fake and tiny roles, its bundle, cancel, bad inputs, the CLI and the service task's params."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backend_tests.model_helpers import SMALL

from backend.bundle import read_bundle
from backend.data.pairs import COVIS_RANGE, ROTATION_RANGE, covisibility, inbetween_video, wide_pairs
from backend.data.splits import is_heldout
from backend.geometry.interpose import agreement, frame_subsets, medoid, reliability, select_video
from backend.io_video import VideoError
from backend.pipelines.pair_pose import GENERATED_DIR, PairPosePipeline, candidate_plan, result_bundles, write_result
from backend.pipelines.pair_roles import ClipCameras, UnifiedInterpolator, UnifiedPoseEstimator
from backend.runtime import Cancelled

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rot(axis: str, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def pose(R, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def textured(h=64, w=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------------------
# The pair split


@pytest.fixture(scope="module")
def pairs():
    return list(wide_pairs(3, 48, 64))


def _covis_by_loops(da, db, K, a_to_b, tol=0.05):
    """Independent co-visibility: pixel by pixel, plain numpy (the module's is vectorised torch)."""
    H, W = da.shape
    seen = total = 0
    Kinv = np.linalg.inv(K)
    for v in range(H):
        for u in range(W):
            if not np.isfinite(da[v, u]):
                continue
            total += 1
            X = a_to_b @ np.append(da[v, u] * (Kinv @ [u, v, 1.0]), 1.0)
            if X[2] <= 1e-6:
                continue
            p = K @ X[:3]
            uu, vv = int(round(p[0] / p[2])), int(round(p[1] / p[2]))
            if 0 <= uu < W and 0 <= vv < H and np.isfinite(db[vv, uu]) and abs(db[vv, uu] - X[2]) <= tol * X[2]:
                seen += 1
    return seen / total


def test_pair_split_ranges_measured_from_ground_truth(pairs):
    assert len(pairs) == 3
    for p in pairs:
        assert is_heldout(p.seed) and p.rgb.shape == (2, 48, 64, 3)
        assert np.allclose(p.c2w[0], np.eye(4))
        R = p.c2w[1, :3, :3]
        angle = math.degrees(math.acos(np.clip((np.trace(R) - 1) / 2, -1, 1)))
        assert ROTATION_RANGE[0] <= angle <= ROTATION_RANGE[1] and abs(angle - p.rotation_deg) < 1e-6
        a_to_b = np.linalg.inv(p.c2w[1])
        ab = _covis_by_loops(p.depth[0], p.depth[1], p.K, a_to_b)
        ba = _covis_by_loops(p.depth[1], p.depth[0], p.K, np.linalg.inv(a_to_b))
        assert abs(ab - p.covis_ab) < 1e-9 and abs(ba - p.covis_ba) < 1e-9
        assert COVIS_RANGE[0] <= (ab + ba) / 2 <= COVIS_RANGE[1]
        assert np.allclose(p.relative_pose @ p.c2w[1], np.eye(4))
    again = next(wide_pairs(1, 48, 64))  # fixed: the same seed gives the same pair
    assert again.seed == pairs[0].seed and np.array_equal(again.rgb, pairs[0].rgb)


def test_covisibility_of_a_wall_seen_half_by_each_camera():
    H = W = 40
    K = torch.tensor([[40.0, 0, (W - 1) / 2], [0, 40.0, (H - 1) / 2], [0, 0, 1]], dtype=torch.float64)
    depth = torch.full((H, W), 2.0, dtype=torch.float64)
    # B is 1 m to the right: a 2 m wall spans 2 * 2 * (20 / 40) = 2 m of width, half of it shared
    a_to_b = torch.eye(4, dtype=torch.float64)
    a_to_b[0, 3] = -1.0
    assert abs(covisibility(depth, depth, K, a_to_b) - 0.5) < 0.03
    depth_b = depth.clone()
    depth_b[:, : W // 2] = 1.0  # an occluder in front of the shared half: nothing is seen
    assert covisibility(depth, depth_b, K, a_to_b) < 0.03


def test_inbetween_video_runs_from_a_to_b(pairs):
    video, c2w = inbetween_video(pairs[0], 5)
    assert video.shape == (5, 48, 64, 3) and np.allclose(c2w[0], np.eye(4))
    assert np.allclose(c2w[-1], pairs[0].c2w[1], atol=1e-6)
    assert np.abs(video[0].astype(int) - pairs[0].rgb[0]).mean() < 1 and np.abs(video[-1].astype(int) -
                                                                                pairs[0].rgb[1]).mean() < 1


def test_synth_cli_writes_pairs_as_two_frame_ground_truth_bundles(tmp_path):
    from backend.__main__ import main

    assert main(["synth", "--pairs", "2", "--out", str(tmp_path), "--height", "32", "--width", "48"]) == 0
    folders = sorted(tmp_path.glob("pair_*"))
    assert len(folders) == 2
    b = read_bundle(folders[0])
    assert b.task == "ground_truth" and b.frame_count == 2 and (b.width, b.height) == (48, 32)
    assert np.allclose(b.c2w_array()[0], np.eye(4)) and b.source["pair"] is True
    gt = np.load(folders[0] / "gt" / "ground_truth.npz")
    assert np.allclose(gt["c2w"], b.c2w_array()) and gt["depth"].shape == (2, 32, 48)
    assert (folders[0] / "gt" / "pair.json").is_file()


# ----------------------------------------------------------------------------------------
# Selection


def test_selection_picks_the_self_consistent_video():
    truth = pose(rot("y", 60), [1.0, 0, 0.3])
    rng = np.random.default_rng(0)

    def noisy(T, deg):
        R = rot("x", rng.normal(0, deg)) @ rot("y", rng.normal(0, deg)) @ T[:3, :3]
        return pose(R, T[:3, 3] + rng.normal(0, deg / 60, 3))

    consistent = np.stack([noisy(truth, 1.0) for _ in range(11)])
    scattered = np.stack([noisy(truth, 40.0) for _ in range(11)])
    confident_wrong = np.stack([noisy(pose(rot("y", 180), [0, 0, 1.0]), 1.0) for _ in range(11)])
    pair_only = noisy(truth, 8.0)  # D_total's anchor: the wrong-but-tight video is far from it
    sel = select_video([scattered, confident_wrong, consistent], pair_only)
    assert sel.video == 2 and sel.d_med[2] < sel.d_med[0]
    assert sel.d_total[1] > sel.d_total[2]  # tight but far from the pair-only pose: eq. 9 rejects it
    # failed subsets (NaN) take no part; a video without any pose is never chosen
    broken = consistent.copy()
    broken[:5] = np.nan
    i, d = medoid(broken)
    assert i >= 5 and math.isfinite(d)
    sel = select_video([np.full((3, 4, 4), np.nan), broken], None)
    assert sel.video == 1 and math.isinf(sel.d_total[0])
    assert agreement(np.stack([truth, truth])) == 0.0 and math.isnan(agreement(truth[None]))
    assert reliability(5.0, 3.0) == "high" and reliability(5.0, 80.0) == "medium"
    assert reliability(300.0, 1.0) == "low" and reliability(None, None) == "low"


def test_frame_subsets_are_distinct_while_possible():
    subsets = frame_subsets(8, k=5, n_random=10, seed=3)
    assert len({tuple(s) for s in subsets}) == len(subsets) == 11
    assert all(s[0] == 0 and s[-1] == 7 for s in subsets)
    few = frame_subsets(4, k=3, n_random=10)  # only 2 distinct subsets exist, one of them uniform
    assert len({tuple(s) for s in few}) == len(few) == 2


# ----------------------------------------------------------------------------------------
# The pipeline with fake roles


class FakeGenerator:
    """Videos whose content says how consistent the estimator will be on them."""

    name, model_id, max_frames = "fake", "fake-gen", 8

    def __init__(self, good=(2,)):
        self.good, self.calls = set(good), []

    def interpolate(self, first, last, frames, seed=0, prompt="", progress=None):
        self.calls.append((seed, prompt))
        for i in range(3):
            if progress is not None:
                progress(i / 3, f"step {i + 1}/3")
        video = np.repeat(first[None], frames, axis=0).copy()
        video[-1] = last
        video[1:-1, 0, 0, 0] = 255 if seed in self.good else 0  # the mark the estimator reads
        return video


class FakeEstimator:
    """B's pose near ``truth`` on good videos and on the pair; scattered on bad videos."""

    name, model_id = "fake", "fake-est"

    def __init__(self, truth, pair_noise=10.0):
        self.truth, self.pair_noise, self.calls = truth, pair_noise, []
        self.rng = np.random.default_rng(1)

    def estimate(self, clips, K_first=None, K_last=None, progress=None, last_only=False):
        self.calls.append(len(clips))
        out = []
        for clip in clips:
            if len(clip) == 2:
                noise = self.pair_noise
            else:
                noise = 1.0 if clip[1, 0, 0, 0] == 255 else 45.0
            R = rot("x", self.rng.normal(0, noise)) @ rot("z", self.rng.normal(0, noise)) @ self.truth[:3, :3].T
            c2w = np.stack([np.eye(4)] * len(clip))
            c2w[-1] = np.linalg.inv(pose(R.T, self.truth[:3, 3] + self.rng.normal(0, noise / 60, 3)))
            f = 0.8 * clip.shape[2]
            out.append(ClipCameras(c2w, np.array([[f, 0, (clip.shape[2] - 1) / 2], [0, f, (clip.shape[1] - 1) / 2],
                                                  [0, 0, 1]])))
        return out


TRUTH = pose(rot("y", 50), [0.6, 0.0, 0.8])


def test_pipeline_selects_the_consistent_video_and_writes_a_valid_bundle(tmp_path):
    gen, est = FakeGenerator(good=(2,)), FakeEstimator(TRUTH)
    a, b = textured(48, 64, 0), textured(48, 64, 1)
    K = [60.0, 61.0, 31.5, 23.5]
    labels = []
    res = PairPosePipeline(gen, est, videos=4, frames=8, k=5, random_subsets=10)(
        a, b, K=K, progress=lambda f, s: labels.append((f, s)))
    assert res.method == "interpose" and res.selected == 2
    assert [c["order"] for c in res.scores["candidates"]] == ["AB", "BA", "AB", "BA"]
    assert gen.calls == [(c["seed"], c["prompt"]) for c in candidate_plan(4)]
    assert est.calls == [1, 11, 11, 11, 11, 1]  # pair, one call per video (all subsets), the selected video
    s = res.scores
    assert s["d_med"] < min(c["d_med"] for c in s["candidates"] if c["index"] != 2)
    assert s["reliability"] in ("high", "medium", "low") and "D_total" in s["reliability_rule"]
    fr = [f for f, _ in labels]
    assert fr == sorted(fr) and fr[-1] == 1.0 and any("video 3/4: generating" in t for _, t in labels)
    path = write_result(res, tmp_path / "out")
    main, gen_b = read_bundle(path), read_bundle(path / GENERATED_DIR)
    assert main.task == "pair_pose" and main.frame_count == 2 and (main.width, main.height) == (64, 48)
    assert np.array_equal(np.asarray(__import__("PIL.Image").Image.open(main.frames[1])), b)
    c2w = main.c2w_array()
    assert np.allclose(c2w[0], np.eye(4)) and abs(np.linalg.norm(c2w[1, :3, 3]) - 1) < 1e-9
    assert np.allclose(main.cameras[1].K, [[60, 0, 31.5], [0, 61, 23.5], [0, 0, 1]])  # given K kept exactly
    err = math.degrees(math.acos(np.clip((np.trace(np.linalg.inv(c2w[1])[:3, :3] @ TRUTH[:3, :3].T) - 1) / 2, -1, 1)))
    assert err < 5
    assert main.source["generated"]["bundle"] == GENERATED_DIR and main.scores["selected"] == 2
    assert gen_b.task == "generate" and gen_b.source["generated"] is True and gen_b.frame_count == 8
    assert main.source["roles"]["generator"]["name"] == "fake"
    with pytest.raises(FileExistsError, match="earlier pair-pose result"):  # never over a folder it can't replace
        write_result(res, path)
    assert read_bundle(path / GENERATED_DIR).frame_count == 8


def test_pair_only_and_identical_and_different_sizes():
    est = FakeEstimator(TRUTH)
    a = textured(48, 64, 0)
    only = PairPosePipeline(None, est, videos=0)(a, textured(48, 64, 1))
    assert only.method == "pair-only" and only.scores["reliability"] == "low" and est.calls == [1]
    same = PairPosePipeline(None, est, videos=0)(a, a.copy())
    assert same.method == "identical" and np.allclose(same.T, np.eye(4)) and "same picture" in same.notes[0]
    assert est.calls == [1]  # nothing estimated for the same picture twice
    main, gen = result_bundles(same)
    assert gen is None and np.allclose(main.c2w_array(), np.eye(4)[None])
    # different sizes: both answered on their centred squares at the smaller side, K follows
    big = textured(80, 120, 2)
    K = np.stack([np.array([[60.0, 0, 31.5], [0, 60, 23.5], [0, 0, 1]]), np.array([[100.0, 0, 59.5], [0, 100, 39.5],
                                                                                    [0, 0, 1]])])
    res = PairPosePipeline(None, est, videos=0)(a, big, K=K)
    main, _ = result_bundles(res)
    assert (main.width, main.height) == (48, 48) and res.views.side == 48
    assert np.allclose(main.cameras[0].K, [[60, 0, 23.5], [0, 60, 23.5], [0, 0, 1]])  # A cropped 8 px each side
    f = 100 * 48 / 80  # B cropped to 80 x 80 at (20, 0), then 80 -> 48 px
    assert np.allclose(main.cameras[1].K, [[f, 0, 23.5], [0, f, 23.5], [0, 0, 1]])
    assert any("different sizes" in n for n in main.source["notes"])
    with pytest.raises(ValueError, match="different sizes"):
        PairPosePipeline(None, est, videos=0)(a, big, K=[60, 60, 31.5, 23.5])


def test_bad_inputs_are_refused_with_a_message(tmp_path):
    est = FakeEstimator(TRUTH)
    pipe = PairPosePipeline(None, est, videos=0)
    a = textured(48, 64)
    with pytest.raises(VideoError, match="image B is missing"):
        pipe(a, None)
    with pytest.raises(VideoError, match="too small"):
        pipe(a, np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(VideoError, match="no texture"):
        pipe(a, np.full((48, 64, 3), 90, np.uint8))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(VideoError, match="not an image file"):
        pipe(a, text)
    fake_png = tmp_path / "b.png"
    fake_png.write_bytes(b"not a png at all")
    with pytest.raises(VideoError, match="not a readable image"):
        pipe(a, fake_png)
    with pytest.raises(VideoError, match="no such file"):
        pipe(a, tmp_path / "missing.jpg")
    with pytest.raises(VideoError, match="is a folder"):
        pipe(a, tmp_path)
    with pytest.raises(ValueError, match="intrinsics"):
        pipe(a, textured(48, 64, 1), K=[0, 50, 10, 10])
    with pytest.raises(ValueError, match="need a generator"):
        PairPosePipeline(None, est, videos=2)
    with pytest.raises(ValueError, match="k"):
        PairPosePipeline(FakeGenerator(), est, videos=1, k=2)
    assert est.calls == []  # nothing reached the estimator


def test_cancel_stops_between_videos_and_in_generation():
    est = FakeEstimator(TRUTH)
    with pytest.raises(Cancelled):
        PairPosePipeline(FakeGenerator(), est, videos=4, frames=8)(
            textured(), textured(seed=1), progress=lambda f, s: False if "video 2/4: generating: step 2" in s else None)
    assert est.calls == [1, 11]  # the pair and video 1 only: video 2 stopped while generating


# ----------------------------------------------------------------------------------------
# The unified roles on a tiny model


class FakeText:
    def encode(self, captions):
        g = torch.Generator().manual_seed(len(captions[0]))
        return (torch.randn(len(captions), 6, SMALL["caption_channels"], generator=g),
                torch.ones(len(captions), 6, dtype=torch.bool))


@pytest.fixture(scope="module")
def tiny():
    from backend.models import ParallaxSTDiT
    from backend.pipelines.t2v import T2VPipeline

    torch.manual_seed(0)
    return T2VPipeline(model=ParallaxSTDiT(**SMALL).eval(), device="cpu", text_encoder=FakeText())


def _scene_maps(K: torch.Tensor, c2w: torch.Tensor, S: int) -> dict:
    """Exact point maps X^{f,1} of a textured plane 3 m ahead, seen by cameras c2w (F, 4, 4)."""
    from backend.geometry.cameras import pixel_grid, unproject

    uv = pixel_grid(S, S, dtype=torch.float64).reshape(-1, 2)
    pts = []
    for T in c2w:  # ray-plane z = 3 in frame 1's camera
        d = unproject(uv, torch.ones(len(uv), dtype=torch.float64), K) @ T[:3, :3].T
        s = (3.0 - T[2, 3]) / d[:, 2]
        pts.append((T[:3, 3] + s[:, None] * d).reshape(S, S, 3))
    F = len(c2w)
    return {"points": torch.stack(pts).float()[None].expand(1, F, S, S, 3), "conf": torch.full((1, F, S, S), 5.0)}


def test_unified_estimator_batches_subsets_and_recovers_the_pose(tiny, monkeypatch):
    S = SMALL["sample_size"]
    K = torch.tensor([[14.0, 0, (S - 1) / 2], [0, 14.0, (S - 1) / 2], [0, 0, 1]], dtype=torch.float64)
    c2w = torch.eye(4, dtype=torch.float64).repeat(4, 1, 1)
    for f in range(4):
        c2w[f, :3, :3] = torch.as_tensor(rot("y", 3.0 * f))
        c2w[f, 0, 3] = 0.1 * f
    maps = _scene_maps(K, c2w, S)
    est = UnifiedPoseEstimator(share=tiny, batch=16)
    calls = []

    def forward(model, clips):
        calls.append(len(clips))
        return {k: v.expand(len(clips), *v.shape[1:]).clone() for k, v in maps.items()}

    monkeypatch.setattr(est, "_forward", forward)
    clips = [np.zeros((4, 32, 32, 3), np.uint8)] * 11
    K32 = (K.numpy() * 2)
    K32[:2, 2] = 15.5
    cams = est.estimate(clips, K32, K32)
    assert calls == [11] and len(cams) == 11  # all 11 subsets in one forward pass
    assert np.allclose(cams[0].last, c2w[3].numpy(), atol=1e-3)
    assert np.allclose(cams[0].K, K32)
    free = est.estimate(clips[:1])[0]  # focal estimated from frame 1's point map
    assert abs(free.K[0, 0] - K32[0, 0]) < 0.5 and np.allclose(free.last[:3, :3], c2w[3, :3, :3].numpy(), atol=1e-3)


def test_unified_interpolator_keeps_both_images_and_cancels(tiny):
    gen = UnifiedInterpolator(pipe=tiny, steps=3)
    a, b = textured(16, 16, 3), textured(16, 16, 4)
    video = gen.interpolate(a, b, 4, seed=1, prompt="the camera orbits left")
    assert video.shape == (4, 16, 16, 3) and np.array_equal(video[0], a) and np.array_equal(video[-1], b)
    seen = []
    with pytest.raises(Cancelled):
        gen.interpolate(a, b, 4, progress=lambda f, s: seen.append(s) or (False if "denoising 2/" in s else None))
    assert not any("denoising 3/" in s for s in seen)


def test_pipeline_runs_on_the_tiny_unified_roles(tiny, tmp_path, monkeypatch):
    """The unified roles end to end: the tiny model generates the videos for real; its geometry
    pass is replaced by exact point maps (random weights place nothing), so the estimator's
    cameras, the selection and the bundle run on real numbers."""
    S = SMALL["sample_size"]
    K = torch.tensor([[14.0, 0, (S - 1) / 2], [0, 14.0, (S - 1) / 2], [0, 0, 1]], dtype=torch.float64)
    est = UnifiedPoseEstimator(share=tiny)

    def forward(model, clips):
        k = clips.shape[1]
        c2w = torch.eye(4, dtype=torch.float64).repeat(k, 1, 1)
        for f in range(k):
            c2w[f, :3, :3] = torch.as_tensor(rot("y", 20.0 * f / (k - 1)))
            c2w[f, 0, 3] = 0.5 * f / (k - 1)
        m = _scene_maps(K, c2w, S)
        return {key: v.expand(len(clips), *v.shape[1:]).clone() for key, v in m.items()}

    monkeypatch.setattr(est, "_forward", forward)
    pipe = PairPosePipeline(UnifiedInterpolator(pipe=tiny, steps=2), est, videos=2, frames=4, k=3, random_subsets=2)
    res = pipe(textured(32, 40, 5), textured(32, 40, 6))
    assert res.method == "interpose" and res.scores["rotation_deg"] == pytest.approx(20.0, abs=0.5)
    assert res.generated_c2w.shape == (4, 4, 4) and abs(np.linalg.norm(res.generated_c2w[-1, :3, 3]) - 1) < 1e-9
    path = write_result(res, tmp_path / "tiny")
    main, gen = read_bundle(path), read_bundle(path / GENERATED_DIR)
    assert main.task == "pair_pose" and main.source["roles"]["generator"]["name"] == "unified"
    assert gen.frame_count == 4 and (gen.width, gen.height) == (S, S)
    assert abs(main.cameras[0].fx - 14.0 * 32 / S) < 0.2  # the estimated focal, in A's pixels


def test_colmap_estimator_role_solves_textured_clips_and_says_nan_otherwise():
    from backend.data.splits import heldout_seeds
    from backend.data.synth import render_batch
    from backend.eval.pair_pose import pose_errors
    from backend.pipelines.pair_roles import ColmapPoseEstimator

    b = render_batch(heldout_seeds(1, start=1), frames=16, height=160, width=160, dynamic=False, motion="dolly+pan")
    c2w, K = b.c2w[0].double().numpy(), b.K[0, 0].double().numpy()
    flat = np.full((3, 64, 64, 3), 100, np.uint8)
    # one SIFT/matching thread: with all threads one combined test run drew a different model
    cams = ColmapPoseEstimator(num_threads=1).estimate([b.rgb[0].numpy()[[0, 4, 8, 12, 15]], flat], K, K)
    r, t = pose_errors(np.linalg.inv(cams[0].last), np.linalg.inv(np.linalg.inv(c2w[0]) @ c2w[15]))
    assert r < 5 and t < 30, (r, t)  # measured 2.2 and 14.6 deg
    assert np.isnan(cams[1].c2w).all()  # a flat clip: no pose, never an invented one


# ----------------------------------------------------------------------------------------
# CLI and service task


def test_cli_refuses_bad_input_before_loading_a_model(tmp_path, capsys):
    from backend.__main__ import main

    a = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(textured()).save(a)
    assert main(["pair-pose", str(a), "--out", str(tmp_path / "o")]) == 2
    assert "needs two images" in capsys.readouterr().err
    assert main(["pair-pose", str(a), str(tmp_path / "nope.png"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["pair-pose", str(a), str(a), "--out", str(tmp_path / "o"), "--intrinsics", "1,2,3"]) == 2
    assert "FX,FY,CX,CY" in capsys.readouterr().err


def test_task_is_registered_with_typed_ranged_params():
    from pydantic import ValidationError

    from backend.server.tasks import default_registry
    from backend.server.tasks.pair_pose import PairPoseParams

    task = default_registry().get("pair_pose")
    assert task is not None and task.min_inputs == task.max_inputs == 2 and task.input_kinds == ("image",)
    schema = task.describe()["params_schema"]["properties"]
    assert schema["videos"]["minimum"] == 0 and schema["frames"]["maximum"] >= 3
    ok = PairPoseParams.model_validate({"videos": 0, "intrinsics": [500, 500.5, 320, 240]})
    assert ok.videos == 0 and ok.intrinsics[0] == 500
    for bad, words in [({"videos": -1}, "videos"), ({"videos": 33}, "videos"), ({"k": 2}, "k"),
                       ({"frames": 8, "k": 9}, "cannot exceed"), ({"intrinsics": [0, 1, 2, 3]}, "positive"),
                       ({"intrinsics": [1, 2, 3]}, "intrinsics"), ({"generator": "wan"}, "generator"),
                       ({"estimator": "dust3r"}, "estimator"), ({"videos": "4"}, "videos"), ({"extra": 1}, "extra"),
                       ({"steps": 0}, "steps"), ({"seed": -1}, "seed")]:
        with pytest.raises(ValidationError, match=words):
            PairPoseParams.model_validate(bad)
