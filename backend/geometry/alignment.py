"""Global alignment of point maps, DUSt3R style, over any graph of pairs or windows.

A network predicts, for each *group* g of frames (a JOG3R pair (1, f), a DUSt3R pair (i, j), a
Geo4D window), one point map per frame of the group, all expressed in the camera of the group's
reference frame (its first view). These are the *views*: view v shows frame ``frame[v]`` in the
coordinates of group ``group[v]``.

Unknowns:
- per frame f: depth map D_f (as log-depth), camera-to-world pose (quaternion + centre), focal
  (f = exp(theta / 20) as in DUSt3R; one shared focal optional), fixed principal point;
- per group g: a similarity (scale s_g, rotation R_g, translation t_g) to the world.

Loss (DUSt3R eq. 5 with JOG3R's temporal terms, appendix A eq. 3-4):
    mean_v mean_i w_vi | X_f(i) - (s_g R_g P_vi + t_g) |          (unsquared distance)
  + w_focal_smooth  * sum_f (l_f - l_{f+1})^2                          (L_fl)
  + w_transl_smooth * sum_f |c_f - c_{f+1}|^2 + |v_f - v_{f+1}|^2      (L_tranl, v_f = c_f - c_{f+1})
with X_f = c2w_f(D_f K_f^-1 [u, v, 1]) the world points of frame f, w_vi = log(confidence) (masked),
l_f = focal_f / max(H, W) (unit-free) and c_f camera centres. The gauge is fixed by normalising the
group scales to a fixed geometric mean; the world is scaled so the median initial depth is 1,
which keeps the temporal weights independent of the predictions' units.

Initialisation: groups are registered one by one (Prim's maximum spanning tree over group
confidence, or in order) with weighted Umeyama on the frames they share with groups already
placed; focal from each group's reference map (least squares + Weiszfeld); pose of a group's
reference frame from its similarity, of other frames by PnP-RANSAC; depth from the placed points.

Every iteration is a handful of batched tensor operations over all views (``AlignmentProblem``:
residuals in each view's frame camera, one batched matmul; ~100 ops forward + backward + fused
Adam): no Python loop over edges. Adam runs in ``optim.run_adam``: on CUDA the whole step is
captured once as a CUDA graph and replayed, one launch per iteration (the loop is launch-bound at
point-map sizes like 64x64).

This module holds the graphs (``star_graph``, ``pair_graph``, ``window_graph``), the settings
(``Intrinsics``, ``AlignmentLoss``, ``Initialisation``; Adam's are ``optim.AdamSettings``), the
initialisation, the loss (``AlignmentProblem``) and ``global_align`` -> ``AlignmentResult``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import torch

from ..runtime import Progress
from .cameras import default_principal_point, intrinsics_matrix, invert_pose, pixel_grid, transform_points
from .focal import estimate_focal
from .optim import AdamSettings, run_adam
from .pnp import pose_from_pointmap_pnp
from .procrustes import umeyama
from .rotations import make_transform, matrix_to_quat

FOCAL_BREAK = 20.0  # DUSt3R: focal = exp(theta / 20), so Adam moves log-focal 20x slower


# ---------------------------------------------------------------------------------------------
# Graphs


def star_graph(n_frames: int, reference: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """JOG3R's (1, f) pairs: group g = pair (reference, f), views [X^{ref,ref}, X^{f,ref}].

    Returns (frame, group) index tensors of length 2 (F - 1), in the order a model emits them.
    """
    others = [f for f in range(n_frames) if f != reference]
    return pair_graph([(reference, f) for f in others])


def pair_graph(pairs: Sequence[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """DUSt3R pairs (i, j): group e holds views [X^{i,i}, X^{j,i}] (both in camera i)."""
    frame = torch.tensor([f for p in pairs for f in p], dtype=torch.long)
    group = torch.arange(len(pairs), dtype=torch.long).repeat_interleave(2)
    return frame, group


def sliding_window_starts(n_frames: int, window: int, stride: int) -> list[int]:
    """Geo4D section 3.3: starts {0, s, 2s, ...} plus N - W so the last clip ends on the last frame."""
    if n_frames <= window:
        return [0]
    starts = list(range(0, n_frames - window + 1, stride))
    if starts[-1] != n_frames - window:
        starts.append(n_frames - window)
    return starts


def window_graph(n_frames: int, window: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Geo4D overlapping windows: group g holds its W frames, all in the window's first camera."""
    starts = sliding_window_starts(n_frames, window, stride)
    w = min(window, n_frames)
    frame = torch.cat([torch.arange(s, s + w) for s in starts])
    group = torch.arange(len(starts)).repeat_interleave(w)
    return frame, group


# ---------------------------------------------------------------------------------------------
# Settings (DUSt3R's cloud_opt splits them the same way: the camera model and confidence
# threshold live on the optimiser object, the initialisation and Adam's schedule are arguments
# of compute_global_alignment). Defaults are DUSt3R's; frozen so a default instance is shared.


@dataclass(frozen=True)
class Intrinsics:
    """What is known about the cameras' intrinsics and what the optimisation may change.

    focal: known focal(s) in pixels (scalar or (F,)); estimated from the point maps when None.
    optimize_focal: False keeps the initial (given or estimated) focal fixed.
    shared_focal: one focal for all frames (the median of the estimates).
    principal_point: (cx, cy) or (F, 2) pixels, fixed; None: the image centre.
    """

    focal: Union[float, torch.Tensor, None] = None
    optimize_focal: bool = True
    shared_focal: bool = False
    principal_point: Union[Sequence[float], torch.Tensor, None] = None


@dataclass(frozen=True)
class AlignmentLoss:
    """The terms of the loss and their weights (module docstring).

    conf_transform: "log" weighs each pixel by log(C) of DUSt3R-style confidences C >= 1;
      "none" takes the confidences as weights.
    w_focal_smooth, w_transl_smooth: weights of JOG3R's L_fl and L_tranl (0 = off). In this
      module's units (median depth 1, focal / image size) w_transl_smooth ~0.03 and
      w_focal_smooth ~1 halve the trajectory error on jittery 16-frame clips (see the tests).
    extra(state) -> scalar, added every iteration (how the Geo4D terms of ``geo4d`` join: its
      disparity, ray-trajectory and smoothness terms); state holds differentiable "depth"
      (F, H, W), "focal" (F,), "c2w" (F, 4, 4), "points" (F, H, W, 3), in the optimisation's own
      world (median initial depth 1; frame 0 not yet the identity). extra_params: the term's own
      leaf tensors (requires_grad, on the alignment's device), optimised by the same Adam.
    """

    conf_transform: str = "log"
    w_focal_smooth: float = 0.0
    w_transl_smooth: float = 0.0
    extra: Optional[Callable[[dict], torch.Tensor]] = None
    extra_params: Sequence[torch.Tensor] = ()


@dataclass(frozen=True)
class Initialisation:
    """How the groups are registered before the optimisation (module docstring).

    order: "mst" (Prim's maximum spanning tree over group confidence) or "sequential".
    min_conf: raw confidence below which pixels are ignored by the registration and PnP (DUSt3R's
      C > 3), unless that leaves a view with under 1% of its pixels; None: keep every pixel.
    """

    order: str = "mst"
    min_conf: Optional[float] = 3.0


# ---------------------------------------------------------------------------------------------
# Result


@dataclass
class AlignmentResult:
    """Per-frame cameras, depth and world points; the world is frame 0's camera (OpenCV axes)."""

    c2w: torch.Tensor  # (F, 4, 4)
    focal: torch.Tensor  # (F,)
    principal_point: torch.Tensor  # (F, 2)
    depth: torch.Tensor  # (F, H, W)
    points: torch.Tensor  # (F, H, W, 3) world
    confidence: torch.Tensor  # (F, H, W): best raw confidence among the views of each frame
    group_similarity: torch.Tensor  # (G, 4, 4): group coordinates -> world (with scale)
    losses: list = field(default_factory=list)  # total loss per iteration
    init_c2w: Optional[torch.Tensor] = None  # (F, 4, 4) after initialisation, same world
    timings: dict = field(default_factory=dict)  # seconds: "init", "optimise"
    cuda_graph: bool = False  # the loop replayed a captured CUDA graph

    @property
    def K(self) -> torch.Tensor:
        pp = self.principal_point
        return intrinsics_matrix(self.focal, self.focal, pp[:, 0], pp[:, 1])


# ---------------------------------------------------------------------------------------------
# Initialisation (runs once, on the CPU in float64; loops here are over groups, not iterations)


def _registration_order(frame, group, score, n_groups, mode):
    """Order in which groups join the tree, each after one it shares a frame with."""
    frames_of = [set(frame[group == g].tolist()) for g in range(n_groups)]
    placed_frames: set = set()
    remaining = set(range(n_groups))
    order = []
    while remaining:
        if not order:
            cand = list(remaining)
        else:
            cand = [g for g in remaining if frames_of[g] & placed_frames]
            if not cand:
                raise ValueError(f"the pair/window graph is not connected: groups {sorted(remaining)} share no frame "
                                 "with the rest")
        g = max(cand, key=lambda k: float(score[k])) if mode == "mst" else min(cand)
        order.append(g)
        placed_frames |= frames_of[g]
        remaining.discard(g)
    return order


def initialise(points, weights, frame, group, n_frames, principal_point, focal=None, mode="mst",
               init_weights=None):
    """Initial group similarities, world points, focals, poses and depths (all float64, CPU).

    points (V, H, W, 3), weights (V, H, W) (transformed confidence); init_weights (V, H, W): the
    weights used for Procrustes/PnP (confidence-masked). Returns a dict.
    """
    V, H, W = points.shape[:3]
    G = int(group.max()) + 1
    iw = weights if init_weights is None else init_weights
    score = torch.stack([weights[group == g].mean() for g in range(G)])
    order = _registration_order(frame, group, score, G, mode)

    world = torch.zeros(n_frames, H, W, 3, dtype=points.dtype)
    world_w = torch.zeros(n_frames, H, W, dtype=points.dtype)
    placed = torch.zeros(n_frames, dtype=torch.bool)
    sims = torch.zeros(G, 4, 4, dtype=points.dtype)
    scale = torch.ones(G, dtype=points.dtype)
    for k, g in enumerate(order):
        views = torch.nonzero(group == g)[:, 0]
        if k == 0:
            s, R, t = torch.tensor(1.0, dtype=points.dtype), torch.eye(3, dtype=points.dtype), torch.zeros(3, dtype=points.dtype)
        else:
            shared = [v for v in views.tolist() if placed[frame[v]]]
            src = torch.cat([points[v].reshape(-1, 3) for v in shared])
            dst = torch.cat([world[frame[v]].reshape(-1, 3) for v in shared])
            w = torch.cat([(iw[v] * world_w[frame[v]]).sqrt().reshape(-1) for v in shared])
            s, R, t = umeyama(src, dst, w)
        sims[g] = make_transform(R, t, s)
        scale[g] = s
        for v in views.tolist():
            f = int(frame[v])
            if not placed[f]:
                world[f] = s * points[v] @ R.T + t
                world_w[f] = iw[v]
                placed[f] = True
    if not placed.all():
        raise ValueError(f"frames {torch.nonzero(~placed)[:, 0].tolist()} appear in no group")

    # Focal: from each group's reference view (its first view), in its own camera.
    first_view = torch.tensor([int(torch.nonzero(group == g)[0, 0]) for g in range(G)])
    ref_frame = frame[first_view]
    if focal is None:
        pp_ref = principal_point[ref_frame]
        est = estimate_focal(points[first_view], pp_ref, iw[first_view])
        focal_f = torch.full((n_frames,), float(est.median()), dtype=points.dtype)
        for f in range(n_frames):
            mine = est[ref_frame == f]
            if len(mine):
                focal_f[f] = mine.median()
    else:
        focal_f = torch.as_tensor(focal, dtype=points.dtype).expand(n_frames).clone()

    # Poses: a reference frame's camera *is* its group's frame; others by PnP-RANSAC.
    c2w = torch.zeros(n_frames, 4, 4, dtype=points.dtype)
    have = torch.zeros(n_frames, dtype=torch.bool)
    for g in order:  # best-scored group first
        f = int(ref_frame[g])
        if not have[f]:
            R = sims[g, :3, :3] / scale[g]
            c2w[f] = make_transform(R, sims[g, :3, 3])
            have[f] = True
    for f in torch.nonzero(~have)[:, 0].tolist():
        K = intrinsics_matrix(focal_f[f], focal_f[f], principal_point[f, 0], principal_point[f, 1])
        pose, _ = pose_from_pointmap_pnp(world[f], K, world_w[f])
        if pose is None:  # fall back to the nearest solved frame's pose
            solved = torch.nonzero(have)[:, 0]
            pose = c2w[solved[(solved - f).abs().argmin()]]
        c2w[f] = pose.to(points.dtype)
    depth = transform_points(invert_pose(c2w), world)[..., 2]
    return {"sims": sims, "scale": scale, "world": world, "focal": focal_f, "c2w": c2w, "depth": depth}


# ---------------------------------------------------------------------------------------------
# Optimisation


# R(q) of a unit quaternion q = (w, x, y, z) is a linear map of its outer product q q^T:
# R = (w^2 - |v|^2) I + 2 v v^T + 2 w [v]_x, written as 9 rows of coefficients over the 16 entries
# q_i q_j (off-diagonal terms split evenly between (i, j) and (j, i)). One matmul instead of the
# ~20 small ops of rotations.quat_to_matrix: the loop below runs it every iteration.
def _quat_outer_to_matrix_coeffs() -> torch.Tensor:
    C = torch.zeros(3, 3, 4, 4, dtype=torch.float64)
    w, x, y, z = range(4)

    def put(r, c, terms):
        for sign, i, j in terms:
            C[r, c, i, j] += sign / (1 if i == j else 2)
            if i != j:
                C[r, c, j, i] += sign / 2

    put(0, 0, [(1, w, w), (1, x, x), (-1, y, y), (-1, z, z)])
    put(1, 1, [(1, w, w), (-1, x, x), (1, y, y), (-1, z, z)])
    put(2, 2, [(1, w, w), (-1, x, x), (-1, y, y), (1, z, z)])
    put(0, 1, [(2, x, y), (-2, w, z)])
    put(1, 0, [(2, x, y), (2, w, z)])
    put(0, 2, [(2, x, z), (2, w, y)])
    put(2, 0, [(2, x, z), (-2, w, y)])
    put(1, 2, [(2, y, z), (-2, w, x)])
    put(2, 1, [(2, y, z), (2, w, x)])
    return C.reshape(9, 16).T.contiguous()  # (16, 9)


@dataclass
class AlignmentProblem:
    """The constants of one alignment, on its device, and the loss of a set of parameters.

    The data term is evaluated in each view's *frame camera*: for view v of frame f in group g,
    |X_f(i) - (s_g R_g P_vi + t_g)| = |cam_f(i) - (A_v P_vi + b_v)| with A_v = R_f^T s_g R_g and
    b_v = R_f^T (t_g - c_f) (rotations keep lengths). So each iteration transforms the point maps
    once (one batched matmul with per-view 3x3 matrices) and never builds the per-frame world
    points: fewer and smaller full-size tensors than world-space residuals, same loss.
    """

    frame: torch.Tensor  # (V,) long
    group: torch.Tensor  # (V,) long
    points: torch.Tensor  # (V, HW, 3) predicted point maps, group coordinates
    weights: torch.Tensor  # (V, HW) confidence weights, mean 1
    rays: torch.Tensor  # (V, HW, 3): (u - cx, v - cy, 1) of view v's frame
    du: torch.Tensor  # (F, HW) u - cx per frame
    dv: torch.Tensor  # (F, HW)
    q2r: torch.Tensor  # (16, 9), see _quat_outer_to_matrix_coeffs
    n_frames: int
    height: int
    width: int
    base_log_scale: float  # the gauge: the mean group log-scale stays here
    w_focal_smooth: float = 0.0
    w_transl_smooth: float = 0.0

    @classmethod
    def build(cls, points, weights, frame, group, principal_point, n_frames, base_log_scale,
              w_focal_smooth=0.0, w_transl_smooth=0.0, device=None, dtype=torch.float32) -> "AlignmentProblem":
        """points (V, H, W, 3), weights (V, H, W) (zero where invalid), frame/group (V,),
        principal_point (F, 2)."""
        V, H, W = points.shape[:3]
        opts = dict(device=device, dtype=dtype)
        uv = pixel_grid(H, W, dtype=torch.float64).reshape(H * W, 2)
        pp = principal_point.to(torch.float64)
        du = uv[None, :, 0] - pp[:, None, 0]  # (F, HW)
        dv = uv[None, :, 1] - pp[:, None, 1]
        rays = torch.stack([du[frame], dv[frame], torch.ones(V, H * W, dtype=torch.float64)], -1)
        w = weights.reshape(V, H * W) / max(float(weights.mean()), 1e-12)  # mean weight 1
        return cls(frame=frame.to(device), group=group.to(device), points=points.reshape(V, H * W, 3).to(**opts),
                   weights=w.to(**opts), rays=rays.to(**opts), du=du.to(**opts), dv=dv.to(**opts),
                   q2r=_quat_outer_to_matrix_coeffs().to(**opts), n_frames=n_frames, height=H, width=W,
                   base_log_scale=float(base_log_scale), w_focal_smooth=float(w_focal_smooth),
                   w_transl_smooth=float(w_transl_smooth))

    def rotations(self, quats: torch.Tensor) -> torch.Tensor:
        """(n, 4) quaternions, any norm -> (n, 3, 3)."""
        q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return ((q[:, :, None] * q[:, None, :]).reshape(-1, 16) @ self.q2r).reshape(-1, 3, 3)

    def focals(self, params: dict) -> torch.Tensor:
        return (params["focal_param"] / FOCAL_BREAK).exp().expand(self.n_frames)

    def scales(self, params: dict) -> torch.Tensor:
        lg = params["g_log_scale"]
        return (lg - lg.mean() + self.base_log_scale).exp()

    def model(self, params: dict):
        """Per-frame focal (F,), depth (F, HW), world points (F, HW, 3), R (F, 3, 3), group R_g
        (G, 3, 3) and scales (G,) (for results and for ``extra_loss``)."""
        F = self.n_frames
        focal_f = self.focals(params)
        depth = params["log_depth"].reshape(F, -1).exp()
        cam = torch.stack([self.du / focal_f[:, None] * depth, self.dv / focal_f[:, None] * depth, depth], -1)
        R_all = self.rotations(torch.cat([params["quat"], params["g_quat"]]))  # one call for frames and groups
        R, Rg = R_all[:F], R_all[F:]
        world = torch.baddbmm(params["centre"][:, None, :], cam, R.transpose(1, 2))
        return focal_f, depth, world, R, Rg, self.scales(params)

    def loss(self, params: dict) -> torch.Tensor:
        """DUSt3R's confidence-weighted point distance plus JOG3R's temporal terms (module docstring)."""
        F, fr, gr = self.n_frames, self.frame, self.group
        inv_focal = (params["focal_param"] * (-1.0 / FOCAL_BREAK)).exp().expand(F)  # a product, not a quotient, below
        R_all = self.rotations(torch.cat([params["quat"], params["g_quat"]]))
        R, Rg = R_all[:F], R_all[F:]
        RfT = R.index_select(0, fr).transpose(1, 2)  # (V, 3, 3) world -> frame camera
        A = torch.bmm(RfT, (self.scales(params)[:, None, None] * Rg).index_select(0, gr))
        b = torch.bmm(RfT, (params["g_trans"].index_select(0, gr) - params["centre"].index_select(0, fr))[..., None])
        depth = params["log_depth"].reshape(F, -1).index_select(0, fr).exp()  # (V, HW)
        xy = depth * inv_focal.index_select(0, fr)[:, None]
        cam = self.rays * torch.stack([xy, xy, depth], -1)  # (V, HW, 3) in the frame's camera
        aligned = torch.baddbmm(b.transpose(1, 2), self.points, A.transpose(1, 2))
        dist = ((cam - aligned).square().sum(-1) + 1e-12).sqrt()
        loss = (self.weights * dist).mean()
        if self.w_focal_smooth > 0 and F > 1:
            l = self.focals(params) / float(max(self.height, self.width))
            loss = loss + self.w_focal_smooth * (l[1:] - l[:-1]).square().sum()
        if self.w_transl_smooth > 0 and F > 1:
            c = params["centre"]
            v = c[:-1] - c[1:]
            loss = loss + self.w_transl_smooth * (v.square().sum() + (v[1:] - v[:-1]).square().sum())
        return loss


class _ExtraState(dict):
    """What ``AlignmentLoss.extra`` reads: "depth", "focal", "c2w", and "points" built only when a
    term asks for it (every pixel in the world: measured, building it each iteration for the Geo4D
    terms, which read only depth and cameras, cost as much as the point-map loss itself)."""

    def __init__(self, problem: AlignmentProblem, params: dict):
        F, H, W = problem.n_frames, problem.height, problem.width
        R = problem.rotations(params["quat"])
        super().__init__(depth=params["log_depth"].reshape(F, H, W).exp(), focal=problem.focals(params),
                         c2w=make_transform(R, params["centre"]))
        self._problem, self._params = problem, params

    def __missing__(self, key):
        if key != "points":
            raise KeyError(key)
        p = self._problem
        self["points"] = p.model(self._params)[2].reshape(p.n_frames, p.height, p.width, 3)
        return self["points"]


def global_align(pointmaps: torch.Tensor, confidence: torch.Tensor, frame: torch.Tensor, group: torch.Tensor, *,
                 mask: Optional[torch.Tensor] = None, n_frames: Optional[int] = None,
                 intrinsics: Intrinsics = Intrinsics(), loss: AlignmentLoss = AlignmentLoss(),
                 init: Initialisation = Initialisation(), adam: AdamSettings = AdamSettings(),
                 progress=None, device=None, dtype=torch.float32, cuda_graph: Optional[bool] = None,
                 initial: Optional[dict] = None) -> AlignmentResult:
    """Globally align V point maps of F frames (see the module docstring for the model).

    pointmaps (V, H, W, 3): view v = frame ``frame[v]`` in the camera of its group's reference
      frame (the group's first view). confidence (V, H, W): DUSt3R-style (>= 1), or plain weights
      with ``AlignmentLoss(conf_transform="none")``. mask (V, H, W) bool: pixels to use.
    frame, group (V,) long: see ``star_graph``, ``pair_graph``, ``window_graph``. n_frames: F
      (default: the largest frame index + 1).
    intrinsics, loss, init: see :class:`Intrinsics`, :class:`AlignmentLoss`, :class:`Initialisation`.
    adam: iterations and learning-rate schedule (``optim.AdamSettings``; DUSt3R's 300 iterations,
      lr 0.01 cosine to 1e-6).
    progress: a :class:`~backend.runtime.Progress`, a ``callback(fraction, label)`` or None;
      ``step(it, n_iters)`` every ``optim.REPORT_EVERY`` iterations, unlabelled (name the work
      in the span you pass); a cancel raises :class:`~backend.runtime.Cancelled`. The loss of
      every iteration is in the result.
    Runs on ``device`` (default: the device of ``pointmaps``) in ``dtype``.
    cuda_graph: on CUDA, record one optimisation step (forward, backward, Adam) as a CUDA graph and
      replay it: one launch per iteration instead of ~130 (the loop is launch-bound at small sizes).
      None: whenever there is no ``loss.extra`` (whose ops may not be capturable). Falls back to
      the eager loop, with a warning, if capture fails. ``AlignmentResult.cuda_graph`` tells.
    initial: start from this state instead of registering the groups (a previous solution, as
      Geo4D's second stage starts from its point-map-only first stage): float64 CPU tensors
      "sims" (G, 4, 4) group -> world with scale, "scale" (G,), "focal" (F,), "c2w" (F, 4, 4),
      "depth" (F, H, W), all in one world (``initialise``'s keys; "world" is not needed).
    """
    progress = Progress.of(progress)
    progress.check()
    device = torch.device(device) if device is not None else pointmaps.device
    t_start = time.perf_counter()
    V, H, W = pointmaps.shape[:3]
    frame, group = frame.long().cpu(), group.long().cpu()
    F = int(frame.max()) + 1 if n_frames is None else n_frames
    if not (len(frame) == len(group) == V == confidence.shape[0]):
        raise ValueError(f"{V} point maps but {len(frame)} frame and {len(group)} group indices, "
                         f"{confidence.shape[0]} confidence maps")

    P64 = pointmaps.detach().double().cpu()
    conf64 = confidence.detach().double().cpu()
    valid = torch.isfinite(P64).all(-1) & torch.isfinite(conf64)
    if mask is not None:
        valid &= mask.cpu().bool()
    P64 = torch.where(valid[..., None], P64, torch.zeros_like(P64))
    if loss.conf_transform == "log":
        w64 = conf64.clamp_min(1.0).log()
    elif loss.conf_transform == "none":
        w64 = conf64.clamp_min(0.0)
    else:
        raise ValueError(f"conf_transform must be 'log' or 'none', not {loss.conf_transform!r}")
    w64 = torch.where(valid, w64, torch.zeros_like(w64))
    init_w = w64
    if init.min_conf is not None:
        keep = (conf64 > init.min_conf) & valid
        enough = keep.flatten(1).sum(-1) >= 0.01 * H * W
        init_w = torch.where(enough[:, None, None] & ~keep, torch.zeros_like(w64), w64)

    pp = intrinsics.principal_point
    pp = default_principal_point(H, W) if pp is None else pp
    pp = torch.as_tensor(pp, dtype=torch.float64).expand(F, 2).clone()

    if initial is not None:
        init_state = {k: torch.as_tensor(initial[k], dtype=torch.float64).cpu()
                      for k in ("sims", "scale", "focal", "c2w", "depth")}
    else:
        init_state = initialise(P64, w64, frame, group, F, pp, focal=intrinsics.focal, mode=init.order,
                                init_weights=init_w)
    if intrinsics.shared_focal:
        init_state["focal"] = init_state["focal"].median().expand(F).clone()

    # World units: median initial depth = 1 (keeps the temporal weights unit-free).
    d0 = init_state["depth"]
    unit = d0[d0 > 0].median() if (d0 > 0).any() else torch.tensor(1.0, dtype=torch.float64)
    depth0 = (init_state["depth"] / unit).clamp_min(1e-3)
    c2w0 = init_state["c2w"].clone()
    c2w0[:, :3, 3] /= unit
    sims0 = init_state["sims"]
    log_s0 = (init_state["scale"] / unit).log()
    base_log_scale = float(log_s0.mean())  # the gauge: mean log-scale stays here

    opts = dict(device=device, dtype=dtype)
    params = {
        "log_depth": depth0.log().to(**opts),
        "quat": matrix_to_quat(c2w0[:, :3, :3]).to(**opts),
        "centre": c2w0[:, :3, 3].to(**opts),
        "g_quat": matrix_to_quat(sims0[:, :3, :3] / init_state["scale"][:, None, None]).to(**opts),
        "g_trans": (sims0[:, :3, 3] / unit).to(**opts),
        "g_log_scale": log_s0.to(**opts),
    }
    log_focal0 = FOCAL_BREAK * init_state["focal"].log()
    params["focal_param"] = (log_focal0[:1] if intrinsics.shared_focal else log_focal0).to(**opts)
    # Own, contiguous leaves: .to() returns its input when nothing changes (float64 on the CPU), and
    # "centre" would then be a strided view into c2w0, updated in place by Adam (the fused kernel
    # assumes contiguous parameters).
    params = {k: v.clone(memory_format=torch.contiguous_format) for k, v in params.items()}
    trainable = [k for k in params if k != "focal_param" or intrinsics.optimize_focal]
    for k in trainable:
        params[k].requires_grad_(True)

    problem = AlignmentProblem.build(P64, w64, frame, group, pp, F, base_log_scale, loss.w_focal_smooth,
                                     loss.w_transl_smooth, **opts)

    def model():
        return problem.model(params)

    extra = loss.extra

    def loss_fn():
        total = problem.loss(params)
        if extra is not None:
            total = total + extra(_ExtraState(problem, params))
        return total

    leaves = [params[k] for k in trainable] + list(loss.extra_params)
    use_graph = cuda_graph if cuda_graph is not None else extra is None
    use_graph = bool(use_graph) and device.type == "cuda" and adam.n_iters > 0
    _sync(device)
    t_opt = time.perf_counter()
    losses, graph_used = run_adam(loss_fn, leaves, adam, progress=progress, cuda_graph=use_graph)

    _sync(device)
    t_done = time.perf_counter()
    with torch.no_grad():
        focal_f, depth, world, R, Rg, s = model()
        c2w = make_transform(R, params["centre"]).double().cpu()
        sims = make_transform(Rg, params["g_trans"], s).double().cpu()
        to_first = invert_pose(c2w[:1])  # the world becomes frame 0's camera
        c2w = to_first @ c2w
        sims = to_first @ sims
        points = transform_points(to_first, world.double().cpu()).reshape(F, H, W, 3)
        conf_v = torch.where(valid, conf64, torch.zeros_like(conf64))
        conf_f = torch.stack([conf_v[frame == f].amax(0) for f in range(F)])  # once, F small
    return AlignmentResult(
        c2w=c2w, focal=focal_f.double().cpu().clone(), principal_point=pp, depth=depth.double().cpu().reshape(F, H, W),
        points=points, confidence=conf_f, group_similarity=sims,
        losses=losses.cpu().tolist(), init_c2w=invert_pose(c2w0[:1]) @ c2w0,
        timings={"init": t_opt - t_start, "optimise": t_done - t_opt}, cuda_graph=graph_used)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
