"""Training losses of the unified model.

- :func:`flow_matching_loss`: L_gen, the flow-matching form of JOG3R eq. 1 (MSE between the
  predicted and the true velocity ``noise - clean``), on the frames that were noised.
- :func:`confidence_pointmap_loss`: L_rec, JOG3R eq. 2 / DUSt3R: per valid pixel
  ``C * || X/s - Xgt/sgt || - alpha * log C`` with s, sgt the average distance to the origin
  of the clip's valid points (prediction and ground truth normalised separately).
- :func:`disparity_loss`: scale/shift-invariant disparity (one least-squares scale and shift
  per clip, then L1), as Geo4D's disparity head is defined only up to those.
- :func:`ray_loss`: Plücker ray map L1 (directions as is; moments divided by the ground
  truth's point scale, since c x d grows with the scene).
- :func:`camera_centre_loss`: the camera centre each frame's predicted rays meet at (least
  squares, differentiable), against the true centre, in units of the clip's trajectory extent.
  Why: camera baselines are 1-30 % of the scene depth, so a wrong translation moves the point
  map and the ray moments by less than their typical error and those losses barely see it
  (the first runs learnt rotation to 4.6 deg and translation direction not at all); measured
  against the trajectory's own extent, a wrong direction costs O(1).
"""

from __future__ import annotations

import torch

from ..geometry.rays import rays_centre


def flow_matching_loss(pred: torch.Tensor, target: torch.Tensor, noised: torch.Tensor) -> torch.Tensor:
    """pred/target: (B, C, F, H, W); noised: (B, F) bool, frames that carry loss."""
    err = (pred.float() - target.float()).pow(2).mean(dim=(1, 3, 4))  # (B, F)
    w = noised.float()
    return (err * w).sum() / w.sum().clamp_min(1.0)


def _avg_dist(points: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean distance to the origin over valid pixels, per clip: (B,)."""
    dist = points.norm(dim=-1) * valid
    return dist.flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1)


def confidence_pointmap_loss(pred_pts, conf, gt_pts, valid, alpha: float = 0.2, return_parts: bool = False):
    """pred_pts/gt_pts: (B, F, H, W, 3); conf: (B, F, H, W) >= 1; valid: (B, F, H, W) bool."""
    valid = valid & torch.isfinite(gt_pts).all(-1)
    gt = torch.where(valid[..., None], gt_pts, torch.zeros_like(gt_pts))
    s = _avg_dist(pred_pts.float(), valid).clamp_min(1e-6)
    s_gt = _avg_dist(gt, valid).clamp_min(1e-6)
    reg = (pred_pts.float() / s[:, None, None, None, None] - gt / s_gt[:, None, None, None, None]).norm(dim=-1)
    per_pixel = conf * reg - alpha * torch.log(conf)
    n = valid.sum().clamp_min(1)
    loss = (per_pixel * valid).sum() / n
    if return_parts:
        return loss, {"reg": ((reg * valid).sum() / n).detach(), "scale_gt": s_gt.detach()}
    return loss


def align_scale_shift(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor):
    """Per clip least squares a, b minimising ||a*pred + b - gt|| over valid pixels; (B,), (B,)."""
    w = valid.flatten(1).float()
    p, g = pred.flatten(1).float() * w, torch.where(valid, gt, torch.zeros_like(gt)).flatten(1).float()
    n = w.sum(1).clamp_min(1)
    mp, mg = p.sum(1) / n, g.sum(1) / n
    cov = ((p - mp[:, None]) * (g - mg[:, None]) * w).sum(1)
    var = (((p - mp[:, None]) ** 2) * w).sum(1).clamp_min(1e-8)
    a = cov / var
    return a, mg - a * mp


def disparity_loss(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """pred/gt: (B, F, H, W) disparity; gt normalised by its clip median so clips weigh alike."""
    gt = torch.where(valid, gt, torch.zeros_like(gt))
    med = torch.stack([g[v].median() if v.any() else g.new_tensor(1.0) for g, v in zip(gt, valid)]).clamp_min(1e-6)
    gt = gt / med[:, None, None, None]
    a, b = align_scale_shift(pred, gt, valid)  # closed form, differentiable (MiDaS-style)
    aligned = a[:, None, None, None] * pred.float() + b[:, None, None, None]
    return ((aligned - gt).abs() * valid).sum() / valid.sum().clamp_min(1)


def ray_loss(pred: torch.Tensor, gt: torch.Tensor, scale_gt: torch.Tensor) -> torch.Tensor:
    """pred/gt: (B, F, H, W, 6) Plücker (d, c x d); the gt moment is divided by the clip's point
    scale so that the network predicts it in the same normalised units as the point map."""
    gt = gt.float().clone()
    gt[..., 3:] = gt[..., 3:] / scale_gt[:, None, None, None, None]
    return (pred.float() - gt).abs().mean()


def camera_centre_loss(pred_rays: torch.Tensor, c2w_gt: torch.Tensor, scale_gt: torch.Tensor,
                       min_extent: float = 0.05) -> torch.Tensor:
    """pred_rays: (B, F, H, W, 6) in the normalised units of the point map; c2w_gt: (B, F, 4, 4)
    relative to frame 1; scale_gt: (B,) the clip's point scale. Mean over frames of
    ``|| c_pred - c_gt / s_gt || / max(extent, min_extent)`` where extent is the farthest any
    true centre gets from frame 1's (normalised). Static clips (extent 0) learn to stay put."""
    c_pred = rays_centre(pred_rays.float()).float()  # (B, F, 3); solved in float64, differentiable
    c_gt = c2w_gt[..., :3, 3].float() / scale_gt[:, None, None]
    extent = (c_gt - c_gt[:, :1]).norm(dim=-1).amax(1).clamp_min(min_extent)
    return ((c_pred - c_gt).norm(dim=-1) / extent[:, None]).mean()
