"""Ray casting for the torch renderer: rays against the primitives of a packed render chunk
(``packing.pack_arrays`` on a device) and against the room or open ground.

Intersections are analytic per primitive kind, in the object frame; tori are sphere traced to
within 1 mm of the surface, every other kind is exact to float32. :func:`cast` finds the nearest
primitive for any batch of flat rays (camera rays, shadow rays); :func:`cast_environment` the
room's walls, floor and ceiling or the ground disc. The 3-vector helpers work on component
tuples, which the whole renderer shares.
"""

from __future__ import annotations

import math

import torch

from .primitives import KINDS

EPS = 1e-4  # minimum ray distance (metres)
TORUS_STEPS = 40


# ----------------------------------------------------------------------------------------
# Small vector helpers on component tuples (elementwise only: results never depend on the
# batch layout, unlike matmul kernels that pick different reduction orders per shape).


def rot_t(R: torch.Tensor, v: tuple) -> tuple:
    """R^T v for R (..., 3, 3) and v a tuple of 3 broadcastable tensors."""
    return tuple(R[..., 0, i] * v[0] + R[..., 1, i] * v[1] + R[..., 2, i] * v[2] for i in range(3))


def rot(R: torch.Tensor, v: tuple) -> tuple:
    return tuple(R[..., i, 0] * v[0] + R[..., i, 1] * v[1] + R[..., i, 2] * v[2] for i in range(3))


def dot(a: tuple, b: tuple) -> torch.Tensor:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cand(t: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    return torch.where(ok & (t > EPS), t, torch.full_like(t, math.inf))


def safe(x: torch.Tensor) -> torch.Tensor:
    """x with exact zeros nudged, so 1/x is a huge finite number of the right sign."""
    return torch.where(x.abs() < 1e-12, torch.full_like(x, 1e-12), x)


# ----------------------------------------------------------------------------------------
# Ray-primitive intersections, object frame, unit directions. Each returns the nearest t > EPS
# or +inf. o and d are tuples (x, y, z) of broadcastable tensors; size is (..., 3).


def _hit_sphere(o, d, size, centre_z=0.0):
    r = size[..., 0]
    oz = o[2] - centre_z
    b = o[0] * d[0] + o[1] * d[1] + oz * d[2]
    c = o[0] * o[0] + o[1] * o[1] + oz * oz - r * r
    disc = b * b - c
    sq = torch.sqrt(disc.clamp_min(0))
    hit = disc >= 0
    t0, t1 = -b - sq, -b + sq
    return torch.minimum(_cand(t0, hit), _cand(t1, hit))


def _hit_box(o, d, size):
    tn, tf = None, None
    for i in range(3):
        inv = 1.0 / safe(d[i])
        a, b = (-size[..., i] - o[i]) * inv, (size[..., i] - o[i]) * inv
        lo, hi = torch.minimum(a, b), torch.maximum(a, b)
        tn = lo if tn is None else torch.maximum(tn, lo)
        tf = hi if tf is None else torch.minimum(tf, hi)
    hit = tn <= tf
    return torch.minimum(_cand(tn, hit), _cand(tf, hit))


def _hit_cylinder(o, d, size, caps=True):
    r, h = size[..., 0], size[..., 1]
    a = safe(d[0] * d[0] + d[1] * d[1])
    b = o[0] * d[0] + o[1] * d[1]
    c = o[0] * o[0] + o[1] * o[1] - r * r
    disc = b * b - a * c
    sq = torch.sqrt(disc.clamp_min(0))
    t = None
    for tt in ((-b - sq) / a, (-b + sq) / a):
        z = o[2] + tt * d[2]
        cand = _cand(tt, (disc >= 0) & (z.abs() <= h))
        t = cand if t is None else torch.minimum(t, cand)
    if caps:
        dz = safe(d[2])
        for zc in (h, -h):
            tt = (zc - o[2]) / dz
            x, y = o[0] + tt * d[0], o[1] + tt * d[1]
            t = torch.minimum(t, _cand(tt, x * x + y * y <= r * r))
    return t


def _hit_cone(o, d, size):
    r, h = size[..., 0], size[..., 1]
    k2 = (r / (2 * h)) ** 2
    oz = o[2] - h  # apex at z = +h
    a = d[0] * d[0] + d[1] * d[1] - k2 * d[2] * d[2]
    a = torch.where(a.abs() < 1e-9, torch.full_like(a, 1e-9), a)
    b = o[0] * d[0] + o[1] * d[1] - k2 * oz * d[2]
    c = o[0] * o[0] + o[1] * o[1] - k2 * oz * oz
    disc = b * b - a * c
    sq = torch.sqrt(disc.clamp_min(0))
    t = None
    for tt in ((-b - sq) / a, (-b + sq) / a):
        z = o[2] + tt * d[2]
        cand = _cand(tt, (disc >= 0) & (z >= -h) & (z <= h))
        t = cand if t is None else torch.minimum(t, cand)
    tt = (-h - o[2]) / safe(d[2])
    x, y = o[0] + tt * d[0], o[1] + tt * d[1]
    return torch.minimum(t, _cand(tt, x * x + y * y <= r * r))


def _hit_capsule(o, d, size):
    h = size[..., 1]
    t = _hit_cylinder(o, d, size, caps=False)
    return torch.minimum(t, torch.minimum(_hit_sphere(o, d, size, h), _hit_sphere(o, d, size, -h)))


def _hit_torus(o, d, size):
    """Sphere tracing of the exact torus SDF inside its bounding sphere (no overshoot)."""
    R, r = size[..., 0], size[..., 1]
    b = dot(o, d)
    c = dot(o, o) - (R + r) ** 2
    disc = b * b - c
    sq = torch.sqrt(disc.clamp_min(0))
    t_in, t_out = -b - sq, -b + sq
    t = torch.maximum(t_in, torch.full_like(t_in, EPS))
    for _ in range(TORUS_STEPS):
        x, y, z = o[0] + t * d[0], o[1] + t * d[1], o[2] + t * d[2]
        q = torch.sqrt(x * x + y * y) - R
        t = t + (torch.sqrt(q * q + z * z) - r)
    x, y, z = o[0] + t * d[0], o[1] + t * d[1], o[2] + t * d[2]
    q = torch.sqrt(x * x + y * y) - R
    dist = torch.sqrt(q * q + z * z) - r
    return _cand(t, (disc >= 0) & (dist.abs() < 1e-3 * (1 + r)) & (t < t_out))


HIT = {"box": _hit_box, "sphere": _hit_sphere, "cylinder": _hit_cylinder, "cone": _hit_cone,
       "capsule": _hit_capsule, "torus": _hit_torus}


def normal_of_kind(k: str, p: tuple, size: torch.Tensor) -> tuple:
    """Outward (unnormalised) normal at object-frame surface points p of kind ``k``."""
    x, y, z = p
    s0, s1, s2 = size[..., 0], size[..., 1], size[..., 2]
    rho = torch.sqrt(x * x + y * y).clamp_min(1e-9)
    zero = torch.zeros_like(x)
    if k == "box":  # the face whose slab the point sits on
        ax, ay, az = (x / s0).abs(), (y / s1).abs(), (z / s2).abs()
        fx = (ax >= ay) & (ax >= az)
        fy = ~fx & (ay >= az)
        fz = ~fx & ~fy
        return (torch.where(fx, torch.sign(x), zero), torch.where(fy, torch.sign(y), zero),
                torch.where(fz, torch.sign(z), zero))
    if k == "sphere":
        return p
    if k == "cylinder":  # side or cap, whichever the point is closer to
        cap = (z.abs() - s1) > (rho - s0)
        return (torch.where(cap, zero, x / rho), torch.where(cap, zero, y / rho), torch.where(cap, torch.sign(z), zero))
    if k == "cone":  # gradient of rho - k (h - z) on the side; the base cap at z = -h
        base = ((z + s1).abs() < 1e-3 * (1 + s1)) & (rho <= s0 * (1 + 1e-3))
        return (torch.where(base, zero, x / rho), torch.where(base, zero, y / rho),
                torch.where(base, zero - 1, zero + s0 / (2 * s1)))
    if k == "capsule":
        return (x, y, z - z.clamp(-s1, s1))
    q = rho - s0  # torus
    return (q * x / rho, q * y / rho, z)


# ----------------------------------------------------------------------------------------
# Casting rays against every primitive of a chunk, and against the room or ground


def cast(pk: dict, o: tuple, d: tuple, bi: torch.Tensor, fi: torch.Tensor, t_max=None, want_index=True,
         camera_rays: bool = False):
    """Nearest primitive hit for M flat rays (origin o, unit direction d, clip bi, frame fi).

    A bounding-sphere test over all (ray, primitive) pairs picks the candidates; the exact
    intersection then runs per kind on the candidates only. Returns t (M,) (+inf: no hit)
    and the primitive slot (M,) (-1: no hit), or only t when ``want_index`` is False.
    ``camera_rays``: the rays are every pixel of every frame in (clip, frame, pixel) order, all
    from the frame's camera centre, so the per-primitive terms broadcast instead of gathering.
    """
    M = d[0].shape[0]
    dev = d[0].device
    N, F = pk["N"], pk["F"]
    if camera_rays:
        BF = pk["B"] * F
        oc = tuple(pk["c2w_scene"][:, :, i, 3].reshape(BF, 1) - pk["pos_bf"][..., i] for i in range(3))  # (BF, N)
        c = dot(oc, oc) - pk["radius2"].repeat_interleave(F, dim=0)
        b = dot(tuple(x[:, None, :] for x in oc), tuple(v.view(BF, -1, 1) for v in d))  # (BF, P, N)
        disc = (b * b - c[:, None, :]).view(M, N)
        b = b.view(M, N)
    else:
        pos = pk["pos_bf"].index_select(0, bi * F + fi)  # (M, N, 3)
        oc = tuple(o[i][:, None] - pos[..., i] for i in range(3))
        b = dot(oc, tuple(c[:, None] for c in d))
        c = dot(oc, oc) - pk["radius2"].index_select(0, bi)
        disc = b * b - c
    sq = torch.sqrt(disc.clamp_min(0))
    cand = (disc >= 0) & (sq - b > EPS)
    if t_max is not None:
        cand &= (-b - sq) < t_max[:, None]
    ray, slot = cand.nonzero(as_tuple=True)
    t_all = torch.full((ray.shape[0],), math.inf, device=dev)
    rb = bi.index_select(0, ray)
    kinds = pk["kind_rows"].index_select(0, rb * N + slot)
    for k, name in enumerate(KINDS):
        sel = (kinds == k).nonzero()[:, 0]
        if sel.numel() == 0:
            continue
        r, s = ray.index_select(0, sel), slot.index_select(0, sel)
        cb = rb.index_select(0, sel)
        row = (cb * F + fi.index_select(0, r)) * N + s
        R = pk["rot_rows"].index_select(0, row).view(-1, 3, 3)
        T = pk["pos_rows"].index_select(0, row)
        ol = rot_t(R, tuple(o[i].index_select(0, r) - T[:, i] for i in range(3)))
        dl = rot_t(R, tuple(c.index_select(0, r) for c in d))
        t_all.index_copy_(0, sel, HIT[name](ol, dl, pk["size_rows"].index_select(0, cb * N + s)))
    if t_max is not None:
        t_all = torch.where(t_all < t_max.index_select(0, ray), t_all, torch.full_like(t_all, math.inf))
    best = torch.full((M,), math.inf, device=dev).scatter_reduce_(0, ray, t_all, "amin")
    if not want_index:
        return best, None
    win = (t_all == best.index_select(0, ray)) & torch.isfinite(t_all)
    best_slot = torch.full((M,), -1, dtype=torch.int64, device=dev)
    best_slot.scatter_reduce_(0, ray, torch.where(win, slot, torch.full_like(slot, -1)), "amax")
    return best, best_slot


def cast_environment(pk: dict, o: tuple, d: tuple, bi: torch.Tensor) -> tuple:
    """Room (the camera is inside an axis-aligned box) or open ground (a disc at z = 0) for M
    flat rays of clips ``bi``. Returns t (M,) (+inf: sky) and the face (M,): 0 floor, 1 x wall,
    2 y wall, 3 ceiling."""
    room = pk["room"].index_select(0, bi)
    inf = torch.full_like(o[0], math.inf)
    tx = (torch.where(d[0] > 0, room[:, 0], -room[:, 0]) / 2 - o[0]) / safe(d[0])
    ty = (torch.where(d[1] > 0, room[:, 1], -room[:, 1]) / 2 - o[1]) / safe(d[1])
    tfloor = torch.where(d[2] < 0, -o[2] / safe(d[2]), inf)
    ttop = torch.where(d[2] > 0, (room[:, 2] - o[2]) / safe(d[2]), inf)
    is_open = pk["open"].index_select(0, bi)
    tx, ty, ttop = (torch.where(is_open, inf, x) for x in (tx, ty, ttop))
    t_env, face = torch.stack([tfloor, tx, ty, ttop], dim=-1).min(dim=-1)  # 0 floor, 1/2 walls, 3 top
    gx, gy = o[0] + tfloor * d[0], o[1] + tfloor * d[1]
    off_ground = is_open & ((gx * gx + gy * gy) > room[:, 0] ** 2)
    no_ceiling = (face == 3) & ~pk["ceiling"].index_select(0, bi)
    return torch.where(off_ground | no_ceiling, inf, t_env), face
