"""Pipelines of the unified model: V2C engine, T2V(+C), keyframe conditioning, CLI, shipped weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from backend_tests.model_helpers import SMALL, fake_clip

from backend.bundle import read_bundle, write_bundle
from backend.models import DEFAULT_WEIGHTS, ParallaxSTDiT, load_model
from backend.runtime import Cancelled
from backend.pipelines.t2v import T2VPipeline, generate_bundle
from backend.pipelines.v2c import UnifiedEngine



pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL_MINILM = {**SMALL, "caption_channels": 384, "model_max_length": 8}


class FakeText:
    """Deterministic caption tokens (the real encoder has its own test in test_model.py)."""

    def encode(self, captions):
        g = torch.Generator().manual_seed(len(captions[0]))
        return torch.randn(len(captions), 6, SMALL["caption_channels"], generator=g), torch.ones(len(captions), 6, dtype=torch.bool)


def _small_model(seed=0):
    torch.manual_seed(seed)
    return ParallaxSTDiT(**SMALL).eval()


def test_unified_engine_solves_clip_into_valid_bundle(tmp_path):
    clip = fake_clip(b=1, f=6, h=32, w=48)  # 6 frames > window 4: two sliding windows
    stages = []
    eng = UnifiedEngine(model=_small_model(), device="cpu")
    b = eng.solve(clip["rgb"][0].numpy(), progress=lambda f, s: stages.append((f, s)), window=4, window_stride=2)
    assert b.frame_count == 6 and (b.width, b.height) == (48, 32)
    assert b.scores["windows"] == 2 and "network" in b.timings and "alignment" in b.timings
    c2w = b.c2w_array()
    assert np.isfinite(c2w).all() and np.allclose(c2w[0], np.eye(4))
    fr = [f for f, _ in stages]
    assert fr == sorted(fr) and fr[-1] == 1.0
    out = read_bundle(write_bundle(b, tmp_path / "b"))
    assert out.depth[0].depth.shape == (32, 48) and len(out.points) == 6
    with pytest.raises(Cancelled):
        eng.solve(clip["rgb"][0].numpy(), progress=lambda f, s: False if "window" in s else None)
    seen = []  # a cancel during the global alignment stops it within 25 iterations
    with pytest.raises(Cancelled):
        eng.solve(clip["rgb"][0].numpy(), window=4, window_stride=2,
                  progress=lambda f, s: seen.append(s) or (False if "alignment 26/" in s else None))
    assert seen[-1].endswith("alignment 26/300") and not any("alignment 51/" in x for x in seen)
    seen = []  # and during the photometric refinement (240 iterations: 3 blur levels x 80)
    with pytest.raises(Cancelled):
        eng.solve(clip["rgb"][0].numpy(), window=4, window_stride=2, align=False,
                  progress=lambda f, s: seen.append(s) or (False if "refinement 26/" in s else None))
    assert seen[-1].endswith("photometric refinement 26/240") and not any("refinement 51/" in x for x in seen)
    # frame selection is the engine contract's start / stride / max_frames (what `solve --stride`
    # and the service send), never the window stride: frames 1, 3, 5 -> one window of 3
    sel = eng.solve(clip["rgb"][0].numpy(), start=1, stride=2, max_frames=3, align=False)
    assert sel.frame_count == 3 and sel.scores["windows"] == 1
    assert np.array_equal(sel.frames[2], clip["rgb"][0, 5].numpy())


def test_t2v_keyframes_are_reproduced_and_t2vc_needs_no_extra_pass():
    model = _small_model(1)
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    pipe = T2VPipeline(model=model, device="cpu", text_encoder=FakeText())
    g = torch.Generator().manual_seed(3)
    first = torch.randint(0, 256, (16, 16, 3), dtype=torch.uint8, generator=g)
    last = torch.randint(0, 256, (16, 16, 3), dtype=torch.uint8, generator=g)
    res = pipe("a camera orbits a box", steps=4, keyframes={0: first, 3: last}, camera=True)
    assert torch.equal(res["video"][0], first) and torch.equal(res["video"][3], last)
    assert res["video"].shape == (4, 16, 16, 3)
    assert len(calls) == res["forwards"] == 4  # cameras came from the 4 denoising passes
    assert res["geometry"]["points"].shape == (4, 16, 16, 3)
    plain = pipe("a camera orbits a box", steps=4, camera=False)
    assert plain["geometry"] is None and plain["forwards"] == 4


def test_generate_bundle_has_cameras():
    pipe = T2VPipeline(model=_small_model(2), device="cpu", text_encoder=FakeText())
    b = generate_bundle(pipe, "a dolly shot of a sphere", steps=3)
    assert b.task == "generate" and b.frame_count == 4 and len(b.cameras) == 4
    assert np.isfinite(b.c2w_array()).all() and b.scores["forwards"] == 3


def test_cli_generate_end_to_end(tmp_path, monkeypatch):
    from backend.__main__ import main

    torch.manual_seed(0)
    ParallaxSTDiT(**SMALL_MINILM).save_pretrained(tmp_path / "m")
    rc = main(["generate", "a camera pans across a red box", "--out", str(tmp_path / "out"), "--frames", "3",
               "--steps", "2", "--seed", "1", "--model", str(tmp_path / "m"), "--device", "cpu"])
    assert rc == 0
    b = read_bundle(tmp_path / "out")
    assert b.frame_count == 3 and b.cameras is not None and b.source["prompt"] == "a camera pans across a red box"
    meta = json.loads((tmp_path / "out" / "bundle.json").read_text())
    assert "network" in meta["timings"]
    rc = main(["generate", "x", "--out", str(tmp_path / "o2"), "--frames", "99", "--model", str(tmp_path / "m"),
               "--device", "cpu"])
    assert rc == 2


def test_shipped_weights_load_offline_and_run(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    files = {p.name: p.stat().st_size for p in DEFAULT_WEIGHTS.iterdir()}
    assert "config.json" in files and sum(files.values()) <= 32 * 1024**2
    model = load_model()
    cfg = model.config
    assert cfg.sample_size == 64 and cfg.num_frames == 16
    x = torch.randn(1, 3, cfg.num_frames, 64, 64)
    with torch.no_grad():
        out = model(x, torch.tensor([5.0]), geometry=True)
    assert out.sample.shape == x.shape and torch.isfinite(out.sample).all()
    assert out.geometry["points"].shape == (1, 16, 64, 64, 3)
    assert all(torch.isfinite(v).all() for v in out.geometry.values())
