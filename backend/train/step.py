"""One multitask training step: sample a task per clip, noise, forward, losses.

Per clip of a batch (JOG3R sec. 3.2, flow-matching form):
- *geometry* rows (probability ``p_geometry``): every frame noised to sigma in [0, 0.01]
  (t in [0, 10] of 1000), empty prompt; L_rec + disparity + ray losses on block-b features,
  plus L_gen at that small noise level;
- *generation* rows: sigma uniform over (0, 1], the clip's caption (dropped to the null caption
  with probability ``caption_dropout`` for CFG); with probability ``p_interpolate`` the first
  and last frames are given clean (frame_mask) and carry no loss.
Flags for JOG3R's ablations: ``gen_loss=False`` (L_rec only), frozen backbone (trainer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..models.autoencoder import frames_to_tensor
from .losses import camera_centre_loss, confidence_pointmap_loss, disparity_loss, flow_matching_loss, ray_loss


@dataclass
class TaskOptions:
    p_geometry: float = 0.5
    p_interpolate: float = 0.25
    caption_dropout: float = 0.1
    geometry_sigma_max: float = 0.01
    gen_loss: bool = True
    rec_weight: float = 1.0  # lambda of JOG3R (1)
    disparity_weight: float = 0.5
    ray_weight: float = 0.5
    camera_weight: float = 0.5
    alpha: float = 0.2


@dataclass
class StepInputs:
    x0: torch.Tensor  # (B, C, F, H, W) clean clip in model space
    noise: torch.Tensor  # like x0
    sigma: torch.Tensor  # (B, F) per-frame noise level (0 on clean frames)
    frame_mask: torch.Tensor  # (B, F) bool, given clean
    geo_rows: torch.Tensor  # (B,) bool
    drop_caption: torch.Tensor  # (B,) bool
    text: tuple  # (hidden (B, L, C), mask (B, L)) or (None, None)
    points: torch.Tensor  # (B, F, H, W, 3) ground-truth X^{f,1}
    valid: torch.Tensor  # (B, F, H, W) bool
    disparity: torch.Tensor  # (B, F, H, W)
    rays: torch.Tensor  # (B, F, H, W, 6)
    c2w: torch.Tensor  # (B, F, 4, 4) relative to frame 1
    extra: dict = field(default_factory=dict)


def sample_inputs(rgb, depth, points, rays, c2w, text, opts: TaskOptions, generator=None) -> StepInputs:
    """Draw tasks, noise levels and noise for a rendered batch (tensors already on device).

    rgb (B,F,H,W,3) uint8; depth (B,F,H,W) (+inf = sky); points (B,F,H,W,3); rays (B,F,H,W,6);
    c2w (B,F,4,4) relative to frame 1; text = (hidden, mask) of the captions.
    """
    b, f = rgb.shape[:2]
    dev = rgb.device
    x0 = frames_to_tensor(rgb)
    rand = lambda *s: torch.rand(*s, generator=generator, device=dev)  # noqa: E731
    geo = rand(b) < (opts.p_geometry if opts.gen_loss else 1.0)
    if opts.gen_loss and b >= 2:  # every batch trains both tasks (keeps DDP graphs and logs alike)
        geo[0], geo[1] = True, False
    sig_gen = rand(b).clamp_min(1e-3)
    sig_geo = rand(b) * opts.geometry_sigma_max
    sigma = torch.where(geo, sig_geo, sig_gen)[:, None].expand(b, f).clone()
    interp = (~geo) & (rand(b) < opts.p_interpolate)
    frame_mask = torch.zeros(b, f, dtype=torch.bool, device=dev)
    frame_mask[interp, 0] = True
    frame_mask[interp, -1] = True
    sigma = torch.where(frame_mask, torch.zeros_like(sigma), sigma)
    drop = geo | (rand(b) < opts.caption_dropout)
    valid = torch.isfinite(depth) & (depth > 0)
    disp = torch.where(valid, 1.0 / depth.clamp_min(1e-6), torch.zeros_like(depth))
    noise = torch.randn(x0.shape, generator=generator, device=dev)
    return StepInputs(x0, noise, sigma, frame_mask, geo, drop, text, points, valid, disp, rays, c2w)


def compute_losses(model, inp: StepInputs, opts: TaskOptions):
    """Returns (total loss, dict of detached parts)."""
    s = inp.sigma[:, None, :, None, None].to(inp.x0.dtype)
    xt = (1 - s) * inp.x0 + s * inp.noise
    xt = torch.where(inp.frame_mask[:, None, :, None, None], inp.x0, xt)
    rows = inp.geo_rows.nonzero().flatten()
    want_geo = rows.numel() > 0
    out = model(xt, inp.sigma * 1000.0, inp.text[0], inp.text[1], frame_mask=inp.frame_mask,
                drop_caption=inp.drop_caption, geometry=want_geo, geometry_rows=rows,
                geometry_only=not opts.gen_loss)
    logs = {}
    total = inp.x0.new_zeros(())
    if opts.gen_loss:
        l_gen = flow_matching_loss(out.sample, inp.noise - inp.x0, ~inp.frame_mask)
        total = total + l_gen
        logs["gen"] = l_gen.detach()
    if want_geo:
        g = out.geometry
        valid = inp.valid[rows]
        l_rec, parts = confidence_pointmap_loss(g["points"], g["conf"], inp.points[rows], valid,
                                                alpha=opts.alpha, return_parts=True)
        l_disp = disparity_loss(g["disparity"], inp.disparity[rows], valid)
        l_ray = ray_loss(g["rays"], inp.rays[rows], parts["scale_gt"])
        l_cam = camera_centre_loss(g["rays"], inp.c2w[rows], parts["scale_gt"])
        total = total + opts.rec_weight * (l_rec + opts.disparity_weight * l_disp + opts.ray_weight * l_ray
                                           + opts.camera_weight * l_cam)
        logs.update(rec=l_rec.detach(), reg=parts["reg"], disp=l_disp.detach(), ray=l_ray.detach(),
                    cam=l_cam.detach())
    else:
        nan = total.new_tensor(float("nan"))
        logs.update(rec=nan, reg=nan, disp=nan, ray=nan, cam=nan)
    logs["total"] = total.detach()
    return total, logs
