"""Shading for the torch renderer: surface albedo from the packed materials (procedural patterns
on 3D object or world coordinates, photos by box projection from the texture atlas) and light
(ambient plus 1-2 Lambertian point or sun lights with hard shadows, fog on open ground)."""

from __future__ import annotations

import math

import torch

from .materials import PATTERNS
from .raycast import cast, dot
from .textures import TEXTURE_SIZE

SHADOW_OFFSET = 2e-3  # shadow rays start this far off the surface
GROUND_FOG = 45.0  # metres: distant open ground fades into the horizon colour


# ----------------------------------------------------------------------------------------
# Materials: procedural patterns on 3D (object or world) coordinates; photos by box projection


def _hash01(ix, iy, iz) -> torch.Tensor:
    """Integer lattice hash in [0, 1): exact integer arithmetic, identical on every device."""
    h = ix * 73856093 ^ iy * 19349663 ^ iz * 83492791
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).to(torch.float32) / 65535.0


def _value_noise(p: tuple) -> torch.Tensor:
    fl = [torch.floor(c) for c in p]
    w = [(c - f) * (c - f) * (3 - 2 * (c - f)) for c, f in zip(p, fl)]
    i = [f.to(torch.int64) for f in fl]
    out = 0
    for cx in (0, 1):
        for cy in (0, 1):
            for cz in (0, 1):
                wt = (w[0] if cx else 1 - w[0]) * (w[1] if cy else 1 - w[1]) * (w[2] if cz else 1 - w[2])
                out = out + wt * _hash01(i[0] + cx, i[1] + cy, i[2] + cz)
    return out


def _plane_uv(p: tuple, n: tuple) -> tuple:
    """Box projection: the two coordinates across the dominant axis of the normal."""
    ax, ay, az = n[0].abs(), n[1].abs(), n[2].abs()
    use_x = (ax >= ay) & (ax >= az)
    use_y = ~use_x & (ay >= az)
    u = torch.where(use_x, p[1], p[0])
    v = torch.where(use_x | use_y, p[2], p[1])
    return u, v


def _pattern(name: str, mat: torch.Tensor, p: tuple, n: tuple, fp: torch.Tensor, atlas: list) -> torch.Tensor:
    """(m, 3) linear albedo of one pattern for the gathered material rows ``mat`` (m, 20).

    ``fp`` is each pixel's footprint on the surface (metres): patterns finer than a pixel fade to
    their mean colour and photos read a coarser mip level, a cheap stand-in for anti-aliasing.
    """
    a, b = mat[:, 1:4], mat[:, 4:7]
    scale = mat[:, 7]
    fade = ((fp / scale - 0.3) * 2).clamp(0, 1)[:, None]  # 0: pattern resolved, 1: under a pixel
    axis = (mat[:, 8], mat[:, 9], mat[:, 10])
    q = tuple(c / scale + 0.25 for c in p)  # +0.25: surfaces at integer coordinates never sit on a cell edge
    if name == "solid":
        return a
    if name == "checker":
        odd = (torch.floor(q[0]) + torch.floor(q[1]) + torch.floor(q[2])).remainder(2) >= 1
        return torch.where(odd[:, None], b, a) * (1 - fade) + 0.5 * (a + b) * fade
    if name == "stripes":
        return torch.where((dot(q, axis).remainder(1) < 0.5)[:, None], b, a) * (1 - fade) + 0.5 * (a + b) * fade
    if name == "noise":
        s = 0.65 * _value_noise(q) + 0.35 * _value_noise(tuple(c * 2.7 for c in q))
        return b + (a - b) * s[:, None]
    if name == "gradient":
        g = (0.5 + 0.2 * dot(p, axis) / scale).clamp(0, 1)
        return a + (b - a) * g[:, None]
    u, v = _plane_uv(p, n)
    if name == "bricks":
        bw, bh = scale, scale * 0.45
        row = torch.floor(v / bh + 0.25)
        bu = u / bw + 0.5 * row.remainder(2) + 0.25
        fu, fv = bu.remainder(1), (v / bh + 0.25).remainder(1)
        mortar = (fu < 0.04) | (fv < 0.09)
        ri = row.to(torch.int64)
        var = 0.75 + 0.4 * _hash01(torch.floor(bu).to(torch.int64), ri, ri * 0)
        fade = ((fp / bh - 0.3) * 2).clamp(0, 1)[:, None]
        return torch.where(mortar[:, None], b, a * var[:, None]) * (1 - fade) + (0.83 * a + 0.17 * b) * fade
    # photo: rotate, scale (metres per tile), offset (the random crop), wrap; nearest texel
    cr, sr = torch.cos(mat[:, 12]), torch.sin(mat[:, 12])
    pu = (cr * u - sr * v) / scale + mat[:, 13]
    pv = (sr * u + cr * v) / scale + mat[:, 14]
    level = torch.log2(fp * TEXTURE_SIZE / scale).round().clamp(0, len(atlas) - 1).to(torch.int64)
    out = torch.zeros_like(a)
    for lv, texels in enumerate(atlas):
        S = TEXTURE_SIZE >> lv
        ix = (pu.remainder(1) * S).to(torch.int64).clamp(0, S - 1)
        iy = (pv.remainder(1) * S).to(torch.int64).clamp(0, S - 1)
        idx = (mat[:, 11].to(torch.int64) * S + iy) * S + ix
        out = torch.where((level == lv)[:, None], texels.index_select(0, idx), out)
    return out * mat[:, 15:18]


def material_albedo(mat: torch.Tensor, p: tuple, n: tuple, fp: torch.Tensor, atlas: list) -> torch.Tensor:
    """(m, 3) linear albedo: each pattern is evaluated only on the pixels that use it."""
    out = torch.empty(mat.shape[0], 3, device=mat.device)
    pid = mat[:, 0].to(torch.int64)
    for k, name in enumerate(PATTERNS):
        sel = (pid == k).nonzero()[:, 0]
        if sel.numel():
            pick = lambda x: x.index_select(0, sel)  # noqa: E731
            out.index_copy_(0, sel, _pattern(name, pick(mat), tuple(map(pick, p)), tuple(map(pick, n)), pick(fp),
                                             atlas))
    return out.clamp(0, 1)


# ----------------------------------------------------------------------------------------
# Light


def shade(pk: dict, albedo: torch.Tensor, x: tuple, n: tuple, d: tuple, t: torch.Tensor, hb: torch.Tensor,
          hf: torch.Tensor, shadows: bool) -> torch.Tensor:
    """(m, 3) linear colour of m surface pixels: points ``x`` seen along unit directions ``d`` at
    distance ``t`` with unit normals ``n``, clip ``hb`` and frame ``hf`` of the chunk ``pk``."""
    zero, one = torch.zeros_like(x[0]), torch.ones_like(x[0])
    # Lambertian: ambient + 1-2 lights, hard shadows cast by the primitives.
    facing = torch.where(dot(n, d) > 0, -one, one)
    n = tuple(c * facing for c in n)
    light = pk["ambient"].index_select(0, hb).clone()
    for li in range(2):
        lk = pk["light_kind"][:, li].index_select(0, hb)
        if not bool((lk > 0).any()):
            continue
        lv = pk["light_vec"][:, li].index_select(0, hb)
        to_l = tuple(torch.where(lk == 1, lv[:, i] - x[i], -lv[:, i]) for i in range(3))
        dist2 = dot(to_l, to_l).clamp_min(1e-12)
        dist = torch.sqrt(dist2)
        ldir = tuple(c / dist for c in to_l)
        w = dot(n, ldir).clamp_min(0) * torch.where(lk == 1, 1.0 / dist2, one) * (lk > 0)
        if shadows:
            lit = (w > 0).nonzero()[:, 0]
            so = tuple(x[i].index_select(0, lit) + SHADOW_OFFSET * n[i].index_select(0, lit) for i in range(3))
            inf = torch.full_like(zero[:1], math.inf).expand(lit.shape[0])  # suns: no distance limit
            tmax = torch.where(lk.index_select(0, lit) == 1, dist.index_select(0, lit), inf)
            sub = lambda v: v.index_select(0, lit)  # noqa: E731
            ts, _ = cast(pk, so, tuple(map(sub, ldir)), sub(hb), sub(hf), t_max=tmax, want_index=False)
            w.index_copy_(0, lit, torch.where(torch.isinf(ts), sub(w), zero[:1]))
        light = light + w[:, None] * pk["light_col"][:, li].index_select(0, hb)
    col = albedo * light
    fog = torch.where(pk["open"].index_select(0, hb), 1 - torch.exp(-t / GROUND_FOG), zero)
    return col * (1 - fog[:, None]) + pk["sky"][:, 0].index_select(0, hb) * fog[:, None]
