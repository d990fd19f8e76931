"""Batched torch ray caster for the synthetic 4D data engine (CPU and CUDA).

``render_batch(seeds, ...)`` samples one :class:`~backend.data.scene.SceneSpec` per seed
(plain numpy, shared with the Cycles exporter), packs the batch into padded tensors and ray
casts every pixel of every frame of every clip at once: analytic intersections per primitive
kind (sphere tracing for tori), procedural and photo materials, Lambertian shading with hard
shadows from 1-2 lights plus ambient, and a sky at infinity for open scenes. There is no
Python loop over pixels or clips in the hot path; only over the 6 primitive kinds and the
lights. Outputs are exact ground truth for the pixel centres:

- ``depth``: z-depth in each frame's camera (+inf for sky);
- ``points``: each pixel's 3D point in the frame-0 camera (NaN for sky);
- ``rays``: Plücker rays (unit direction, moment c x d) in the frame-0 camera;
- ``c2w``: camera-to-world with world = frame-0 camera; ``K``: pixel intrinsics.

Tori are sphere traced to within 1 mm of the surface; every other kind is exact to float32.
Deterministic by seed; a clip does not depend on the other clips of its batch.
"""

from __future__ import annotations

import atexit
import functools
import math
import threading
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

import numpy as np
import torch

from .scene import (HELDOUT_SEED_START, KINDS, PATTERNS, SceneSpec, heldout_seeds, is_heldout,  # noqa: F401
                    list_textures, make_caption, sample_scene)
from .packing import materials as _materials, pack_arrays, remap_photos, sample_and_pack
from .prefetch import Prefetcher
from .scene import _sample_scene_args
from .scene import sample_train_seeds as _sample_train_seeds_np

EPS = 1e-4  # minimum ray distance (metres)
SHADOW_OFFSET = 2e-3  # shadow rays start this far off the surface
TORUS_STEPS = 40
TEXTURE_SIZE = 256
MIP_LEVELS = 5
GROUND_FOG = 45.0  # metres: distant open ground fades into the horizon colour


@dataclass
class ClipBatch:
    """Ground-truth clips, batch first, tensors on one device (see the module docstring)."""

    rgb: torch.Tensor  # (B, F, H, W, 3) uint8
    depth: torch.Tensor  # (B, F, H, W) float32, +inf for sky
    points: torch.Tensor  # (B, F, H, W, 3) float32, frame-0 camera, NaN for sky
    rays: torch.Tensor  # (B, F, H, W, 6) float32 Plücker (d, c x d), frame-0 camera
    c2w: torch.Tensor  # (B, F, 4, 4) float32, world = frame-0 camera
    K: torch.Tensor  # (B, F, 3, 3) float32
    dynamic_mask: torch.Tensor  # (B, F, H, W) bool
    captions: list
    motions: list
    seeds: list
    object_ids: Optional[torch.Tensor] = None  # (B, F, H, W) int16: primitive index, -1 room/ground, -2 sky

    def __len__(self) -> int:
        return len(self.seeds)

    def to(self, device) -> "ClipBatch":
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return ClipBatch(**moved)


def sample_train_seeds(n: int, generator=None) -> list[int]:
    """``n`` training seeds, all below HELDOUT_SEED_START. ``generator``: torch.Generator,
    numpy Generator, int or None."""
    if isinstance(generator, torch.Generator):
        return torch.randint(0, HELDOUT_SEED_START, (n,), generator=generator).tolist()
    return [int(s) for s in _sample_train_seeds_np(n, generator)]


# ----------------------------------------------------------------------------------------
# Public entry points


def render_batch(seeds: list[int], frames: int = 16, height: int = 128, width: int = 128, device="cpu",
                 textures: Optional[str] = None, intrinsics: Optional[dict] = None,
                 dynamic: Optional[bool] = None, n_objects: Optional[int] = None,
                 motion: Optional[str] = None, shadows: bool = True,
                 chunk_rays: Optional[int] = None, workers: int = 0) -> ClipBatch:
    """Render one clip per seed. See the module docstring for the outputs.

    workers: sample the scene descriptions in that many processes (numpy work that would
    otherwise cap GPU throughput); 0 samples in this process. Results are identical.
    """
    specs = sample_specs(seeds, frames, height, width, textures, intrinsics, dynamic, n_objects, motion, workers)
    return render_specs(specs, device=device, shadows=shadows, chunk_rays=chunk_rays)


_POOLS: dict = {}
_POOLS_LOCK = threading.Lock()


def sample_specs(seeds, frames=16, height=128, width=128, textures=None, intrinsics=None, dynamic=None,
                 n_objects=None, motion=None, workers: int = 0) -> list[SceneSpec]:
    """Scene descriptions for ``seeds`` (``backend.data.scene.sample_scene``), optionally in a
    persistent pool of ``workers`` processes (spawned: they import numpy only, never CUDA)."""
    tex_files = _texture_list(textures)
    args = [(int(s), frames, height, width, tex_files, intrinsics, dynamic, n_objects, motion) for s in seeds]
    if workers <= 1 or len(args) < 2 * workers:
        return [sample_scene(*a) for a in args]
    return list(_pool(workers).map(_sample_scene_args, args, chunksize=max(1, len(args) // (4 * workers))))


def _pool(workers: int):
    """The persistent pool of ``workers`` spawned processes (they import numpy only, never CUDA)."""
    with _POOLS_LOCK:
        if workers not in _POOLS:
            import concurrent.futures
            import multiprocessing

            _POOLS[workers] = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"))
        return _POOLS[workers]


def shutdown_pools() -> None:
    """End the sampling worker processes (``workers=k``); the next call starts them again."""
    while _POOLS:
        _POOLS.popitem()[1].shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown_pools)


def render_stream(seed_batches: Iterable[list[int]], frames: int = 16, height: int = 128, width: int = 128,
                  device="cpu", textures: Optional[str] = None, intrinsics: Optional[dict] = None,
                  dynamic: Optional[bool] = None, n_objects: Optional[int] = None, motion: Optional[str] = None,
                  shadows: bool = True, chunk_rays: Optional[int] = None, workers: int = 0,
                  prefetch: int = 2) -> Iterator[ClipBatch]:
    """``render_batch(seeds, ...)`` for each list of seeds, with the CPU half of the next
    ``prefetch`` batches (:func:`prepare_seeds`: scene sampling, packing, photo decoding) done in
    a background thread while this one renders. ``workers >= 1`` moves sampling and packing on
    into that many worker processes: the thread then only waits, and the GIL stays free for the
    rendering thread (numpy sampling in a thread holds it, and every torch call of the renderer
    must win it back). Clips are bit-identical to ``render_batch``'s; ``prefetch=0`` does
    everything in the caller's thread. An exception in the background work is raised here;
    closing the generator (or finishing it) stops the thread.
    """
    tex_files = _texture_list(textures)

    def prepare(seeds):
        return prepare_seeds(seeds, frames, height, width, device, tex_files, intrinsics, dynamic, n_objects, motion,
                             chunk_rays, workers)

    # with worker processes the prefetch threads only wait: prepare the `prefetch` batches side by side
    with Prefetcher(prepare, seed_batches, depth=prefetch, threads=prefetch if workers >= 1 else 1) as batches:
        for prep in batches:
            yield render_prepared(prep, device, shadows=shadows)


def render_clip(seed: int, **kwargs) -> ClipBatch:
    """One clip (B = 1)."""
    return render_batch([seed], **kwargs)


def render_specs(specs: list[SceneSpec], device="cpu", shadows: bool = True,
                 chunk_rays: Optional[int] = None) -> ClipBatch:
    """Render already-sampled scene descriptions (all of one frame count and size)."""
    return render_prepared(prepare_specs(specs, device, chunk_rays), device, shadows=shadows)


@dataclass
class PreparedBatch:
    """The CPU half of rendering a batch: scene descriptions packed into arrays per render chunk
    and the photo textures decoded, ready for :func:`render_prepared`. Building it touches no
    device, so a background thread can prepare the next batch while the GPU renders this one."""

    specs: list
    chunks: list  # one dict of numpy arrays per render chunk (see packing.pack_arrays)
    textures: tuple  # photo files of the batch, in atlas order
    atlas: Optional[list]  # CPU mip levels of those photos (None: no photos)


def prepare_specs(specs: list[SceneSpec], device="cpu", chunk_rays: Optional[int] = None) -> PreparedBatch:
    """Pack scene descriptions for :func:`render_prepared` on ``device`` (the chunk size depends
    on the device type; nothing is moved there yet)."""
    F, H, W = specs[0].frames, specs[0].height, specs[0].width
    if any((s.frames, s.height, s.width) != (F, H, W) for s in specs):
        raise ValueError("all clips of a batch need the same frames, height and width")
    step = _chunk_clips(device, chunk_rays, F, H, W)
    used, tex_index, atlas = _batch_photos(specs, device)
    chunks = [pack_arrays(specs[i:i + step], tex_index) for i in range(0, len(specs), step)]
    return PreparedBatch(specs=list(specs), chunks=chunks, textures=used, atlas=atlas)


def prepare_seeds(seeds: list[int], frames: int = 16, height: int = 128, width: int = 128, device="cpu",
                  textures=None, intrinsics: Optional[dict] = None, dynamic: Optional[bool] = None,
                  n_objects: Optional[int] = None, motion: Optional[str] = None,
                  chunk_rays: Optional[int] = None, workers: int = 0) -> PreparedBatch:
    """Sample and pack the scenes of ``seeds`` for :func:`render_prepared` (the CPU half of
    :func:`render_batch`). ``workers >= 1``: both happen in that many worker processes, one job
    per render chunk, so this process only waits and unpickles (a thread calling this holds the
    GIL for milliseconds, not for the whole numpy sampling). Same result either way."""
    tex_files = _texture_list(textures)
    if workers < 1:
        specs = sample_specs(seeds, frames, height, width, tex_files, intrinsics, dynamic, n_objects, motion)
        return prepare_specs(specs, device, chunk_rays)
    step = _chunk_clips(device, chunk_rays, frames, height, width)
    args = [(int(s), frames, height, width, tex_files, intrinsics, dynamic, n_objects, motion) for s in seeds]
    pool = _pool(workers)
    jobs = [pool.submit(sample_and_pack, args[i:i + step]) for i in range(0, len(args), step)]
    results = [j.result() for j in jobs]
    specs = [s for chunk_specs, _ in results for s in chunk_specs]
    used, tex_index, atlas = _batch_photos(specs, device)
    for chunk_specs, arrays in results:
        remap_photos(arrays, chunk_specs, tex_index)
    return PreparedBatch(specs=specs, chunks=[arrays for _, arrays in results], textures=used, atlas=atlas)


def _chunk_clips(device, chunk_rays: Optional[int], F: int, H: int, W: int) -> int:
    """Clips per render chunk: memory per ray is a few kB with 15 primitives, so size chunks to fit."""
    if chunk_rays is None:
        chunk_rays = (1 << 23) if torch.device(device).type == "cuda" else (1 << 18)
    return max(1, chunk_rays // (F * H * W))


def _batch_photos(specs, device) -> tuple:
    """The batch's photo files (atlas order), file -> atlas slot, and the CPU atlas if ``device``
    does not have it cached yet (decoding photos is CPU work worth doing ahead)."""
    used = tuple(sorted({m.photo for s in specs for m in _materials(s) if m.pattern == "photo"}))
    atlas = _atlas_levels(used) if used and (used, str(torch.device(device))) not in _ATLAS_CACHE else None
    return used, {p: i for i, p in enumerate(used)}, atlas


def _texture_list(textures) -> list[str]:
    if isinstance(textures, (str, bytes)) or hasattr(textures, "__fspath__"):
        return list_textures(textures)
    return list(textures or [])


def render_prepared(prep: PreparedBatch, device="cpu", shadows: bool = True) -> ClipBatch:
    """Render a :class:`PreparedBatch` on ``device``."""
    device = torch.device(device)
    specs = prep.specs
    atlas = _texture_atlas(prep.textures, device, prep.atlas)
    outs, i = [], 0
    for arrays in prep.chunks:
        n = int(arrays["B"])
        outs.append(_render_chunk(specs[i:i + n], _to_device(arrays, device), device, atlas, shadows))
        i += n
    counts = [c for o in outs for c in o.pop("counts").cpu().numpy()]
    cat = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    captions = [make_caption(s, counts[i][:len(s.prims)]) for i, s in enumerate(specs)]
    return ClipBatch(rgb=cat["rgb"], depth=cat["depth"], points=cat["points"], rays=cat["rays"], c2w=cat["c2w"],
                     K=cat["K"], dynamic_mask=cat["dynamic"], captions=captions, motions=[s.motion for s in specs],
                     seeds=[s.seed for s in specs], object_ids=cat["ids"])


# ----------------------------------------------------------------------------------------
# Textures

_ATLAS_CACHE: dict = {}


@functools.lru_cache(maxsize=256)  # decoding and resizing a photo costs ~10 ms; a folder is reused
def _load_texture(path: str) -> np.ndarray:
    from PIL import Image  # only needed with photo textures

    with Image.open(path) as im:
        im = im.convert("RGB")
        s = min(im.size)  # square centre crop; random crops happen in UV space
        left, top = (im.size[0] - s) // 2, (im.size[1] - s) // 2
        im = im.crop((left, top, left + s, top + s)).resize((TEXTURE_SIZE, TEXTURE_SIZE), Image.BILINEAR)
        out = np.asarray(im, dtype=np.uint8)
        out.setflags(write=False)  # shared through the cache
        return out


def _atlas_levels(used: tuple) -> list:
    """CPU mip levels, each (T*S*S, 3) linear-light texels, of the photos ``used`` (in order)."""
    lin = torch.from_numpy((np.stack([_load_texture(p) for p in used]).astype(np.float32) / 255.0) ** 2.2)
    levels = [lin]  # mip levels by 2x2 box filtering: distant photo surfaces do not alias
    for _ in range(MIP_LEVELS - 1):
        levels.append(torch.nn.functional.avg_pool2d(levels[-1].permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1))
    return [lv.reshape(-1, 3).contiguous() for lv in levels]


def _texture_atlas(used: tuple, device, levels: Optional[list] = None) -> list:
    """The atlas of the photos ``used`` on ``device`` (``levels``: already built on the CPU)."""
    if not used:
        return [torch.zeros(1, 3, device=device)]
    key = (tuple(used), str(device))
    if key not in _ATLAS_CACHE:
        if len(_ATLAS_CACHE) > 8:
            _ATLAS_CACHE.clear()
        _ATLAS_CACHE[key] = [lv.to(device) for lv in (levels or _atlas_levels(used))]
    return _ATLAS_CACHE[key]


def _to_device(arrays: dict, device) -> dict:
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


# ----------------------------------------------------------------------------------------
# Small vector helpers on component tuples (elementwise only: results never depend on the
# batch layout, unlike matmul kernels that pick different reduction orders per shape).


def _rotT(R: torch.Tensor, v: tuple) -> tuple:
    """R^T v for R (..., 3, 3) and v a tuple of 3 broadcastable tensors."""
    return tuple(R[..., 0, i] * v[0] + R[..., 1, i] * v[1] + R[..., 2, i] * v[2] for i in range(3))


def _rot(R: torch.Tensor, v: tuple) -> tuple:
    return tuple(R[..., i, 0] * v[0] + R[..., i, 1] * v[1] + R[..., i, 2] * v[2] for i in range(3))


def _dot(a: tuple, b: tuple) -> torch.Tensor:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cand(t: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    return torch.where(ok & (t > EPS), t, torch.full_like(t, math.inf))


def _safe(x: torch.Tensor) -> torch.Tensor:
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
        inv = 1.0 / _safe(d[i])
        a, b = (-size[..., i] - o[i]) * inv, (size[..., i] - o[i]) * inv
        lo, hi = torch.minimum(a, b), torch.maximum(a, b)
        tn = lo if tn is None else torch.maximum(tn, lo)
        tf = hi if tf is None else torch.minimum(tf, hi)
    hit = tn <= tf
    return torch.minimum(_cand(tn, hit), _cand(tf, hit))


def _hit_cylinder(o, d, size, caps=True):
    r, h = size[..., 0], size[..., 1]
    a = _safe(d[0] * d[0] + d[1] * d[1])
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
        dz = _safe(d[2])
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
    tt = (-h - o[2]) / _safe(d[2])
    x, y = o[0] + tt * d[0], o[1] + tt * d[1]
    return torch.minimum(t, _cand(tt, x * x + y * y <= r * r))


def _hit_capsule(o, d, size):
    h = size[..., 1]
    t = _hit_cylinder(o, d, size, caps=False)
    return torch.minimum(t, torch.minimum(_hit_sphere(o, d, size, h), _hit_sphere(o, d, size, -h)))


def _hit_torus(o, d, size):
    """Sphere tracing of the exact torus SDF inside its bounding sphere (no overshoot)."""
    R, r = size[..., 0], size[..., 1]
    b = _dot(o, d)
    c = _dot(o, o) - (R + r) ** 2
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


def _normal_of_kind(k: str, p: tuple, size: torch.Tensor) -> tuple:
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
        return torch.where((_dot(q, axis).remainder(1) < 0.5)[:, None], b, a) * (1 - fade) + 0.5 * (a + b) * fade
    if name == "noise":
        s = 0.65 * _value_noise(q) + 0.35 * _value_noise(tuple(c * 2.7 for c in q))
        return b + (a - b) * s[:, None]
    if name == "gradient":
        g = (0.5 + 0.2 * _dot(p, axis) / scale).clamp(0, 1)
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


def _albedo(mat: torch.Tensor, p: tuple, n: tuple, fp: torch.Tensor, atlas: list) -> torch.Tensor:
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
# Casting rays against every primitive of a chunk


def _cast(pk: dict, o: tuple, d: tuple, bi: torch.Tensor, fi: torch.Tensor, t_max=None, want_index=True,
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
        c = _dot(oc, oc) - pk["radius2"].repeat_interleave(F, dim=0)
        b = _dot(tuple(x[:, None, :] for x in oc), tuple(v.view(BF, -1, 1) for v in d))  # (BF, P, N)
        disc = (b * b - c[:, None, :]).view(M, N)
        b = b.view(M, N)
    else:
        pos = pk["pos_bf"].index_select(0, bi * F + fi)  # (M, N, 3)
        oc = tuple(o[i][:, None] - pos[..., i] for i in range(3))
        b = _dot(oc, tuple(c[:, None] for c in d))
        c = _dot(oc, oc) - pk["radius2"].index_select(0, bi)
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
        ol = _rotT(R, tuple(o[i].index_select(0, r) - T[:, i] for i in range(3)))
        dl = _rotT(R, tuple(c.index_select(0, r) for c in d))
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


# ----------------------------------------------------------------------------------------
# Rendering one chunk of clips


def _render_chunk(specs, pk: dict, device, atlas, shadows: bool) -> dict:
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
    dw = tuple(flat(c) for c in _rot(pk["c2w_scene"][:, :, None, :3, :3], dc))  # world directions (M,)
    ow = tuple(flat(pk["c2w_scene"][:, :, i, 3][..., None]) for i in range(3))
    bi = flat(torch.arange(B, device=device)[:, None, None])
    fi = flat(torch.arange(F, device=device)[None, :, None])

    t_obj, slot = _cast(pk, ow, dw, bi, fi, camera_rays=True)

    # Room (the camera is inside an axis-aligned box) or open ground (a disc at z = 0); sky.
    room = pk["room"].index_select(0, bi)
    inf = torch.full_like(t_obj, math.inf)
    tx = (torch.where(dw[0] > 0, room[:, 0], -room[:, 0]) / 2 - ow[0]) / _safe(dw[0])
    ty = (torch.where(dw[1] > 0, room[:, 1], -room[:, 1]) / 2 - ow[1]) / _safe(dw[1])
    tfloor = torch.where(dw[2] < 0, -ow[2] / _safe(dw[2]), inf)
    ttop = torch.where(dw[2] > 0, (room[:, 2] - ow[2]) / _safe(dw[2]), inf)
    is_open = pk["open"].index_select(0, bi)
    tx, ty, ttop = (torch.where(is_open, inf, x) for x in (tx, ty, ttop))
    t_env, face = torch.stack([tfloor, tx, ty, ttop], dim=-1).min(dim=-1)  # 0 floor, 1/2 walls, 3 top
    gx, gy = ow[0] + tfloor * dw[0], ow[1] + tfloor * dw[1]
    off_ground = is_open & ((gx * gx + gy * gy) > room[:, 0] ** 2)
    no_ceiling = (face == 3) & ~pk["ceiling"].index_select(0, bi)
    t_env = torch.where(off_ground | no_ceiling, inf, t_env)
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
    pl = _rotT(R, tuple(xw[i] - T[:, i] for i in range(3)))
    nl = [torch.zeros_like(xw[0]) for _ in range(3)]
    kind = pk["kind_rows"].index_select(0, hb * N + hs)
    size_h = pk["size_rows"].index_select(0, hb * N + hs)
    for k, name in enumerate(KINDS):
        sel = (ho & (kind == k)).nonzero()[:, 0]
        if sel.numel():
            nk = _normal_of_kind(name, tuple(c.index_select(0, sel) for c in pl), size_h.index_select(0, sel))
            for i in range(3):
                nl[i].index_copy_(0, sel, nk[i])
    norm = torch.sqrt(_dot(nl, nl)).clamp_min(1e-12)
    nl = tuple(c / norm for c in nl)
    n_obj = _rot(R, nl)
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
    fp = t.index_select(0, hit) * pix_angle / _dot(n, hd).abs().clamp_min(0.15)
    albedo = _albedo(pk["mat_rows"].index_select(0, hb * (N + 3) + mat_id), tex_p, tex_n, fp, atlas)

    # Lambertian: ambient + 1-2 lights, hard shadows cast by the primitives.
    facing = torch.where(_dot(n, hd) > 0, -one, one)
    n = tuple(c * facing for c in n)
    light = pk["ambient"].index_select(0, hb).clone()
    for li in range(2):
        lk = pk["light_kind"][:, li].index_select(0, hb)
        if not bool((lk > 0).any()):
            continue
        lv = pk["light_vec"][:, li].index_select(0, hb)
        to_l = tuple(torch.where(lk == 1, lv[:, i] - xw[i], -lv[:, i]) for i in range(3))
        dist2 = _dot(to_l, to_l).clamp_min(1e-12)
        dist = torch.sqrt(dist2)
        ldir = tuple(c / dist for c in to_l)
        w = _dot(n, ldir).clamp_min(0) * torch.where(lk == 1, 1.0 / dist2, one) * (lk > 0)
        if shadows:
            lit = (w > 0).nonzero()[:, 0]
            so = tuple(xw[i].index_select(0, lit) + SHADOW_OFFSET * n[i].index_select(0, lit) for i in range(3))
            tmax = torch.where(lk.index_select(0, lit) == 1, dist.index_select(0, lit), inf[:1].expand(lit.shape[0]))
            sub = lambda x: x.index_select(0, lit)  # noqa: E731
            ts, _ = _cast(pk, so, tuple(map(sub, ldir)), sub(hb), sub(hf), t_max=tmax, want_index=False)
            w.index_copy_(0, lit, torch.where(torch.isinf(ts), sub(w), zero[:1]))
        light = light + w[:, None] * pk["light_col"][:, li].index_select(0, hb)
    col_hit = albedo * light
    fog = torch.where(pk["open"].index_select(0, hb), 1 - torch.exp(-t.index_select(0, hit) / GROUND_FOG), zero)
    col_hit = col_hit * (1 - fog[:, None]) + pk["sky"][:, 0].index_select(0, hb) * fog[:, None]

    # Sky gradient by elevation, then the surface pixels on top.
    up = dw[2].clamp(0, 1).sqrt()[:, None]
    col = pk["sky"][:, 0].index_select(0, bi) * (1 - up) + pk["sky"][:, 1].index_select(0, bi) * up
    col.index_copy_(0, hit, col_hit)
    rgb = col.clamp(0, 1).pow(1 / 2.2).mul(255).round().to(torch.uint8)

    # Ground truth in the frame-0 camera: X = c_rel + t (R_rel d_cam); depth = t * (d . z_cam).
    d0 = tuple(flat(c) for c in _rot(pk["c2w_rel"][:, :, None, :3, :3], dc))
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


# ----------------------------------------------------------------------------------------
# Bundles


def clip_to_bundle(batch: ClipBatch, i: int = 0, fps: float = 24.0):
    """Clip ``i`` of ``batch`` as a ground-truth result bundle (backend.bundle.Bundle)."""
    from ..bundle import Bundle, CameraFrame, DepthFrame, PointFrame

    rgb = batch.rgb[i].cpu().numpy()
    depth = batch.depth[i].cpu().numpy()
    pts_cam0 = batch.points[i].cpu().numpy()
    c2w = batch.c2w[i].cpu().numpy().astype(np.float64)
    K = batch.K[i].cpu().numpy().astype(np.float64)
    F, H, W = depth.shape
    # Re-orthonormalise in float64: the float32 rotation must pass the bundle's rotation check.
    for f in range(F):
        U, _, Vt = np.linalg.svd(c2w[f, :3, :3])
        c2w[f, :3, :3] = U @ Vt
    cams = [CameraFrame(index=f, c2w=c2w[f], fx=float(K[f, 0, 0]), fy=float(K[f, 1, 1]),
                        cx=float(K[f, 0, 2]), cy=float(K[f, 1, 2])) for f in range(F)]
    points, depths = [], []
    for f in range(F):
        valid = np.isfinite(depth[f])
        xyz = pts_cam0[f][valid].astype(np.float32)  # world = frame-0 camera already
        points.append(PointFrame(xyz=xyz, rgb=rgb[f][valid], conf=np.ones(len(xyz), np.float16)))
        depths.append(DepthFrame(depth=depth[f].astype(np.float32), conf=valid.astype(np.float16)))
    return Bundle(task="ground_truth", width=W, height=H, frame_count=F, fps=float(fps), engine="synthetic",
                  model_id="parallax-synth", frames=[rgb[f] for f in range(F)], cameras=cams, points=points,
                  depth=depths, source={"seed": int(batch.seeds[i]), "caption": batch.captions[i],
                                        "motion": batch.motions[i]})


def clip_ground_truth(batch: ClipBatch, i: int = 0) -> dict:
    """Clip ``i``'s full ground truth as numpy arrays (for the ``gt/`` npz beside a bundle)."""
    out = {k: getattr(batch, k)[i].cpu().numpy() for k in ("depth", "points", "rays", "c2w", "K", "dynamic_mask")}
    if batch.object_ids is not None:
        out["object_ids"] = batch.object_ids[i].cpu().numpy()
    return out
