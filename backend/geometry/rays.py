"""Plücker ray maps <-> pinhole cameras (Geo4D section 3.2-3.3, RayDiffusion).

A pixel's ray is (d, m): d its world direction (unit length), m = c x d its moment about the world
origin (c the camera centre). Recovering the camera from a ray map:
- centre: the least-squares closest point to all rays, solving sum_i |c x d_i - m_i|^2 in closed form;
- intrinsics: the homography P with P d_i ~ (u_i, v_i, 1) (DLT) is K R_w2c; an RQ decomposition
  splits it into K (upper triangular) and a rotation;
- rotation: Kabsch between the canonical rays K^-1 (u, v, 1) (normalised) and d_i, which gives an
  exactly orthonormal R even when the ray map is noisy.
Batched over leading dimensions; solved in float64.
"""

from __future__ import annotations

import torch

from .cameras import pixel_grid


def camera_rays(c2w: torch.Tensor, K: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(..., 4, 4) c2w and (..., 3, 3) K -> (..., H, W, 6) Plücker rays (unit d, m = c x d)."""
    uv = pixel_grid(height, width, dtype=c2w.dtype, device=c2w.device)
    p = torch.cat([uv, torch.ones_like(uv[..., :1])], -1)  # (H, W, 3)
    d_cam = p @ torch.linalg.inv(K).transpose(-1, -2)[..., None, :, :]  # (..., H, W, 3)
    d = d_cam @ c2w[..., None, :3, :3].transpose(-1, -2)
    d = d / d.norm(dim=-1, keepdim=True)
    c = c2w[..., None, None, :3, 3].expand(d.shape)
    return torch.cat([d, torch.linalg.cross(c, d)], -1)


def rays_centre(rays: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Least-squares closest point (..., 3) to the rays (..., H, W, 6).

    c x d = m is linear in c; its normal equations are sum_i w_i (|d_i|^2 I - d_i d_i^T) c = sum_i w_i d_i x m_i.
    """
    r = rays.reshape(rays.shape[:-3] + (-1, 6)).double()
    d, m = r[..., :3], r[..., 3:]
    w = torch.ones_like(d[..., 0]) if weights is None else weights.reshape(d.shape[:-1]).double()
    dd = (d * d).sum(-1)
    eye = torch.eye(3, dtype=d.dtype, device=d.device)
    A = (w * dd).sum(-1)[..., None, None] * eye - torch.einsum("...n,...ni,...nj->...ij", w, d, d)
    b = (w[..., None] * torch.linalg.cross(d, m)).sum(-2)
    return torch.linalg.solve(A, b[..., None])[..., 0]


def rq3(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RQ decomposition of (..., 3, 3): A = R Q, R upper triangular with positive diagonal, Q orthogonal."""
    flip = torch.flip(torch.eye(3, dtype=A.dtype, device=A.device), [0])
    Q1, R1 = torch.linalg.qr((flip @ A).transpose(-1, -2))
    R = flip @ R1.transpose(-1, -2) @ flip
    Q = flip @ Q1.transpose(-1, -2)
    D = torch.diag_embed(torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)))
    return R @ D, D @ Q


def ray_homography(rays: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """DLT for P (..., 3, 3) with P d_i ~ (u_i, v_i, 1) over the pixel grid; scaled so det(P) > 0."""
    H, W = rays.shape[-3:-1]
    d = rays[..., :3].reshape(rays.shape[:-3] + (-1, 3)).double()
    uv = pixel_grid(H, W, dtype=torch.float64, device=rays.device).reshape(-1, 2)
    # Hartley normalisation of the pixels keeps the 9x9 system well conditioned.
    mean = uv.mean(0)
    scale = (2 ** 0.5) / (uv - mean).norm(dim=-1).mean()
    T = torch.tensor([[scale, 0, -scale * mean[0]], [0, scale, -scale * mean[1]], [0, 0, 1]], dtype=torch.float64,
                     device=rays.device)
    un = (uv - mean) * scale
    u, v = un[:, 0, None].expand(d.shape[:-1] + (1,)), un[:, 1, None].expand(d.shape[:-1] + (1,))
    z = torch.zeros_like(d)
    rows = torch.cat([torch.cat([-d, z, u * d], -1), torch.cat([z, -d, v * d], -1)], -2)  # (..., 2N, 9)
    if weights is not None:
        wr = weights.reshape(d.shape[:-1]).double().sqrt()
        rows = rows * torch.cat([wr, wr], -1)[..., None]
    M = rows.transpose(-1, -2) @ rows
    _, vecs = torch.linalg.eigh(M)
    Pn = vecs[..., :, 0].reshape(d.shape[:-2] + (3, 3))
    P = torch.linalg.inv(T) @ Pn
    return P * torch.sign(torch.det(P))[..., None, None]


def kabsch_directions(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Rotation R (..., 3, 3) minimising sum_i w_i |R src_i - dst_i|^2 for direction sets (no centring)."""
    w = torch.ones_like(src[..., 0]) if weights is None else weights
    cov = (dst * w[..., None]).transpose(-1, -2) @ src
    U, _, Vh = torch.linalg.svd(cov)
    d = torch.sign(torch.det(U @ Vh))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return U @ D @ Vh


def rays_to_camera(rays: torch.Tensor, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray maps (..., H, W, 6) -> c2w (..., 4, 4) and K (..., 3, 3) (float64).

    weights (..., H, W) optional (confidence). K keeps any skew the fit finds (0 for a pinhole).
    """
    H, W = rays.shape[-3:-1]
    centre = rays_centre(rays, weights)
    P = ray_homography(rays, weights)  # = lambda K R_w2c
    K, _ = rq3(P)
    K = K / K[..., 2:3, 2:3]
    uv = pixel_grid(H, W, dtype=torch.float64, device=rays.device).reshape(-1, 2)
    p = torch.cat([uv, torch.ones_like(uv[:, :1])], -1)
    canon = p @ torch.linalg.inv(K).transpose(-1, -2)
    canon = canon / canon.norm(dim=-1, keepdim=True)
    d = rays[..., :3].reshape(rays.shape[:-3] + (-1, 3)).double()
    d = d / d.norm(dim=-1, keepdim=True)
    w = None if weights is None else weights.reshape(d.shape[:-1]).double()
    R = kabsch_directions(canon, d, w)
    c2w = torch.zeros(R.shape[:-2] + (4, 4), dtype=torch.float64, device=rays.device)
    c2w[..., :3, :3], c2w[..., :3, 3], c2w[..., 3, 3] = R, centre, 1
    return c2w, K
