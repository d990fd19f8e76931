"""Geo4D multi-modal alignment terms (section 3.3), as building blocks for the 4D pipeline.

- disparity: closed-form scale/shift fit of a predicted disparity map to the disparity implied by
  the global depth, and the L1 alignment loss (eq. 5);
- camera trajectory: per-window Sim(3) that maps a window's ray-map cameras onto the global
  trajectory (closed-form initialisation) and the alignment loss (eq. 8);
- trajectory smoothness between consecutive frames (eq. 9, after MonST3R);
- the window reliability test from the authors' code (disparity delta < 1.25 >= 0.3, RPE-rot <= 4 deg).
The 4D pipeline adds these, with its own weights (Geo4D: 1 L_pm + 2 L_disp + 0.005 L_traj +
0.015 L_smooth), to the group-wise point-map term of ``alignment``.
"""

from __future__ import annotations

import torch

from .metrics import ate_rpe
from .rotations import project_to_so3


def fit_disparity_scale_shift(pred_disp: torch.Tensor, target_disp: torch.Tensor, weights: torch.Tensor | None = None):
    """Weighted least squares (scale, shift) with scale * pred + shift ~ target.

    pred_disp, target_disp (..., H, W) (or (..., N)); weights same shape (0 = ignore). The leading
    dimensions are separate fits (e.g. one per window). Returns scale (...), shift (...).
    """
    p, t = pred_disp.flatten(-2).double(), target_disp.flatten(-2).double()
    w = torch.ones_like(p) if weights is None else weights.flatten(-2).double()
    sw = w.sum(-1).clamp_min(1e-300)
    mp, mt = (w * p).sum(-1) / sw, (w * t).sum(-1) / sw
    cov = (w * (p - mp[..., None]) * (t - mt[..., None])).sum(-1)
    var = (w * (p - mp[..., None]) ** 2).sum(-1).clamp_min(1e-300)
    scale = cov / var
    return scale.to(pred_disp.dtype), (mt - scale * mp).to(pred_disp.dtype)


def disparity_alignment_loss(global_depth: torch.Tensor, pred_disp: torch.Tensor, scale: torch.Tensor,
                             shift: torch.Tensor, weights: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """Eq. 5: mean w |1 / D_global - (scale * D_pred + shift)|; scale/shift broadcast per map.

    global_depth, pred_disp (..., H, W); scale, shift (...).
    """
    target = 1.0 / global_depth.clamp_min(eps)
    fit = scale[..., None, None] * pred_disp + shift[..., None, None]
    err = (target - fit).abs()
    if weights is not None:
        return (weights * err).sum() / weights.sum().clamp_min(1e-12)
    return err.mean()


def fit_trajectory_sim3(c2w_window: torch.Tensor, c2w_global: torch.Tensor):
    """Sim(3) (s, R, t) mapping a window's cameras onto the global ones: R R_wi ~ R_gi, s R c_wi + t ~ c_gi.

    c2w_window, c2w_global (..., W, 4, 4) (same frames). The rotation is the chordal mean of
    R_gi R_wi^T (well posed even when the window's centres are nearly collinear, as on a dolly);
    scale and translation then follow by least squares on the centres. Returns s (...), R (..., 3, 3), t (..., 3).
    """
    Rw, Rg = c2w_window[..., :3, :3], c2w_global[..., :3, :3]
    R = project_to_so3((Rg @ Rw.transpose(-1, -2)).sum(-3))
    cw = c2w_window[..., :3, 3] @ R.transpose(-1, -2)  # rotated window centres
    cg = c2w_global[..., :3, 3]
    mw, mg = cw.mean(-2, keepdim=True), cg.mean(-2, keepdim=True)
    s = ((cw - mw) * (cg - mg)).sum((-1, -2)) / ((cw - mw) ** 2).sum((-1, -2)).clamp_min(1e-300)
    t = (mg - s[..., None, None] * mw)[..., 0, :]
    return s, R, t


def trajectory_alignment_loss(c2w_global: torch.Tensor, c2w_windows: torch.Tensor, frames: torch.Tensor,
                              s: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Eq. 8: mean over windows g and their frames i of
    |R_g R_{g,i} - R_{f(g,i)}|_F + |s_g R_g c_{g,i} + t_g - c_{f(g,i)}|.

    c2w_global (F, 4, 4) (the optimised trajectory); c2w_windows (G, W, 4, 4) cameras from each
    window's ray maps; frames (G, W) their global frame indices; s (G,), R (G, 3, 3), t (G, 3).
    """
    glob = c2w_global[frames]  # (G, W, 4, 4)
    rot = R[:, None] @ c2w_windows[..., :3, :3]
    cen = s[:, None, None] * (c2w_windows[..., :3, 3] @ R.transpose(-1, -2)) + t[:, None]
    rot_err = (rot - glob[..., :3, :3]).flatten(-2).norm(dim=-1)
    cen_err = (cen - glob[..., :3, 3]).norm(dim=-1)
    return (rot_err + cen_err).mean()


def trajectory_smoothness_loss(c2w: torch.Tensor) -> torch.Tensor:
    """Eq. 9 (MonST3R): sum_t |R_t^T R_{t+1} - I|_F + |R_t^T (c_{t+1} - c_t)| over consecutive frames."""
    R, c = c2w[:, :3, :3], c2w[:, :3, 3]
    Rt = R[:-1].transpose(-1, -2)
    eye = torch.eye(3, dtype=c2w.dtype, device=c2w.device)
    rot = (Rt @ R[1:] - eye).flatten(-2).norm(dim=-1)
    trans = (Rt @ (c[1:] - c[:-1])[..., None])[..., 0].norm(dim=-1)
    return (rot + trans).sum()


def window_is_reliable(disp_delta: float, c2w_window, c2w_global, min_delta: float = 0.3,
                       max_rpe_rot: float = 4.0) -> bool:
    """The authors' filter: keep a window whose disparity fit has delta<1.25 >= min_delta and
    whose ray-map trajectory agrees with the global one (RPE-rot <= max_rpe_rot deg)."""
    return disp_delta >= min_delta and ate_rpe(c2w_window, c2w_global)["RPE_R"] <= max_rpe_rot
