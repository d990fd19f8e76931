"""Small inputs for the model tests: a random tiny config and an analytic fake clip with the
synthetic engine's ClipBatch shapes (pinhole camera, known depth, exact point and ray maps)."""

from __future__ import annotations

import torch

SMALL = dict(sample_size=16, num_frames=4, in_channels=3, patch_size=(1, 4, 4), hidden_size=64, depth=2,
             num_heads=2, caption_channels=24, model_max_length=6, geometry_block=2, decoder_dim=64,
             decoder_depth=1, decoder_heads=2, geometry_patch=4)


def fake_clip(b=2, f=4, h=16, w=16, seed=0):
    """Camera translating along x past a fronto-parallel wall: exact depth/points/rays/c2w/K."""
    g = torch.Generator().manual_seed(seed)
    fx = 0.8 * w
    K = torch.tensor([[fx, 0, (w - 1) / 2], [0, fx, (h - 1) / 2], [0, 0, 1.0]])
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    dirs_cam = torch.stack([(xs - K[0, 2]) / fx, (ys - K[1, 2]) / fx, torch.ones_like(xs)], -1)
    c2w = torch.eye(4).repeat(b, f, 1, 1)
    c2w[:, :, 0, 3] = torch.arange(f, dtype=torch.float32) * 0.2
    z = 2.0 + torch.rand(b, 1, 1, 1, generator=g) * 2
    depth = z.expand(b, f, h, w).clone()
    pts_cam = dirs_cam[None, None] * depth[..., None]
    points = pts_cam + c2w[:, :, None, None, :3, 3]  # pure translation: frame-0 coords
    d = torch.nn.functional.normalize(dirs_cam, dim=-1)[None, None].expand(b, f, h, w, 3)
    centre = c2w[:, :, None, None, :3, 3].expand(b, f, h, w, 3)
    rays = torch.cat([d, torch.cross(centre, d, dim=-1)], -1)
    rgb = torch.randint(0, 256, (b, f, h, w, 3), dtype=torch.uint8, generator=g)
    return dict(rgb=rgb, depth=depth, points=points, rays=rays, c2w=c2w, K=K.expand(b, f, 3, 3),
                captions=[f"a wall seen from a truck shot {i}" for i in range(b)])
