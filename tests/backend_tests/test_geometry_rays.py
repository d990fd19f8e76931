"""Plücker rays <-> cameras: exact round trip, and graceful under noise."""

import torch

from backend.geometry.cameras import intrinsics_matrix
from backend.geometry.rays import camera_rays, rays_to_camera, rq3
from backend.geometry.rotations import axis_angle_to_matrix, deg, make_transform, relative_rotation_angle


def random_cameras(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    R = axis_angle_to_matrix(torch.randn(n, 3, generator=g, dtype=torch.float64))
    c = 3 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    fx = 40 + 60 * torch.rand(n, generator=g, dtype=torch.float64)
    fy = fx * (1 + 0.1 * torch.rand(n, generator=g, dtype=torch.float64))  # non-square pixels too
    cx = 20 + 8 * torch.rand(n, generator=g, dtype=torch.float64)
    cy = 14 + 6 * torch.rand(n, generator=g, dtype=torch.float64)
    return make_transform(R, c), intrinsics_matrix(fx, fy, cx, cy)


def test_rq3():
    A = torch.randn(5, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    R, Q = rq3(A)
    assert torch.allclose(R @ Q, A, atol=1e-12)
    assert torch.allclose(torch.tril(R, -1), torch.zeros_like(R)) and (torch.diagonal(R, dim1=-2, dim2=-1) > 0).all()
    assert torch.allclose(Q @ Q.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(5, 3, 3), atol=1e-12)


def test_ray_round_trip_exact():
    # tolerance 1e-4 (absolute, on c2w entries and on K in pixels), batched over 8 cameras
    c2w, K = random_cameras(8)
    rays = camera_rays(c2w, K, 30, 40)
    assert rays.shape == (8, 30, 40, 6)
    c2w2, K2 = rays_to_camera(rays)
    assert (c2w2 - c2w).abs().max() < 1e-4
    assert (K2 - K).abs().max() < 1e-4
    # in float32 too (what a network head outputs)
    c2w3, K3 = rays_to_camera(rays.float())
    assert (c2w3 - c2w).abs().max() < 1e-4 * 10 and (K3 - K).abs().max() / K[:, 0, 0].min() < 1e-4


def test_rays_with_noise_degrade_gracefully():
    # 0.2% direction noise: rotation within 0.2 deg, focal within 1%, centre within 1% of its range
    c2w, K = random_cameras(4, seed=2)
    rays = camera_rays(c2w, K, 30, 40)
    g = torch.Generator().manual_seed(3)
    d = rays[..., :3] + 0.002 * torch.randn(rays[..., :3].shape, generator=g, dtype=rays.dtype)
    d = d / d.norm(dim=-1, keepdim=True)
    m = torch.linalg.cross(c2w[:, None, None, :3, 3].expand(d.shape), d)
    c2w2, K2 = rays_to_camera(torch.cat([d, m], -1))
    assert deg(relative_rotation_angle(c2w2[:, :3, :3], c2w[:, :3, :3])).max() < 0.2
    assert ((K2[:, 0, 0] / K[:, 0, 0]) - 1).abs().max() < 0.01
    assert (c2w2[:, :3, 3] - c2w[:, :3, 3]).norm(dim=-1).max() < 0.01 * 3
