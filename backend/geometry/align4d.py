"""Geo4D's multi-modal alignment of overlapping windows (section 3.3, eq. 4-10; Algorithm 1).

Input: G windows of W frames each, as the unified model predicts them: per frame f of window g
the point map X^{f,1} in the window's first camera, its confidence, a disparity map (defined up
to one scale and shift per window) and a Plücker ray map (the window's cameras, up to a
similarity). Output: per frame a camera (c2w, focal), depth and world points, in frame 0's
camera.

Two stages, both Adam through ``alignment.global_align`` (so ``optim.run_adam``, a CUDA graph on
a GPU):

1. point maps only (Geo4D eq. 4: the group-wise DUSt3R loss, one similarity per window),
   initialised by registering the windows on their shared frames (Umeyama), focal from each
   window's first map and PnP: the paper's "first stage" that disentangles the point maps into
   cameras and depth;
2. from there, jointly: point maps + 2 x disparity (eq. 5; scale and shift per window) +
   0.005 x ray trajectory (eq. 8; a similarity per window maps its ray cameras onto the global
   trajectory) + 0.015 x smoothness (eq. 9, averaged over the frame steps rather than summed:
   see ``_multimodal_terms``), the authors' weights and 500 iterations, lr 0.03 to 1e-3. Between the stages each window is tested as the authors do: its disparity, fitted to
   the stage-1 depth, must have delta<1.25 >= 0.3 and its ray cameras an RPE-rot <= 4 deg against
   the stage-1 trajectory (and, beyond the authors' test, a positive scale onto it); a window
   that fails is dropped (all its terms), unless a frame it holds or the window graph's
   connectivity needs it, when only its disparity and ray terms go.

Stage 2 restarts Adam at lr 0.03: its first steps throw the loss up (0.014 -> 0.19 on held-out
clip 1000000000) but it ends below stage 1's; a 50-iteration warm-up, or a 0.01 peak, gave the
same figures there (Abs Rel 0.1246 / 0.1243, ATE 0.0190 both), so the schedule stays the
authors'. The focal starts from the windows' first maps (a 60 degree fallback when implausible).

``ModalityWeights(0, 0, 0)`` (``POINTMAP_ONLY``) runs the same two stages on the point maps alone:
Geo4D's single-modality ablation, at the same iteration count.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Optional

import torch

from ..runtime import Progress
from .alignment import AlignmentLoss, AlignmentResult, Initialisation, Intrinsics, global_align
from .focal import estimate_focal
from .geo4d import (disparity_alignment_loss, fit_disparity_scale_shift, fit_trajectory_sim3,
                    trajectory_alignment_loss, trajectory_smoothness_loss)
from .metrics import ate_rpe
from .optim import AdamSettings
from .rays import rays_to_camera
from .rotations import matrix_to_quat, quat_to_matrix


@dataclass(frozen=True)
class ModalityWeights:
    """Weights of Geo4D's terms beside the point-map term (weight 1): eq. 10 with the authors'
    values. All zero: the point-map-only alignment."""

    disparity: float = 2.0
    trajectory: float = 0.005
    smoothness: float = 0.015

    @property
    def multimodal(self) -> bool:
        return self.disparity > 0 or self.trajectory > 0 or self.smoothness > 0


POINTMAP_ONLY = ModalityWeights(0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Reliability:
    """The authors' window filter (thresholds from their released code)."""

    min_disparity_delta: float = 0.3
    max_rpe_rot: float = 4.0


# Geo4D: 500 Adam iterations, lr 0.03 -> 1e-3 for the joint stage. The point-map stage before it
# only has to disentangle cameras from depth well enough for the reliability test and the
# modality initialisations.
JOINT = AdamSettings(n_iters=500, lr=0.03, lr_min=1e-3, schedule="cosine")
FIRST = AdamSettings(n_iters=150, lr=0.03, lr_min=1e-3, schedule="cosine")
# JOG3R's focal smoothness (L_fl) keeps per-frame focals from wandering where the windows
# disagree; the geometry core's tests measured weight 1 as the useful value.
POINTMAP_LOSS = AlignmentLoss(w_focal_smooth=1.0)


@dataclass
class Align4DResult:
    """Per-frame cameras, depth and world points (world = frame 0's camera) and what the
    alignment found about each window."""

    c2w: torch.Tensor  # (F, 4, 4) float64
    focal: torch.Tensor  # (F,)
    principal_point: torch.Tensor  # (F, 2)
    depth: torch.Tensor  # (F, H, W)
    points: torch.Tensor  # (F, H, W, 3)
    confidence: torch.Tensor  # (F, H, W)
    windows: list  # per window: {"index", "disparity_delta", "rpe_rot", "reliable", "used"}
    dropped: list  # windows left out of the joint stage
    residual: float  # confidence-weighted mean point-map distance, in units of the median depth
    losses: list = field(default_factory=list)  # both stages, per iteration
    timings: dict = field(default_factory=dict)
    cuda_graph: bool = False

    @property
    def K(self) -> torch.Tensor:
        from .cameras import intrinsics_matrix

        pp = self.principal_point
        return intrinsics_matrix(self.focal, self.focal, pp[:, 0], pp[:, 1])


def align_windows(points: torch.Tensor, conf: torch.Tensor, frames: torch.Tensor, *,
                  disparity: Optional[torch.Tensor] = None, rays: Optional[torch.Tensor] = None,
                  n_frames: Optional[int] = None, weights: ModalityWeights = ModalityWeights(),
                  intrinsics: Intrinsics = Intrinsics(), reliability: Reliability = Reliability(),
                  first: AdamSettings = FIRST, joint: AdamSettings = JOINT, progress=None, device=None,
                  dtype=torch.float32) -> Align4DResult:
    """Fuse G windows into one 4D reconstruction (module docstring).

    points (G, W, H, W, 3): X^{f,1} per window; conf (G, W, H, W) (DUSt3R-style, >= 1);
    frames (G, W) long: each view's frame in 0..F-1 (every frame in some window);
    disparity (G, W, H, W) and rays (G, W, H, W, 6): the other two modalities (None: that term
    is off). progress: spans both stages ("point maps" then "joint"); a cancel raises
    ``runtime.Cancelled`` within ``optim.REPORT_EVERY`` iterations.
    """
    progress = Progress.of(progress)
    G, W, H, Wd = points.shape[:4]
    frames = frames.long().cpu()
    F = int(frames.max()) + 1 if n_frames is None else int(n_frames)
    device = torch.device(device) if device is not None else points.device
    frame, group = frames.reshape(-1), torch.arange(G).repeat_interleave(W)
    P, C = points.reshape(G * W, H, Wd, 3), conf.reshape(G * W, H, Wd)
    share = first.n_iters / max(first.n_iters + joint.n_iters, 1)
    t0 = time.perf_counter()
    if intrinsics.focal is None:
        intrinsics = replace(intrinsics, focal=_initial_focal(P[::W], C[::W], H, Wd))
    stage1 = global_align(P, C, frame, group, n_frames=F, intrinsics=intrinsics, loss=POINTMAP_LOSS,
                          init=Initialisation(order="sequential"), adam=first, device=device, dtype=dtype,
                          progress=progress.span(0.0, share, "point maps"))
    state = _normalised(stage1)
    w64 = C.double().clamp_min(1.0).log().cpu()  # DUSt3R's log-confidence weights, as the point-map term
    use_disp = weights.disparity > 0 and disparity is not None
    use_rays = weights.trajectory > 0 and rays is not None
    reports, ray_c2w, ray_sim = _window_reports(stage1, state, frames, w64, disparity if use_disp else None,
                                                rays if use_rays else None, reliability)
    keep = list(range(G))
    if weights.multimodal:
        keep = _droppable(reports, frames, F)
    for r in reports:
        r["used"] = r["index"] in keep
    kept_views = torch.cat([torch.arange(g * W, (g + 1) * W) for g in keep])
    modal = [g for g in keep if reports[g]["reliable"]]  # windows whose modalities join the loss

    extra, extra_params = None, ()
    if weights.multimodal:
        extra, extra_params = _multimodal_terms(state, frames, w64, disparity if use_disp else None,
                                                (ray_c2w, ray_sim) if use_rays else None, modal, weights, device,
                                                dtype)
    initial = {**state, "sims": state["sims"][keep], "scale": state["scale"][keep]}
    sub_group = torch.arange(len(keep)).repeat_interleave(W)
    stage2 = global_align(P[kept_views], C[kept_views], frame[kept_views], sub_group, n_frames=F,
                          intrinsics=intrinsics, loss=AlignmentLoss(w_focal_smooth=POINTMAP_LOSS.w_focal_smooth,
                                                                    extra=extra, extra_params=extra_params),
                          adam=joint, device=device, dtype=dtype, initial=initial,
                          cuda_graph=device.type == "cuda",
                          progress=progress.span(share, 1.0, "joint" if weights.multimodal else "point maps"))
    residual = _pointmap_residual(stage2, P[kept_views], w64[kept_views], frame[kept_views], sub_group)
    return Align4DResult(
        c2w=stage2.c2w, focal=stage2.focal, principal_point=stage2.principal_point, depth=stage2.depth,
        points=stage2.points, confidence=stage2.confidence, windows=reports,
        dropped=[g for g in range(G) if g not in keep], residual=residual,
        losses=stage1.losses + stage2.losses,
        timings={"point maps": sum(stage1.timings.values()), "joint": sum(stage2.timings.values()),
                 "total": time.perf_counter() - t0},
        cuda_graph=stage2.cuda_graph)


# A 60 degree field of view: the focal an implausible estimate falls back to (V2C's fallback).
FALLBACK_FOV_DEG = 60.0


def _initial_focal(first_maps: torch.Tensor, first_conf: torch.Tensor, H: int, W: int) -> float:
    """Geo4D's focal initialisation: from each window's first map X^{1,1} (least squares +
    Weiszfeld), the median over windows; a field of view outside 5-150 degrees (an untrained
    model's maps gave 0.016 px on 16 px frames, and the alignment then diverged) falls back to
    60 degrees."""
    est = estimate_focal(first_maps.double(), weights=first_conf.double().clamp_min(1.0).log())
    est = est[torch.isfinite(est) & (est > 0)]
    focal = float(est.median()) if est.numel() else float("nan")
    size = max(H, W)
    fov = 2 * math.degrees(math.atan(size / (2 * focal))) if math.isfinite(focal) and focal > 0 else float("nan")
    if not 5.0 <= fov <= 150.0:
        focal = size / (2 * math.tan(math.radians(FALLBACK_FOV_DEG / 2)))
    return focal


# ---------------------------------------------------------------------------------------------
# Between the stages


def _normalised(res: AlignmentResult) -> dict:
    """Stage 1's solution as ``global_align(initial=...)`` takes it, scaled so the median depth is
    exactly 1: global_align then keeps these units, so the terms built here see its world."""
    d = res.depth
    unit = float(d[d > 0].median()) if (d > 0).any() else 1.0
    c2w = res.c2w.clone()
    c2w[:, :3, 3] /= unit
    sims = res.group_similarity.clone()
    sims[:, :3, :] /= unit
    scale = torch.linalg.det(sims[:, :3, :3]).abs() ** (1 / 3)
    return {"c2w": c2w, "depth": d / unit, "focal": res.focal.clone(), "sims": sims, "scale": scale}


def _window_reports(stage1: AlignmentResult, state: dict, frames, w64, disparity, rays, rel: Reliability):
    """Geo4D's per-window test against the point-map solution. Also returns each window's ray
    cameras and the similarity (s, R, t) fitted from them onto the normalised trajectory."""
    G, W = frames.shape
    ray_c2w, ray_sim = None, None
    if rays is not None:
        try:
            ray_c2w, _ = rays_to_camera(rays.double().cpu(), w64.reshape(G, W, *w64.shape[1:]).clamp_min(1e-6))
        except RuntimeError:  # degenerate ray maps (all rays parallel): no camera to take from them
            ray_c2w = torch.full((G, W, 4, 4), float("nan"), dtype=torch.float64)
        ray_sim = fit_trajectory_sim3(ray_c2w.nan_to_num(), state["c2w"][frames])
    reports = []
    for g in range(G):
        fr = frames[g]
        rep = {"index": g, "disparity_delta": None, "rpe_rot": None}
        ok = True
        if disparity is not None:
            delta = _disparity_delta(disparity[g].double().cpu(), state["depth"][fr], w64[g * W:(g + 1) * W])
            rep["disparity_delta"] = delta
            ok &= delta >= rel.min_disparity_delta
        if ray_c2w is not None:
            finite = bool(torch.isfinite(ray_c2w[g]).all())
            rpe = ate_rpe(ray_c2w[g], stage1.c2w[fr])["RPE_R"] if finite else float("inf")
            rep["rpe_rot"] = float(rpe) if finite else None
            # Beyond the authors' test: the ray centres must not run against the trajectory (a
            # negative fitted scale; measured on held-out clip 1000000001, it made eq. 8 NaN).
            ok &= rpe <= rel.max_rpe_rot and bool(ray_sim[0][g] > 0)
        rep["reliable"] = bool(ok)
        reports.append(rep)
    return reports, ray_c2w, ray_sim


def _disparity_delta(pred: torch.Tensor, depth: torch.Tensor, w: torch.Tensor) -> float:
    """delta<1.25 of a window's disparity after one least-squares scale and shift onto the
    disparity of the given depth, over pixels with weight."""
    target = 1.0 / depth.clamp_min(1e-6)
    s, b = fit_disparity_scale_shift(pred.reshape(1, -1, 1), target.reshape(1, -1, 1), w.reshape(1, -1, 1))
    fit = s * pred + b
    valid = w > 0
    ratio = torch.maximum(fit / target, target / fit.clamp_min(1e-12))
    good = (fit > 0) & (ratio < 1.25)
    return float(good[valid].double().mean()) if valid.any() else 0.0


def _droppable(reports: list, frames: torch.Tensor, n_frames: int) -> list:
    """Windows kept: all reliable ones, plus unreliable ones the frames' coverage or the window
    graph's connectivity cannot do without (worst tested first)."""
    keep = set(range(len(reports)))
    bad = [r for r in reports if not r["reliable"]]
    bad.sort(key=lambda r: (r["disparity_delta"] if r["disparity_delta"] is not None else 1.0))
    for r in bad:
        trial = keep - {r["index"]}
        if trial and _covers(trial, frames, n_frames):
            keep = trial
    return sorted(keep)


def _covers(windows: set, frames: torch.Tensor, n_frames: int) -> bool:
    """Every frame is in one of ``windows`` and they form one connected graph (sharing frames)."""
    sets = [set(frames[g].tolist()) for g in sorted(windows)]
    if set().union(*sets) != set(range(n_frames)):
        return False
    reached, todo = set(sets[0]), sets[1:]
    while todo:
        joined = [s for s in todo if s & reached]
        if not joined:
            return False
        todo = [s for s in todo if not s & reached]  # before reached grows: the rest wait a round
        for s in joined:
            reached |= s
    return True


# ---------------------------------------------------------------------------------------------
# The joint stage's extra terms (eq. 5, 8, 9)


def _multimodal_terms(state, frames, w64, disparity, rays, modal, weights, device, dtype):
    """``AlignmentLoss.extra`` and its leaves: per reliable window a disparity scale/shift and a
    trajectory similarity, initialised in closed form against stage 1 (Geo4D Algorithm 1)."""
    G, W = frames.shape
    opts = dict(device=device, dtype=dtype)
    params, terms = [], []
    if disparity is not None and modal and weights.disparity > 0:
        idx = torch.tensor(modal)
        fr = frames[idx]  # (M, W)
        pred = disparity[idx].double().cpu()  # (M, W, H, Wd)
        wv = w64.reshape(G, W, *w64.shape[1:])[idx]
        target = 1.0 / state["depth"][fr].clamp_min(1e-6)
        s, b = fit_disparity_scale_shift(pred.flatten(1, 2), target.flatten(1, 2), wv.flatten(1, 2))
        scale = s.to(**opts).clone().requires_grad_(True)
        shift = b.to(**opts).clone().requires_grad_(True)
        pred_d, wv_d = pred.to(**opts), (wv / wv.mean().clamp_min(1e-12)).to(**opts)
        fr_flat = fr.reshape(-1).to(device)
        params += [scale, shift]

        def disparity_term(st):
            # index_select, not st["depth"][fr]: its backward is one index_add, where advanced
            # indexing's (index_put with accumulate) is several times slower on the CPU
            depth = st["depth"].index_select(0, fr_flat).reshape(pred_d.shape)  # (M, W, H, Wd)
            return weights.disparity * disparity_alignment_loss(depth, pred_d, scale[:, None].expand(fr.shape),
                                                                shift[:, None].expand(fr.shape), wv_d)

        terms.append(disparity_term)
    if rays is not None and modal and weights.trajectory > 0:
        idx = torch.tensor(modal)
        fr = frames[idx]
        cams = rays[0][idx]
        s, R, t = (x[idx] for x in rays[1])  # fitted in _window_reports; s > 0 on reliable windows
        log_s = s.log().to(**opts).clone().requires_grad_(True)
        quat = matrix_to_quat(R).to(**opts).clone().requires_grad_(True)
        trans = t.to(**opts).clone().requires_grad_(True)
        cams_d, fr_d = cams.to(**opts), fr.to(device)
        params += [log_s, quat, trans]

        def trajectory_term(st):
            return weights.trajectory * trajectory_alignment_loss(st["c2w"], cams_d, fr_d, log_s.exp(),
                                                                  quat_to_matrix(quat), trans)

        terms.append(trajectory_term)
    if weights.smoothness > 0:
        # Eq. 9 sums over the F - 1 steps; here it is their mean, as every other term here is a
        # mean (over pixels, over window frames). Measured on held-out clips, 48 frames: as a sum,
        # 0.015 x 47 steps shrank the camera travel (a dolly's by 11 %, ATE 0.081 against 0.062
        # for point maps alone; the term by itself halved the travel) and made the weight depend
        # on the chunk's length.
        steps = max(frames.max().item(), 1)
        terms.append(lambda st: (weights.smoothness / steps) * trajectory_smoothness_loss(st["c2w"]))
    if not terms:
        return None, ()

    def extra(st):
        total = terms[0](st)
        for term in terms[1:]:
            total = total + term(st)
        return total

    return extra, tuple(params)


def _pointmap_residual(res: AlignmentResult, P, w64, frame, group) -> float:
    """Eq. 4's data term after the fit: confidence-weighted mean |X_f - sim_g(P_v)| over the
    used views, in units of the median depth (so it reads the same at any scene scale)."""
    sims = res.group_similarity
    aligned = P.double() @ sims[group, :3, :3].transpose(-1, -2)[:, None] + sims[group, None, None, :3, 3]
    dist = (res.points[frame] - aligned).norm(dim=-1)
    w = torch.where(torch.isfinite(dist), w64, torch.zeros_like(w64))
    d = res.depth[res.depth > 0]
    med = float(d.median()) if d.numel() else 1.0
    return float((w * dist.nan_to_num()).sum() / w.sum().clamp_min(1e-12)) / med
