"""The synthetic 4D data engine's clip API: seeds -> rendered ground-truth clips (CPU and CUDA).

``render_batch(seeds, ...)`` samples one :class:`~backend.data.scene.SceneSpec` per seed
(plain numpy, shared with the Cycles exporter), packs the batch into arrays
(``packing.py``), and renders every pixel of every frame of every clip at once
(``render.py``: ray casting in ``raycast.py``, materials and light in ``shading.py``, photos
from ``textures.py``). Outputs are exact ground truth for the pixel centres:

- ``depth``: z-depth in each frame's camera (+inf for sky);
- ``points``: each pixel's 3D point in the frame-0 camera (NaN for sky);
- ``rays``: Plücker rays (unit direction, moment c x d) in the frame-0 camera;
- ``c2w``: camera-to-world with world = frame-0 camera; ``K``: pixel intrinsics.

Deterministic by seed; a clip does not depend on the other clips of its batch. The CPU half
(sampling, packing, photo decoding: :func:`prepare_seeds`) and the device half
(:func:`render_prepared`) can run apart, which :func:`render_stream` overlaps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

import torch

from .captions import make_caption
from .packing import pack_arrays, remap_photos, sample_and_pack
from .pools import process_pool, shutdown_pools
from .prefetch import Prefetcher
from .render import render_chunk, to_device
from .scene import SceneSpec, _sample_scene_args, sample_scene
from .splits import HELDOUT_SEED_START
from .splits import sample_train_seeds as _sample_train_seeds_np
from .textures import batch_photos, texture_atlas, texture_files

__all__ = ["HELDOUT_SEED_START", "ClipBatch", "PreparedBatch", "prepare_seeds", "prepare_specs", "render_batch",
           "render_clip", "render_prepared", "render_specs", "render_stream", "sample_specs", "sample_train_seeds",
           "shutdown_pools"]


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


def sample_specs(seeds, frames=16, height=128, width=128, textures=None, intrinsics=None, dynamic=None,
                 n_objects=None, motion=None, workers: int = 0) -> list[SceneSpec]:
    """Scene descriptions for ``seeds`` (``backend.data.scene.sample_scene``), optionally in a
    persistent pool of ``workers`` processes (spawned: they import numpy only, never CUDA)."""
    tex_files = texture_files(textures)
    args = [(int(s), frames, height, width, tex_files, intrinsics, dynamic, n_objects, motion) for s in seeds]
    if workers <= 1 or len(args) < 2 * workers:
        return [sample_scene(*a) for a in args]
    return list(process_pool(workers).map(_sample_scene_args, args, chunksize=max(1, len(args) // (4 * workers))))


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
    tex_files = texture_files(textures)

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
    used, tex_index, atlas = batch_photos(specs, device)
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
    tex_files = texture_files(textures)
    if workers < 1:
        specs = sample_specs(seeds, frames, height, width, tex_files, intrinsics, dynamic, n_objects, motion)
        return prepare_specs(specs, device, chunk_rays)
    step = _chunk_clips(device, chunk_rays, frames, height, width)
    args = [(int(s), frames, height, width, tex_files, intrinsics, dynamic, n_objects, motion) for s in seeds]
    pool = process_pool(workers)
    jobs = [pool.submit(sample_and_pack, args[i:i + step]) for i in range(0, len(args), step)]
    results = [j.result() for j in jobs]
    specs = [s for chunk_specs, _ in results for s in chunk_specs]
    used, tex_index, atlas = batch_photos(specs, device)
    for chunk_specs, arrays in results:
        remap_photos(arrays, chunk_specs, tex_index)
    return PreparedBatch(specs=specs, chunks=[arrays for _, arrays in results], textures=used, atlas=atlas)


def _chunk_clips(device, chunk_rays: Optional[int], F: int, H: int, W: int) -> int:
    """Clips per render chunk: memory per ray is a few kB with 15 primitives, so size chunks to fit."""
    if chunk_rays is None:
        chunk_rays = (1 << 23) if torch.device(device).type == "cuda" else (1 << 18)
    return max(1, chunk_rays // (F * H * W))


def render_prepared(prep: PreparedBatch, device="cpu", shadows: bool = True) -> ClipBatch:
    """Render a :class:`PreparedBatch` on ``device``."""
    device = torch.device(device)
    specs = prep.specs
    atlas = texture_atlas(prep.textures, device, prep.atlas)
    outs, i = [], 0
    for arrays in prep.chunks:
        n = int(arrays["B"])
        outs.append(render_chunk(specs[i:i + n], to_device(arrays, device), device, atlas, shadows))
        i += n
    counts = [c for o in outs for c in o.pop("counts").cpu().numpy()]
    cat = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    captions = [make_caption(s, counts[i][:len(s.prims)]) for i, s in enumerate(specs)]
    return ClipBatch(rgb=cat["rgb"], depth=cat["depth"], points=cat["points"], rays=cat["rays"], c2w=cat["c2w"],
                     K=cat["K"], dynamic_mask=cat["dynamic"], captions=captions, motions=[s.motion for s in specs],
                     seeds=[s.seed for s in specs], object_ids=cat["ids"])
