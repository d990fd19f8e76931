"""Throughput of the synthetic data engine: clips/s for 16x128x128 clips with 10 objects.

    python benchmarks/synth_bench.py [--device cpu|cuda|all] [--clips N] [--batch B] [--workers K]

Prints, per device, in clips per second:
- sampling: numpy scene descriptions, in 1 process and in K worker processes;
- render only: ``render_specs`` on pre-sampled scenes (packing + ray casting), and
  ``render_prepared`` on pre-packed batches (what the GPU loop costs once the CPU work is hidden);
- end to end, no prefetch: ``render_batch(seeds)`` per batch (sampling, then rendering);
- end to end with prefetch: ``render_stream`` (the next batches are sampled and packed in a
  background thread while this one renders), with sampling in that thread and with sampling in
  K worker processes;
and whether the prefetched clips are bit-identical to ``render_batch``'s. Procedural textures
(no photo folder) unless --textures is given. The GPU target is >= 200 clips/s end to end on one H100.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from backend.data.synth import (prepare_specs, render_batch, render_prepared, render_specs,  # noqa: E402
                                render_stream, sample_specs, shutdown_pools)

KEYS = ("rgb", "depth", "points", "rays", "c2w", "K", "dynamic_mask", "object_ids")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _same(a, b) -> bool:
    for k in KEYS:
        x, y = getattr(a, k), getattr(b, k)
        if not (torch.equal(x.nan_to_num(), y.nan_to_num()) if x.is_floating_point() else torch.equal(x, y)):
            return False
    return a.captions == b.captions


def _timed(fn, device: str) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def bench(device: str, clips: int, batch: int, textures, frames=16, size=128, objects=10, workers=0) -> dict:
    seeds = list(range(1000, 1000 + clips))
    batches = [seeds[i:i + batch] for i in range(0, clips, batch)]
    kw = dict(frames=frames, height=size, width=size, textures=textures, n_objects=objects)
    r = {"device": device, "clips": clips, "batch": batch, "workers": workers}

    t = _timed(lambda: sample_specs(seeds, frames, size, size, textures, n_objects=objects), device)
    r["sample_1proc"] = clips / t
    if workers > 1:  # start the pool (spawning costs seconds) before timing it
        sample_specs(seeds[:4 * workers], frames, size, size, textures, n_objects=objects, workers=workers)
        t = _timed(lambda: sample_specs(seeds, frames, size, size, textures, n_objects=objects, workers=workers),
                   device)
        r["sample_pool"] = clips / t

    specs = sample_specs(seeds, frames, size, size, textures, n_objects=objects, workers=workers)
    render_specs(specs[:batch], device=device)  # warm-up: kernels, allocator, texture atlas
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    c0 = time.process_time()
    t = _timed(lambda: [render_specs(specs[i:i + batch], device=device) for i in range(0, clips, batch)], device)
    r["render_specs"] = clips / t
    r["render_cpu_s_per_clip"] = (time.process_time() - c0) / clips
    preps = [prepare_specs(specs[i:i + batch], device) for i in range(0, clips, batch)]
    t = _timed(lambda: [render_prepared(p, device) for p in preps], device)
    r["render_prepared"] = clips / t
    preps = specs = None  # free them before the next measurements

    t = _timed(lambda: [render_batch(b, device=device, workers=workers, **kw) for b in batches], device)
    r["e2e_no_prefetch"] = clips / t  # sampling (in the worker pool when workers > 1), then rendering

    def stream(w):
        for out in render_stream(batches, device=device, workers=w, prefetch=2, **kw):
            del out

    r["e2e_prefetch_thread"] = clips / _timed(lambda: stream(0), device)
    if workers > 1:
        r["e2e_prefetch_pool"] = clips / _timed(lambda: stream(workers), device)
    r["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 1e9 if device.startswith("cuda") else None

    # Determinism: the prefetched stream (thread and pool) gives render_batch's clips bit for bit.
    check = batches[:2]
    direct = [render_batch(b, device=device, **kw) for b in check]
    same = all(_same(a, b) for a, b in zip(render_stream(check, device=device, prefetch=2, **kw), direct))
    if workers > 1:
        same &= all(_same(a, b) for a, b in zip(render_stream(check, device=device, workers=workers, prefetch=2,
                                                              **kw), direct))
    r["identical"] = same
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="all", help="cpu, cuda or all")
    p.add_argument("--clips", type=int, default=None, help="clips per device (default: 8 on CPU, 512 on CUDA)")
    p.add_argument("--batch", type=int, default=None, help="clips per render call (default: 2 CPU, 64 CUDA)")
    p.add_argument("--textures", help="photo texture folder")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--objects", type=int, default=10)
    p.add_argument("--workers", type=int, default=None,
                   help="processes sampling scene descriptions (default: 0 on CPU, min(8, cores) with CUDA)")
    a = p.parse_args()
    devices = ["cpu", "cuda"] if a.device == "all" else [a.device]
    if "cuda" in devices and not torch.cuda.is_available():
        print("CUDA not available: skipping the GPU figures")
        devices.remove("cuda")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores, CPU threads {torch.get_num_threads()}")
    for dev in devices:
        gpu = dev.startswith("cuda")
        clips = a.clips or (512 if gpu else 8)
        batch = a.batch or (64 if gpu else 2)
        workers = a.workers if a.workers is not None else (min(8, os.cpu_count() or 1) if gpu else 0)
        r = bench(dev, clips, batch, a.textures, a.frames, a.size, a.objects, workers)
        name = torch.cuda.get_device_name() if gpu else f"CPU ({torch.get_num_threads()} threads)"
        print(f"[{name}] {clips} clips of {a.frames}x{a.size}x{a.size}, {a.objects} objects, batch {batch}"
              f"{', photo textures' if a.textures else ''} (clips/s):")
        rows = [("sampling, 1 process", r["sample_1proc"]),
                (f"sampling, {workers} worker processes", r.get("sample_pool")),
                ("render only: render_specs (pack + render)", r["render_specs"]),
                ("render only: render_prepared (pre-packed)", r["render_prepared"]),
                (f"END TO END, no prefetch (render_batch, workers={workers})", r["e2e_no_prefetch"]),
                ("END TO END, prefetch, sampling in the thread", r["e2e_prefetch_thread"]),
                (f"END TO END, prefetch, sampling in {workers} processes", r.get("e2e_prefetch_pool"))]
        for label, v in rows:
            if v is not None:
                print(f"  {label:52s} {v:9.2f}")
        print(f"  prefetched clips bit-identical to render_batch: {'yes' if r['identical'] else 'NO'}")
        if gpu:
            print(f"  peak GPU memory {r['peak_mem_gb']:.1f} GB")
        else:
            print(f"  render CPU time {r['render_cpu_s_per_clip']:.2f} s/clip over all threads")
    shutdown_pools()


if __name__ == "__main__":
    main()
