"""Throughput of the synthetic data engine: clips/s for 16x128x128 clips with 10 objects.

    .venv/bin/python benchmarks/synth_bench.py [--device cpu|cuda|all] [--clips N] [--batch B]

Prints, per device: scene sampling (numpy, one process), rendering of pre-sampled scenes, and
end to end (``render_batch``), in clips per second. Procedural textures (no photo folder) unless
--textures is given. The GPU target is 200 clips/s on one H100.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from backend.data.synth import render_specs, sample_specs  # noqa: E402


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(device: str, clips: int, batch: int, textures, frames=16, size=128, objects=10, workers=0) -> dict:
    seeds = list(range(1000, 1000 + clips))
    t0 = time.perf_counter()
    specs = sample_specs(seeds, frames, size, size, textures, n_objects=objects)
    t_sample = time.perf_counter() - t0
    if workers > 1:  # a process pool only pays off with many cores: keep the faster way
        sample_specs(seeds[:4 * workers], frames, size, size, textures, n_objects=objects, workers=workers)  # start
        t0 = time.perf_counter()
        sample_specs(seeds, frames, size, size, textures, n_objects=objects, workers=workers)
        t_pool = time.perf_counter() - t0
        print(f"  sampling: {clips / t_sample:.0f} clips/s in 1 process, {clips / t_pool:.0f} clips/s with "
              f"{workers} worker processes")
        t_sample = min(t_sample, t_pool)
    render_specs(specs[:min(batch, clips)], device=device)  # warm-up (kernels, texture atlas)
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, clips, batch):
        out = render_specs(specs[i:i + batch], device=device)
        del out
    _sync(device)
    t_render = time.perf_counter() - t0
    cpu_render = time.process_time() - c0  # this process's CPU seconds: robust to a busy shared machine
    return {"device": device, "clips": clips, "sample_clips_s": clips / t_sample, "render_clips_s": clips / t_render,
            "end_to_end_clips_s": clips / (t_sample + t_render),
            "render_cpu_s_per_clip": cpu_render / clips,
            "peak_mem_gb": torch.cuda.max_memory_allocated() / 1e9 if device.startswith("cuda") else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="all", help="cpu, cuda or all")
    p.add_argument("--clips", type=int, default=None, help="clips per device (default: 4 on CPU, 512 on CUDA)")
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
        print("CUDA not available: skipping the GPU figure")
        devices.remove("cuda")
    for dev in devices:
        gpu = dev.startswith("cuda")
        clips = a.clips or (512 if gpu else 4)
        batch = a.batch or (64 if gpu else 2)
        workers = a.workers if a.workers is not None else (min(8, os.cpu_count() or 1) if gpu else 0)
        r = bench(dev, clips, batch, a.textures, a.frames, a.size, a.objects, workers)
        name = torch.cuda.get_device_name() if gpu else f"CPU ({torch.get_num_threads()} threads)"
        print(f"[{name}] {clips} clips of {a.frames}x{a.size}x{a.size}, {a.objects} objects, batch {batch}: "
              f"sampling {r['sample_clips_s']:.1f} clips/s, rendering {r['render_clips_s']:.2f} clips/s, "
              f"end to end {r['end_to_end_clips_s']:.2f} clips/s"
              + ("" if gpu else f" (render CPU time {r['render_cpu_s_per_clip']:.1f} s/clip over all threads)")
              + (f", peak GPU memory {r['peak_mem_gb']:.1f} GB" if gpu else ""))


if __name__ == "__main__":
    main()
