"""The unified engine on footage it must refuse, and on footage of any aspect ratio.

Intrinsics: the network is replaced by an oracle whose point maps lie exactly on the rays of
the true camera as the model's square view of the frame sees it, so the focal and principal
point the engine reports test the mapping model view <-> footage, not the network.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend_tests.model_helpers import SMALL

from backend.data.synth import render_batch
from backend.io_video import VideoError
from backend.models import ParallaxSTDiT
from backend.pipelines import v2c
from backend.pipelines.common import square_crop
from backend.pipelines.v2c import UnifiedEngine

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model():
    torch.manual_seed(0)
    return ParallaxSTDiT(**SMALL).eval()


class _NeverLoads(UnifiedEngine):
    @property
    def model(self):
        raise AssertionError("the model was loaded for input that should have been refused first")


@pytest.mark.parametrize("frames, words", [
    (np.zeros((8, 64, 64, 3), np.uint8), "no texture"),
    (np.repeat(np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8), 8, 0), "do not change"),
    (np.random.default_rng(1).integers(0, 256, (2, 1, 1, 3), dtype=np.uint8), "too small"),
    (np.random.default_rng(2).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8), "too few frames"),
])
def test_degenerate_clips_are_refused_before_the_model_loads(frames, words):
    with pytest.raises(VideoError, match=words):
        _NeverLoads(device="cpu").solve(frames)


def _oracle(clip, crop, S):
    """predict_window stand-in: X^{f,1} = c2w_f (d_f(u, v) K_view^-1 [u, v, 1]) at the model's
    S x S pixels, K_view the true K in the model's view; depth sampled at the nearest pixel."""
    K = clip.K[0, 0].double()
    s = crop.side / S
    fx, fy = K[0, 0] / s, K[1, 1] / s
    cx, cy = (K[0, 2] - crop.left + 0.5) / s - 0.5, (K[1, 2] - crop.top + 0.5) / s - 0.5
    v, u = torch.meshgrid(torch.arange(S, dtype=torch.float64), torch.arange(S, dtype=torch.float64), indexing="ij")
    rows = ((v + 0.5) * s - 0.5).round().long() + crop.top
    cols = ((u + 0.5) * s - 0.5).round().long() + crop.left
    depth = clip.depth[0][:, rows, cols].double()
    depth = torch.where(torch.isfinite(depth), depth, torch.full_like(depth, 20.0))
    cam = torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones_like(u)], -1) * depth[..., None]
    c2w = clip.c2w[0].double()
    points = (cam @ c2w[:, None, :3, :3].transpose(-1, -2) + c2w[:, None, None, :3, 3]).float()

    def predict(model, frames_small, t=5.0, seed=0, dtype=None):
        n = frames_small.shape[0]
        return {"points": points[:n], "conf": torch.full((n, S, S), 5.0), "rays": None}

    return predict


@pytest.mark.parametrize("height, width", [(64, 96), (96, 64), (64, 64)])
def test_intrinsics_are_right_on_landscape_portrait_and_square_footage(monkeypatch, height, width):
    f = 0.9 * max(height, width)
    clip = render_batch([11], frames=4, height=height, width=width,
                        intrinsics={"fx": f, "fy": f, "cx": (width - 1) / 2, "cy": (height - 1) / 2})
    model = _model()
    S = model.config.sample_size
    monkeypatch.setattr(v2c, "predict_window", _oracle(clip, square_crop(height, width), S))
    b = UnifiedEngine(model=model, device="cpu").solve(clip.rgb[0].numpy(), align=False, photometric=False)
    K = clip.K[0, 0].double()
    cam = b.cameras[0]
    assert (b.width, b.height) == (width, height)
    assert cam.fx == pytest.approx(float(K[0, 0]), rel=0.01) and cam.fy == pytest.approx(float(K[1, 1]), rel=0.01)
    assert cam.fx / cam.fy == pytest.approx(1.0, abs=1e-9)  # square pixels stay square
    assert cam.cx == pytest.approx(float(K[0, 2]), abs=0.5) and cam.cy == pytest.approx(float(K[1, 2]), abs=0.5)
    assert b.depth[0].depth.shape == (height, width)
    crop = square_crop(height, width)
    assert (b.depth[0].depth[:, :crop.left] == 0).all()  # outside the model's view: unknown, not invented
    assert b.scores["points_per_frame"] == [len(p.xyz) for p in b.points] and b.scores["frames_without_points"] == []
    assert b.source["frame_indices"] == [0, 1, 2, 3]
