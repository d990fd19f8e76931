"""InterPose self-consistency selection (Cai et al., eq. 2-9).

Poses are relative poses T = (R, t) from image A to image B as (..., 4, 4) matrices (only R and the
direction of t matter). dist(T1, T2) = geodesic rotation angle + translation-direction angle, in
degrees, the latter sign-invariant (arccos |t1 . t2| / (|t1| |t2|), eq. 4).

A pose estimator can fail on a frame subset (no confident points, PnP without a solution): such
a pose is NaN and takes no part in a medoid; a video none of whose subsets gave a pose has
D_med = inf and is never selected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from .metrics import rotation_errors_deg, translation_angle_errors_deg
from .rotations import as_tensor


def pose_distance(T1, T2) -> torch.Tensor:
    """Eq. 2-4: dist_R + dist_t in degrees, broadcast over leading dimensions."""
    T1, T2 = as_tensor(T1), as_tensor(T2)
    return rotation_errors_deg(T1[..., :3, :3], T2[..., :3, :3]) + \
        translation_angle_errors_deg(T1[..., :3, 3], T2[..., :3, 3])


def distance_matrix(poses) -> torch.Tensor:
    """(m, 4, 4) -> (m, m) pairwise pose distances."""
    P = as_tensor(poses)
    return pose_distance(P[:, None], P[None, :])


def valid_poses(poses) -> torch.Tensor:
    """(m,) bool: the poses that are finite (an estimator's failures are NaN)."""
    return torch.isfinite(as_tensor(poses)).flatten(1).all(-1)


def medoid(poses) -> tuple[int, float]:
    """Eq. 8: index of the medoid pose and D_med = min_i mean_{j != i} dist(T_i, T_j), over the
    finite poses (index into ``poses``). No finite pose: (-1, inf); one: (its index, 0)."""
    P = as_tensor(poses)
    ok = torch.nonzero(valid_poses(P))[:, 0]
    if len(ok) == 0:
        return -1, math.inf
    if len(ok) < 2:
        return int(ok[0]), 0.0
    D = distance_matrix(P[ok])
    mean = D.sum(1) / (len(ok) - 1)  # the diagonal is 0
    i = int(mean.argmin())
    return int(ok[i]), float(mean[i])


def total_distance(poses, pair_pose) -> tuple[int, float, float]:
    """Eq. 9: (medoid index, D_med, D_total = D_med + dist(T_med, pose from {A, B} alone)).
    Without a pair pose (None or NaN: the pair-only estimate failed) D_total is D_med."""
    i, d_med = medoid(poses)
    if i < 0:
        return i, d_med, math.inf
    if pair_pose is None or not torch.isfinite(as_tensor(pair_pose)).all():
        return i, d_med, d_med
    return i, d_med, d_med + float(pose_distance(as_tensor(poses)[i], pair_pose))


@dataclass
class Selection:
    video: int  # index of the chosen video (-1: no video gave a pose)
    pose: torch.Tensor  # (4, 4) its medoid pose: the consensus relative pose (NaN when video is -1)
    d_med: list  # per video
    d_total: list  # per video
    medoids: list  # per video: index of its medoid subset (-1 when none)


def select_video(candidate_poses, pair_pose) -> Selection:
    """Pick the video with the lowest D_total; candidate_poses: list (per video) of (m, 4, 4)."""
    scores = [total_distance(p, pair_pose) for p in candidate_poses]
    totals = [s[2] for s in scores]
    if not scores or not np.isfinite(totals).any():
        return Selection(-1, torch.full((4, 4), float("nan"), dtype=torch.float64), [s[1] for s in scores],
                         totals, [s[0] for s in scores])
    best = int(np.argmin(totals))
    return Selection(video=best, pose=as_tensor(candidate_poses[best])[scores[best][0]],
                     d_med=[s[1] for s in scores], d_total=totals, medoids=[s[0] for s in scores])


def frame_subsets(n_frames: int, k: int = 5, n_random: int = 10, uniform: bool = True, seed: int = 0) -> list:
    """InterPose sampling: subsets of k frame indices that always hold the first (A) and last (B)
    frame; ``n_random`` random ones plus one uniformly spaced (last). Each subset is sorted.

    Subsets are distinct while there are enough of them: a repeated subset repeats its pose, and
    on short videos (8 frames, k = 5: 20 subsets) drawing with repeats made a video look more
    self-consistent than it is. When fewer distinct subsets exist, all of them are returned."""
    if n_frames < 2 or k < 2:
        raise ValueError("need at least 2 frames and k >= 2")
    k = min(k, n_frames)
    rng = np.random.default_rng(seed)
    inner = np.arange(1, n_frames - 1)
    uni = sorted(set(np.round(np.linspace(0, n_frames - 1, k)).astype(int).tolist())) if uniform else None
    possible = math.comb(len(inner), k - 2)
    seen = {tuple(uni)} if uni else set()
    out = []
    for _ in range(50 * max(n_random, 1)):
        if len(out) >= n_random or len(seen) >= possible:
            break
        pick = rng.choice(inner, size=k - 2, replace=False) if k > 2 else np.array([], int)
        s = tuple(sorted([0, n_frames - 1] + pick.tolist()))
        if s not in seen:
            seen.add(s)
            out.append(list(s))
    if uni:
        out.append(uni)
    return out


def agreement(poses) -> float:
    """Mean pairwise distance (deg) between finite poses, e.g. the medoids of the best videos:
    how much the top candidates agree (0 = the same answer). Fewer than two: NaN."""
    P = as_tensor(poses)
    P = P[valid_poses(P)]
    if len(P) < 2:
        return float("nan")
    D = distance_matrix(P)
    n = len(P)
    return float(D.sum() / (n * (n - 1)))


# The plain-language reliability of an InterPose answer. Thresholds in degrees of the
# InterPose distance (rotation + translation direction) and the rule:
#   high:   D_total <= HIGH_D_TOTAL and the top candidates agree within HIGH_AGREEMENT;
#   medium: D_total <= MEDIUM_D_TOTAL;
#   low:    anything else, a pair-only answer (nothing to check it against) or no pose.
# The thresholds are InterPose's scale of self-consistency (its medoid distances of good videos are
# a few to ~20 deg); they are not yet calibrated on Parallax's own roles. Measured with the shipped
# tiny model (benchmarks/RESULTS.md, "Pose from an image pair"): no pair reached "high", and the
# "medium" answers (D_total 24-35) were still 54 and 92 deg wrong in rotation, because its blended in-between
# videos and its pair-only estimate agree on "no motion"; the real in-between videos that halve
# the error scored D_total 89-191 ("low"), as eq. 9 measures the distance to that wrong pair-only
# pose. Recalibrate with a generator and estimator that see wide motion (a GPU evaluation).
HIGH_D_TOTAL = 20.0
HIGH_AGREEMENT = 20.0
MEDIUM_D_TOTAL = 45.0
RELIABILITY_RULE = (f"high: D_total <= {HIGH_D_TOTAL:g} deg and the top candidates agree within "
                    f"{HIGH_AGREEMENT:g} deg; medium: D_total <= {MEDIUM_D_TOTAL:g} deg; low: otherwise, "
                    "or a pair-only answer (no generated video to check it against)")


def reliability(d_total: Optional[float], top_agreement: Optional[float]) -> str:
    """"high" / "medium" / "low" by :data:`RELIABILITY_RULE`; ``d_total`` None: pair-only -> low."""
    if d_total is None or not math.isfinite(d_total):
        return "low"
    agree = top_agreement is None or not math.isfinite(top_agreement) or top_agreement <= HIGH_AGREEMENT
    if d_total <= HIGH_D_TOTAL and agree:
        return "high"
    return "medium" if d_total <= MEDIUM_D_TOTAL else "low"
