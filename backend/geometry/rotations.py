"""Rotation helpers shared by the geometry core: quaternions, axis-angle, angles, Sim(3) matrices.

Everything is batched over leading dimensions and differentiable in torch.
Quaternions are (w, x, y, z) and need not be normalised on input.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def as_tensor(x, dtype=torch.float64, device=None) -> torch.Tensor:
    """numpy / list / tensor -> tensor (float64 by default: metrics and closed forms want it)."""
    if isinstance(x, torch.Tensor):
        return x.to(dtype=dtype, device=device if device is not None else x.device)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternion (w, x, y, z), any norm -> (..., 3, 3) rotation matrix.

    R = (w^2 - |v|^2) I + 2 v v^T + 2 w [v]_x, written with few tensor ops: global alignment
    calls it every iteration, where kernel count, not arithmetic, sets the speed.
    """
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, v = q[..., :1], q[..., 1:]
    eye = torch.eye(3, dtype=q.dtype, device=q.device)
    return ((w * w - (v * v).sum(-1, keepdim=True))[..., None] * eye
            + 2 * v[..., :, None] * v[..., None, :] + (2 * w)[..., None] * skew(v))


def matrix_to_quat(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation -> (..., 4) unit quaternion (w, x, y, z) with w >= 0.

    Picks, per matrix, the best-conditioned of the four classic formulas (Shepperd's method).
    """
    m = R
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cands = torch.stack([
        torch.stack([1 + tr, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                     m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0],
                     1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                     1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1),
    ], -2)  # (..., 4 candidates, 4)
    diag = torch.stack([tr, m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]], -1)
    best = diag.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(best.shape + (1, 4))).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def axis_angle_to_matrix(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) rotation vector -> (..., 3, 3) (Rodrigues), written as
    I + sin(t)/t [v]x + (1 - cos t)/t^2 [v]x^2 with Taylor coefficients near t = 0, so that it is
    differentiable at the zero vector (the optimisers that refine poses start there)."""
    t2 = (v * v).sum(-1, keepdim=True)[..., None]
    small = t2 < 1e-8
    t2_safe = torch.where(small, torch.ones_like(t2), t2)
    t = t2_safe.sqrt()
    a = torch.where(small, 1 - t2 / 6, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24, (1 - torch.cos(t)) / t2_safe)
    S = skew(v)
    eye = torch.eye(3, dtype=v.dtype, device=v.device).expand(S.shape)
    return eye + a * S + b * (S @ S)


def skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrix: skew(a) @ b == a x b."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).reshape(v.shape[:-1] + (3, 3))


def rotation_angle(R: torch.Tensor) -> torch.Tensor:
    """Angle (radians) of rotation matrices (..., 3, 3).

    atan2(sin, cos) rather than arccos((tr - 1) / 2): arccos loses half the digits near 0.
    """
    cos = (R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1) / 2
    vee = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    sin = vee.norm(dim=-1) / 2
    return torch.atan2(sin, cos)


def relative_rotation_angle(R1: torch.Tensor, R2: torch.Tensor) -> torch.Tensor:
    """Geodesic distance (radians) between rotations: the angle of R2 R1^T."""
    return rotation_angle(R2 @ R1.transpose(-1, -2))


def project_to_so3(M: torch.Tensor) -> torch.Tensor:
    """Nearest rotation matrix (Frobenius) to each (..., 3, 3) matrix."""
    U, _, Vh = torch.linalg.svd(M)
    d = torch.det(U @ Vh)
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return U @ D @ Vh


def make_transform(R: torch.Tensor, t: torch.Tensor, s: torch.Tensor | float | None = None) -> torch.Tensor:
    """(..., 3, 3), (..., 3)[, scale (...)] -> (..., 4, 4) matrix x -> s R x + t."""
    T = torch.zeros(R.shape[:-2] + (4, 4), dtype=R.dtype, device=R.device)
    sR = R if s is None else R * torch.as_tensor(s, dtype=R.dtype, device=R.device)[..., None, None]
    T[..., :3, :3] = sR
    T[..., :3, 3] = t
    T[..., 3, 3] = 1
    return T


def deg(x: torch.Tensor) -> torch.Tensor:
    return x * (180.0 / math.pi)
