"""InterPose self-consistency selection (Cai et al., eq. 2-9).

Poses are relative poses T = (R, t) from image A to image B as (..., 4, 4) matrices (only R and the
direction of t matter). dist(T1, T2) = geodesic rotation angle + translation-direction angle, in
degrees, the latter sign-invariant (arccos |t1 . t2| / (|t1| |t2|), eq. 4).
"""

from __future__ import annotations

from dataclasses import dataclass

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


def medoid(poses) -> tuple[int, float]:
    """Eq. 8: index of the medoid pose and D_med = min_i mean_{j != i} dist(T_i, T_j)."""
    D = distance_matrix(poses)
    m = D.shape[0]
    if m < 2:
        return 0, 0.0
    mean = D.sum(1) / (m - 1)  # the diagonal is 0
    i = int(mean.argmin())
    return i, float(mean[i])


def total_distance(poses, pair_pose) -> tuple[int, float, float]:
    """Eq. 9: (medoid index, D_med, D_total = D_med + dist(T_med, pose from {A, B} alone))."""
    i, d_med = medoid(poses)
    return i, d_med, d_med + float(pose_distance(as_tensor(poses)[i], pair_pose))


@dataclass
class Selection:
    video: int  # index of the chosen video
    pose: torch.Tensor  # (4, 4) its medoid pose: the consensus relative pose
    d_med: list  # per video
    d_total: list  # per video


def select_video(candidate_poses, pair_pose) -> Selection:
    """Pick the video with the lowest D_total; candidate_poses: list (per video) of (m, 4, 4)."""
    scores = [total_distance(p, pair_pose) for p in candidate_poses]
    best = int(np.argmin([s[2] for s in scores]))
    return Selection(video=best, pose=as_tensor(candidate_poses[best])[scores[best][0]],
                     d_med=[s[1] for s in scores], d_total=[s[2] for s in scores])


def frame_subsets(n_frames: int, k: int = 5, n_random: int = 10, uniform: bool = True, seed: int = 0) -> list:
    """InterPose sampling: subsets of k frame indices that always hold the first (A) and last (B)
    frame; ``n_random`` random ones plus one uniformly spaced. Each subset is sorted."""
    if n_frames < 2 or k < 2:
        raise ValueError("need at least 2 frames and k >= 2")
    k = min(k, n_frames)
    rng = np.random.default_rng(seed)
    inner = np.arange(1, n_frames - 1)
    out = []
    for _ in range(n_random):
        pick = rng.choice(inner, size=k - 2, replace=False) if k > 2 else np.array([], int)
        out.append(sorted([0, n_frames - 1] + pick.tolist()))
    if uniform:
        out.append(sorted(set(np.round(np.linspace(0, n_frames - 1, k)).astype(int).tolist())))
    return out
