"""Rendering one chunk of clips on a device: the packed scene arrays move there
(:func:`to_device`), then :func:`render_chunk` casts a ray through every pixel centre of every
frame of every clip at once, shades the surface pixels, draws the sky, and writes the ground
truth (depth, frame-0 points and Plücker rays, dynamic mask, object ids) plus per-object pixel
counts for the captions. There is no Python loop over pixels or clips; only over the 6
primitive kinds and the lights.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .primitives import KINDS
from .raycast import cast, cast_environment, dot, normal_of_kind, rot, rot_t
from .shading import material_albedo, shade


def to_device(arrays: dict, device) -> dict:
    """Tensors on ``device`` for a chunk's arrays: one host-to-device copy per dtype, then views."""
    out = {k: v for k, v in arrays.items() if not isinstance(v, np.ndarray)}
    by_dtype: dict = {}
    for k, v in arrays.items():
        if isinstance(v, np.ndarray):
            by_dtype.setdefault(v.dtype, []).append((k, v))
    for items in by_dtype.values():
        flat = torch.from_numpy(np.concatenate([v.reshape(-1) for _, v in items])).to(device)
        start = 0
        for k, v in items:
            out[k] = flat[start:start + v.size].view(v.shape)
            start += v.size
    out["pos_bf"] = out["pos_rows"].view(out["B"] * out["F"], out["N"], 3)
    return out


def render_chunk(specs, pk: dict, device, atlas, shadows: bool) -> dict:
    """The clips ``specs`` of one chunk, packed and on ``device`` (``pk``), as a dict of (B, F, ...)
    tensors: rgb, depth, points, rays, c2w, K, dynamic, ids, and counts (B, N) pixels per primitive."""
    B, F, N = pk["B"], pk["F"], pk["N"]
    H, W = specs[0].height, specs[0].width
    P = H * W
    M = B * F * P

    # Camera rays through pixel centres: d_cam = K^-1 (u, v, 1), normalised.
    v_, u_ = torch.meshgrid(torch.arange(H, device=device, dtype=torch.float32),
                            torch.arange(W, device=device, dtype=torch.float32), indexing="ij")
    K = pk["K"]
    dcx = (u_.reshape(1, P) - K[:, 0, 2, None]) / K[:, 0, 0, None]  # (B, P)
    dcy = (v_.reshape(1, P) - K[:, 1, 2, None]) / K[:, 1, 1, None]
    inv_len = torch.rsqrt(dcx * dcx + dcy * dcy + 1)
    dc = tuple(c[:, None, :] for c in (dcx * inv_len, dcy * inv_len, inv_len))  # (B, 1, P)
    flat = lambda x: x.expand(B, F, P).reshape(M)  # noqa: E731
    dw = tuple(flat(c) for c in rot(pk["c2w_scene"][:, :, None, :3, :3], dc))  # world directions (M,)
    ow = tuple(flat(pk["c2w_scene"][:, :, i, 3][..., None]) for i in range(3))
    bi = flat(torch.arange(B, device=device)[:, None, None])
    fi = flat(torch.arange(F, device=device)[None, :, None])

    # Nearest primitive, else the room or open ground, else sky.
    t_obj, slot = cast(pk, ow, dw, bi, fi, camera_rays=True)
    t_env, face = cast_environment(pk, ow, dw, bi)
    use_obj = t_obj < t_env
    t = torch.where(use_obj, t_obj, t_env)
    slot = torch.where(use_obj, slot, torch.full_like(slot, -1))
    sky = torch.isinf(t)
    ids = torch.where(sky, torch.full_like(slot, -2), slot)

    # Shade the surface pixels only (compacted).
    hit = (~sky).nonzero()[:, 0]
    pick = lambda x: x.index_select(0, hit)  # noqa: E731
    hb, hf, hs, ho = pick(bi), pick(fi), pick(slot).clamp_min(0), pick(use_obj)
    hd = tuple(c.index_select(0, hit) for c in dw)
    xw = tuple(ow[i].index_select(0, hit) + t.index_select(0, hit) * hd[i] for i in range(3))
    row = (hb * F + hf) * N + hs
    R = pk["rot_rows"].index_select(0, row).view(-1, 3, 3)
    T = pk["pos_rows"].index_select(0, row)
    pl = rot_t(R, tuple(xw[i] - T[:, i] for i in range(3)))
    nl = [torch.zeros_like(xw[0]) for _ in range(3)]
    kind = pk["kind_rows"].index_select(0, hb * N + hs)
    size_h = pk["size_rows"].index_select(0, hb * N + hs)
    for k, name in enumerate(KINDS):
        sel = (ho & (kind == k)).nonzero()[:, 0]
        if sel.numel():
            nk = normal_of_kind(name, tuple(c.index_select(0, sel) for c in pl), size_h.index_select(0, sel))
            for i in range(3):
                nl[i].index_copy_(0, sel, nk[i])
    norm = torch.sqrt(dot(nl, nl)).clamp_min(1e-12)
    nl = tuple(c / norm for c in nl)
    n_obj = rot(R, nl)
    hface = face.index_select(0, hit)
    zero, one = torch.zeros_like(xw[0]), torch.ones_like(xw[0])
    n_env = (torch.where(hface == 1, -torch.sign(hd[0]), zero), torch.where(hface == 2, -torch.sign(hd[1]), zero),
             torch.where(hface == 0, one, torch.where(hface == 3, -one, zero)))
    n = tuple(torch.where(ho, n_obj[i], n_env[i]) for i in range(3))
    tex_p = tuple(torch.where(ho, pl[i], xw[i]) for i in range(3))
    tex_n = tuple(torch.where(ho, nl[i], n_env[i]) for i in range(3))
    mat_id = torch.where(ho, hs, N + torch.where(hface == 0, 0, torch.where(hface == 3, 2, 1)))
    # Pixel footprint on the surface: distance x pixel angle, stretched at grazing angles.
    pix_angle = 1.0 / pk["K"][:, 0, 0].index_select(0, hb)
    fp = t.index_select(0, hit) * pix_angle / dot(n, hd).abs().clamp_min(0.15)
    albedo = material_albedo(pk["mat_rows"].index_select(0, hb * (N + 3) + mat_id), tex_p, tex_n, fp, atlas)
    col_hit = shade(pk, albedo, xw, n, hd, t.index_select(0, hit), hb, hf, shadows)

    # Sky gradient by elevation, then the surface pixels on top.
    up = dw[2].clamp(0, 1).sqrt()[:, None]
    col = pk["sky"][:, 0].index_select(0, bi) * (1 - up) + pk["sky"][:, 1].index_select(0, bi) * up
    col.index_copy_(0, hit, col_hit)
    rgb = col.clamp(0, 1).pow(1 / 2.2).mul(255).round().to(torch.uint8)

    # Ground truth in the frame-0 camera: X = c_rel + t (R_rel d_cam); depth = t * (d . z_cam).
    d0 = tuple(flat(c) for c in rot(pk["c2w_rel"][:, :, None, :3, :3], dc))
    crel = tuple(flat(pk["c2w_rel"][:, :, i, 3][..., None]) for i in range(3))
    nan = torch.full_like(t, math.nan)
    points = torch.stack([torch.where(sky, nan, crel[i] + t * d0[i]) for i in range(3)], dim=-1)
    depth = t * flat(inv_len[:, None, :])
    m = (crel[1] * d0[2] - crel[2] * d0[1], crel[2] * d0[0] - crel[0] * d0[2], crel[0] * d0[1] - crel[1] * d0[0])
    rays = torch.stack([d0[0], d0[1], d0[2], *m], dim=-1)
    dyn = pk["moving_rows"].index_select(0, bi * N + slot.clamp_min(0)) & (slot >= 0)
    counts = torch.zeros(B, N + 1, device=device, dtype=torch.int64)
    counts.view(-1).scatter_add_(0, bi * (N + 1) + slot + 1, torch.ones_like(slot))

    shp = (B, F, H, W)
    return dict(rgb=rgb.reshape(*shp, 3), depth=depth.reshape(shp), points=points.reshape(*shp, 3),
                rays=rays.reshape(*shp, 6), c2w=pk["c2w_rel"],
                K=pk["K"][:, None].expand(B, F, 3, 3).contiguous(), dynamic=dyn.reshape(shp),
                ids=ids.reshape(shp).to(torch.int16), counts=counts[:, 1:])
