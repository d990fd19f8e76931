"""Training: losses against analytic answers, and a random small model overfits a batch."""

from __future__ import annotations

import pytest
import torch

from backend_tests.model_helpers import SMALL, fake_clip  # noqa: E402

from backend.models import ParallaxSTDiT  # noqa: E402
from backend.train.losses import (camera_centre_loss, confidence_pointmap_loss, disparity_loss,  # noqa: E402
                                  ray_loss)
from backend.train.step import TaskOptions, compute_losses, sample_inputs  # noqa: E402



pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_pointmap_loss_is_scale_invariant_with_analytic_value():
    clip = fake_clip()
    gt, valid = clip["points"], torch.ones(clip["depth"].shape, dtype=torch.bool)
    conf = torch.full(valid.shape, 2.0)
    loss = confidence_pointmap_loss(gt * 7.3, conf, gt, valid, alpha=0.2)
    # perfect up to scale: only the -alpha log C term is left
    assert abs(loss.item() - (-0.2 * torch.log(torch.tensor(2.0)).item())) < 1e-5
    off = gt.clone()
    off[..., 2] += 0.5
    assert confidence_pointmap_loss(off, conf, gt, valid).item() > loss.item() + 0.05
    # invalid (sky) pixels carry no loss even when infinite
    gt_sky = gt.clone()
    gt_sky[:, :, 0] = float("inf")
    valid_sky = valid.clone()
    valid_sky[:, :, 0] = False
    assert torch.isfinite(confidence_pointmap_loss(gt * 2, conf, gt_sky, valid_sky))


def test_disparity_loss_scale_shift_invariant():
    clip = fake_clip()
    disp = 1 / clip["depth"]
    disp = disp + torch.linspace(0, 0.1, 16)[None, None, None]  # some structure
    valid = torch.ones(disp.shape, dtype=torch.bool)
    assert disparity_loss(3 * disp + 0.7, disp, valid).item() < 1e-5
    assert disparity_loss(torch.rand(disp.shape), disp, valid).item() > 1e-3


def test_ray_loss_zero_on_ground_truth():
    clip = fake_clip()
    s = torch.tensor([2.0, 2.0])
    pred = clip["rays"].clone()
    pred[..., 3:] /= 2.0
    assert ray_loss(pred, clip["rays"], s).item() < 1e-6


def test_camera_centre_loss_in_trajectory_units():
    clip = fake_clip()  # truck along x: centres 0, 0.2, 0.4, 0.6, extent 0.6
    s = torch.tensor([2.0, 2.0])
    pred = clip["rays"].clone()
    pred[..., 3:] /= 2.0  # moments in normalised units
    assert camera_centre_loss(pred, clip["c2w"], s).item() < 1e-5
    # every centre moved by 0.03 (normalised) along y: 0.03 / (0.6 / 2) = 0.1 of the extent
    shifted = clip["c2w"].clone()
    shifted[:, :, 1, 3] += 0.06
    d = pred[..., :3]
    c = shifted[:, :, None, None, :3, 3].expand(d.shape) / 2.0
    wrong = torch.cat([d, torch.cross(c, d, dim=-1)], -1)
    assert abs(camera_centre_loss(wrong, clip["c2w"], s).item() - 0.1) < 1e-4


def test_small_model_overfits_fixed_batch():
    torch.manual_seed(0)
    model = ParallaxSTDiT(**SMALL)
    clip = fake_clip(b=4)
    g = torch.Generator().manual_seed(0)
    text = (torch.randn(4, 6, SMALL["caption_channels"], generator=g), torch.ones(4, 6, dtype=torch.bool))
    opts = TaskOptions()
    inp = sample_inputs(clip["rgb"], clip["depth"], clip["points"], clip["rays"], clip["c2w"], text, opts, g)
    inp.geo_rows[:] = torch.tensor([True, False, True, False])  # both tasks in the batch
    inp.frame_mask[1, [0, -1]] = True  # and one interpolation row
    inp.sigma[1, [0, -1]] = 0
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(200):
        loss, logs = compute_losses(model, inp, opts)
        first = first or {k: v.item() for k, v in logs.items()}
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = {k: v.item() for k, v in logs.items()}
    assert last["gen"] < first["gen"] / 5, (first, last)
    assert last["reg"] < first["reg"] / 5, (first, last)
    assert last["total"] < first["total"] / 5, (first, last)
    # the ray map and the centre its moments meet at pull on the same outputs and converge last
    assert last["ray"] < first["ray"] / 3, (first, last)
    assert last["cam"] < first["cam"] / 3, (first, last)
