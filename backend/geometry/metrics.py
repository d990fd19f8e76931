"""Evaluation metrics (DESIGN section 7). Inputs may be numpy arrays or torch tensors; outputs are
plain Python floats/ints.

- ``pairwise_metrics``: JOG3R / DUSt3R / PoseDiffusion protocol over all frame pairs i < j.
- ``ate_rpe``: MonST3R / Geo4D trajectory protocol (evo's ``ape``/``rpe`` after Sim(3) Umeyama).
- ``pair_pose_metrics``: InterPose relative-pose metrics.
- ``video_depth_metrics``: Abs Rel and delta < 1.25 after one scale (or scale and shift) per clip.

Accuracies are fractions in [0, 1] (papers print them as percentages).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .procrustes import umeyama
from .rotations import as_tensor, deg, relative_rotation_angle, rotation_angle

FAILED_DEG = 180.0  # error given to a pair involving an unregistered (NaN) frame
BASELINE_EPS = 1e-9  # true baselines at or below this (x the clip's largest, at least 1) have no direction


def _cpu(x) -> torch.Tensor:
    """Any array (numpy, list, torch on any device) -> float64 CPU tensor."""
    return as_tensor(x, device="cpu")


# ---------------------------------------------------------------------------------------------
# Angle errors


def rotation_errors_deg(R_pred, R_gt) -> torch.Tensor:
    """Geodesic angle (deg) between rotations (..., 3, 3): arccos((tr(R_gt R_pred^T) - 1) / 2)."""
    return deg(relative_rotation_angle(as_tensor(R_pred), as_tensor(R_gt)))


def translation_angle_errors_deg(t_pred, t_gt, sign_invariant: bool = True, eps: float = 1e-15) -> torch.Tensor:
    """Angle (deg) between translation directions (..., 3).

    ``sign_invariant`` (InterPose eq. 4, PoseDiffusion's "ambiguity"): arccos(|cos|), in [0, 90].
    A zero vector has no direction: its angle comes out as 90 deg, as in PoseDiffusion.
    """
    a, b = as_tensor(t_pred), as_tensor(t_gt)
    # atan2(|a x b|, a.b) keeps full precision at small angles, where arccos does not.
    cross = torch.linalg.cross(a, b).norm(dim=-1)
    dot = (a * b).sum(-1)
    if sign_invariant:
        dot = dot.abs()
    angle = deg(torch.atan2(cross, dot))
    degenerate = (a.norm(dim=-1) <= eps) | (b.norm(dim=-1) <= eps)
    return torch.where(degenerate, torch.full_like(angle, 90.0), angle)


def auc_at(r_err: np.ndarray, t_err: np.ndarray, max_threshold: int = 30) -> float:
    """mAA / AUC: mean over thresholds 1..max_threshold deg of the fraction of pairs with
    max(rot, transl) error below it (PoseDiffusion's histogram form, used by DUSt3R and JOG3R)."""
    max_errors = np.maximum(np.asarray(r_err, float), np.asarray(t_err, float))
    if max_errors.size == 0:
        return float("nan")
    hist, _ = np.histogram(max_errors, bins=np.arange(max_threshold + 1))
    return float(np.mean(np.cumsum(hist.astype(float) / max_errors.size)))


# ---------------------------------------------------------------------------------------------
# Pairwise (JOG3R / DUSt3R / PoseDiffusion)


def relative_poses_all_pairs(c2w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For all pairs i < j, the relative pose w2c_j @ c2w_i (camera i's frame -> camera j's frame).

    This is PoseDiffusion's ``closed_form_inverse(M_i) @ M_j`` on PyTorch3D's transposed
    world-to-view matrices, written in column-vector form. Returns (rel (P, 4, 4), i (P,), j (P,)).
    """
    n = c2w.shape[0]
    i, j = torch.triu_indices(n, n, offset=1, device=c2w.device)
    R, c = c2w[:, :3, :3], c2w[:, :3, 3]
    # w2c_j = [R_j^T | -R_j^T c_j];  w2c_j c2w_i = [R_j^T R_i | R_j^T (c_i - c_j)]
    Rj_t = R[j].transpose(-1, -2)
    rel = torch.zeros(i.shape[0], 4, 4, dtype=c2w.dtype, device=c2w.device)
    rel[:, :3, :3] = Rj_t @ R[i]
    rel[:, :3, 3] = (Rj_t @ (c[i] - c[j])[..., None])[..., 0]
    rel[:, 3, 3] = 1
    return rel, i, j


def pairwise_metrics(c2w_pred, c2w_gt, thresholds: tuple = (5,), auc_threshold: int = 30) -> dict:
    """Relative-pose errors over all frame pairs i < j of one sequence.

    c2w_pred, c2w_gt: (F, 4, 4), numpy or torch; a pred matrix with any NaN is an unregistered
    frame and every pair that involves it counts as a failure (both errors 180 deg).
    Rotation error: geodesic angle between relative rotations. Translation error: angle between
    relative translation directions, sign-invariant (PoseDiffusion ``ambiguity=True``).
    Pairs whose true camera centres coincide have no translation direction: they count in the
    rotation figures only (and in mAA through their rotation error).
    Returns "rot_err", "transl_err" (mean deg), "RRA@5", "RTA@5" (fraction of pairs < 5 deg),
    "mAA@30", "pairs" (number of pairs), "translation_pairs" (pairs with a true baseline),
    "registered" (frames with a pose).
    """
    pred, gt = _cpu(c2w_pred), _cpu(c2w_gt)
    if pred.shape != gt.shape or pred.shape[-2:] != (4, 4) or pred.dim() != 3:
        raise ValueError(f"expected two (F, 4, 4) arrays, got {tuple(pred.shape)} and {tuple(gt.shape)}")
    if not torch.isfinite(gt).all():
        raise ValueError("ground-truth poses must be finite")
    ok = torch.isfinite(pred).flatten(1).all(-1)
    pred = torch.where(ok[:, None, None], pred, torch.eye(4, dtype=pred.dtype))
    rel_p, i, j = relative_poses_all_pairs(pred)
    rel_g, _, _ = relative_poses_all_pairs(gt)
    r_err = rotation_errors_deg(rel_p[:, :3, :3], rel_g[:, :3, :3])
    t_err = translation_angle_errors_deg(rel_p[:, :3, 3], rel_g[:, :3, 3])
    failed = ~(ok[i] & ok[j])
    r_err = torch.where(failed, FAILED_DEG, r_err).numpy()
    t_err = torch.where(failed, FAILED_DEG, t_err).numpy()
    # A pair whose true cameras share one centre (a pan, a tilt, a static shot) has no translation
    # direction to recover: its translation error is undefined, not 90 deg. Such pairs are left out
    # of the translation statistics and judged on rotation alone in mAA (their max(rot, transl) is
    # the rotation error). Real-footage benchmarks (RealEstate10K, CO3D) never hold such pairs.
    baseline = rel_g[:, :3, 3].norm(dim=-1)
    scale = float(baseline.max()) if baseline.numel() else 0.0
    defined = (baseline > BASELINE_EPS * max(scale, 1.0)).numpy() | failed.numpy()
    t_def = t_err[defined]
    out = {
        "rot_err": float(r_err.mean()) if r_err.size else float("nan"),
        "transl_err": float(t_def.mean()) if t_def.size else float("nan"),
    }
    for th in thresholds:
        out[f"RRA@{th}"] = float((r_err < th).mean()) if r_err.size else float("nan")
        out[f"RTA@{th}"] = float((t_def < th).mean()) if t_def.size else float("nan")
    out[f"mAA@{auc_threshold}"] = auc_at(r_err, np.where(defined, t_err, 0.0), auc_threshold)
    out["pairs"] = int(r_err.size)
    out["translation_pairs"] = int(defined.sum())
    out["registered"] = int(ok.sum())
    return out


# ---------------------------------------------------------------------------------------------
# Trajectory (MonST3R / Geo4D: evo ape + rpe, Sim(3)-aligned, delta = 1 frame)


def align_trajectory_sim3(c2w_pred: torch.Tensor, c2w_gt: torch.Tensor, with_scale: bool = True) -> torch.Tensor:
    """Apply the Umeyama Sim(3) that best maps predicted camera centres onto ground truth
    (evo's ``align(correct_scale=True)``): positions -> s R p + t, rotations -> R R_i."""
    s, R, t = umeyama(c2w_pred[:, :3, 3], c2w_gt[:, :3, 3], with_scale=with_scale)
    out = c2w_pred.clone()
    out[:, :3, :3] = R @ c2w_pred[:, :3, :3]
    out[:, :3, 3] = s * c2w_pred[:, :3, 3] @ R.T + t
    return out


def ate_rpe(c2w_pred, c2w_gt, align: bool = True, correct_scale: bool = True) -> dict:
    """ATE (RMSE of camera positions), RPE_T (RMSE of relative translation error) and RPE_R
    (RMSE of relative rotation angle, deg) between consecutive frames, after aligning the
    predicted trajectory to ground truth with Sim(3) Umeyama on camera centres.

    Matches evo: ``ape(..., translation_part, align=True, correct_scale=True)`` and
    ``rpe(..., delta=1 frame, all_pairs=True)`` with translation_part / rotation_angle_deg.
    Inputs (F, 4, 4) c2w, numpy or torch, all finite.
    """
    pred, gt = _cpu(c2w_pred), _cpu(c2w_gt)
    if pred.shape != gt.shape or pred.dim() != 3:
        raise ValueError(f"expected two (F, 4, 4) arrays, got {tuple(pred.shape)} and {tuple(gt.shape)}")
    if not (torch.isfinite(pred).all() and torch.isfinite(gt).all()):
        raise ValueError("ate_rpe needs finite poses for every frame")
    if align:
        pred = align_trajectory_sim3(pred, gt, with_scale=correct_scale)
    ate = torch.sqrt(((pred[:, :3, 3] - gt[:, :3, 3]) ** 2).sum(-1).mean())

    def rel(T):  # T_i^-1 T_{i+1}
        Ri, Rj, ti, tj = T[:-1, :3, :3], T[1:, :3, :3], T[:-1, :3, 3], T[1:, :3, 3]
        Rt = Ri.transpose(-1, -2)
        return Rt @ Rj, (Rt @ (tj - ti)[..., None])[..., 0]

    Rp, tp = rel(pred)
    Rg, tg = rel(gt)
    # evo: E = rel_gt^-1 rel_pred
    E_R = Rg.transpose(-1, -2) @ Rp
    E_t = (Rg.transpose(-1, -2) @ (tp - tg)[..., None])[..., 0]
    rpe_t = torch.sqrt((E_t ** 2).sum(-1).mean()) if len(E_t) else torch.tensor(float("nan"))
    rpe_r = torch.sqrt((deg(rotation_angle(E_R)) ** 2).mean()) if len(E_R) else torch.tensor(float("nan"))
    return {"ATE": float(ate), "RPE_T": float(rpe_t), "RPE_R": float(rpe_r)}


# ---------------------------------------------------------------------------------------------
# Pair pose (InterPose section 4.4)


def pair_pose_metrics(R_pred, t_pred, R_gt, t_gt, thresholds: tuple = (5, 15, 30), auc_threshold: int = 30) -> dict:
    """Relative poses of image pairs: R (N, 3, 3), t (N, 3) (translation directions: scale-free).

    A prediction with NaNs (no pose) is a failure: 180 deg for both errors.
    Returns "MRE", "MTE" (mean deg), "R_acc@{5,15,30}", "t_acc@{5,15,30}" (fraction < threshold),
    "AUC@30" (mAA of max(rot, transl) error over 1..30 deg), "pairs".
    """
    Rp, tp, Rg, tg = (_cpu(x) for x in (R_pred, t_pred, R_gt, t_gt))
    Rp, Rg = Rp.reshape(-1, 3, 3), Rg.reshape(-1, 3, 3)
    tp, tg = tp.reshape(-1, 3), tg.reshape(-1, 3)
    ok = torch.isfinite(Rp).flatten(1).all(-1) & torch.isfinite(tp).all(-1)
    Rp = torch.where(ok[:, None, None], Rp, torch.eye(3, dtype=Rp.dtype))
    tp = torch.where(ok[:, None], tp, torch.ones_like(tp))
    r_err = torch.where(ok, rotation_errors_deg(Rp, Rg), FAILED_DEG).numpy()
    t_err = torch.where(ok, translation_angle_errors_deg(tp, tg), FAILED_DEG).numpy()
    out = {"MRE": float(r_err.mean()), "MTE": float(t_err.mean())}
    for th in thresholds:
        out[f"R_acc@{th}"] = float((r_err < th).mean())
    for th in thresholds:
        out[f"t_acc@{th}"] = float((t_err < th).mean())
    out[f"AUC@{auc_threshold}"] = auc_at(r_err, t_err, auc_threshold)
    out["pairs"] = int(r_err.size)
    return out


# ---------------------------------------------------------------------------------------------
# Video depth (Geo4D / MonST3R: one alignment for the whole clip)


def _weighted_median(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(values)
    v, w = values[order], weights[order]
    cw = torch.cumsum(w, 0)
    k = torch.searchsorted(cw, 0.5 * cw[-1])
    return v[k.clamp(max=len(v) - 1)]


def fit_scale_l1(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """argmin_s sum |s pred - gt| exactly: the pred-weighted median of gt / pred (pred > 0)."""
    return _weighted_median(gt / pred, pred.abs())


def fit_scale_shift_l1(pred: torch.Tensor, gt: torch.Tensor, n_iters: int = 60):
    """argmin_{s>0,b} sum |s pred + b - gt| (least absolute deviations).

    For a fixed s the best shift is median(gt - s pred), and the remaining cost is convex in s,
    so a golden-section search over log s finds the optimum (IRLS can stall at a wrong vertex).
    """
    def cost(s):
        b = (gt - s * pred).median()
        return (s * pred + b - gt).abs().sum(), b

    mp, mg = pred.abs().median(), gt.abs().median()
    centre = math.log(float(mg / mp)) if mp > 0 and mg > 0 else 0.0
    lo, hi = centre - 7.0, centre + 7.0  # scales within a factor of 1000 of the median ratio
    phi = (math.sqrt(5) - 1) / 2
    x1, x2 = hi - phi * (hi - lo), lo + phi * (hi - lo)
    f1, f2 = cost(math.exp(x1))[0], cost(math.exp(x2))[0]
    for _ in range(n_iters):
        if f1 <= f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - phi * (hi - lo)
            f1 = cost(math.exp(x1))[0]
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + phi * (hi - lo)
            f2 = cost(math.exp(x2))[0]
    s = math.exp((lo + hi) / 2)
    return torch.tensor(s, dtype=pred.dtype), cost(s)[1]


def video_depth_metrics(pred, gt, mask=None, align: str = "scale", max_depth: float | None = None) -> dict:
    """Abs Rel and delta < 1.25 of a clip's depth (F, H, W) (or any shape) against ground truth.

    One alignment for the whole clip, fitted in L1 (MonST3R's protocol: Weiszfeld scale, LAD
    scale and shift): ``align="scale"`` (exact L1 scale), ``"scale_shift"`` or ``"none"``.
    Valid pixels: mask (if given) and finite gt > 0 (and < max_depth if given) and finite pred.
    Returns "abs_rel", "delta1.25", "scale", "shift", "pixels".
    """
    p, g = _cpu(pred).reshape(-1), _cpu(gt).reshape(-1)
    if p.shape != g.shape:
        raise ValueError(f"pred and gt differ in size: {tuple(as_tensor(pred).shape)} vs {tuple(as_tensor(gt).shape)}")
    valid = torch.isfinite(g) & (g > 0) & torch.isfinite(p)
    if mask is not None:
        valid &= as_tensor(mask, dtype=torch.bool, device="cpu").reshape(-1)
    if max_depth is not None:
        valid &= g < max_depth
    p, g = p[valid], g[valid]
    if p.numel() == 0:
        raise ValueError("no valid pixels to evaluate")
    scale, shift = torch.tensor(1.0, dtype=p.dtype), torch.tensor(0.0, dtype=p.dtype)
    if align == "scale":
        pos = p > 0
        scale = fit_scale_l1(p[pos], g[pos])
    elif align == "scale_shift":
        scale, shift = fit_scale_shift_l1(p, g)
    elif align != "none":
        raise ValueError(f"align must be 'scale', 'scale_shift' or 'none', not {align!r}")
    a = scale * p + shift
    abs_rel = ((a - g).abs() / g).mean()
    ratio = torch.maximum(a / g, g / a.clamp_min(1e-12))
    ratio = torch.where(a > 0, ratio, torch.full_like(ratio, math.inf))  # non-positive depth: a miss
    delta = (ratio < 1.25).double().mean()
    return {"abs_rel": float(abs_rel), "delta1.25": float(delta), "scale": float(scale),
            "shift": float(shift), "pixels": int(p.numel())}
