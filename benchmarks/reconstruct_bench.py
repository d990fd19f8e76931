"""Reconstruct (Geo4D) time and memory for one N-frame clip: seconds per frame by stage, peak host
RSS and, on CUDA, peak GPU memory, on a held-out synthetic dynamic clip, on whatever device is
present.

``python benchmarks/reconstruct_bench.py [--frames 240] [--device cuda] [--chunk-frames 64]``

A warm-up run on a short clip comes first on CUDA (kernels, cuDNN, CUDA-graph pools) and is not
counted. Peak RSS is the process's high-water mark, printed before the run too (rendering the
clip, which grows with its length, happens first); peak GPU memory is
``torch.cuda.max_memory_allocated`` over the measured run only. Long clips show whether memory
stays bounded: it should grow with ``--chunk-frames``, not with ``--frames``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import torch

    from backend.data.splits import heldout_seeds
    from backend.data.synth import render_batch
    from backend.pipelines.reconstruct import CHUNK_FRAMES, Reconstructor
    from backend.runtime import pick_device

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=240, help="frames of the clip (default 240)")
    p.add_argument("--size", type=int, default=128, help="rendered frame size in pixels (default 128)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--iterations", type=int, default=500, help="joint alignment iterations (default 500)")
    p.add_argument("--chunk-frames", type=int, default=CHUNK_FRAMES, help=f"default {CHUNK_FRAMES}")
    p.add_argument("--seed-offset", type=int, default=0, help="held-out seed offset (default 0)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (on a shared 2-core machine 1 is fastest: 2 threads under load ran the "
                        "network 3-4x slower)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = pick_device(a.device)
    t0 = time.perf_counter()
    clip = render_batch(heldout_seeds(1, start=a.seed_offset), frames=a.frames, height=a.size, width=a.size,
                        device=str(dev), dynamic=True)
    frames = clip.rgb[0].cpu().numpy()
    render_s = time.perf_counter() - t0
    rec = Reconstructor(device=dev)
    rec.model  # noqa: B018 - load outside the timing
    if dev.type == "cuda":
        rec.reconstruct_maps(frames[:20], iterations=a.iterations)  # warm-up, not counted
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    out = rec.reconstruct_maps(frames, iterations=a.iterations, chunk_frames=a.chunk_frames)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    report = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(), "frames": a.frames, "size": a.size, "iterations": a.iterations,
        "chunk_frames": a.chunk_frames, "chunks": out.chunks, "windows": len(out.windows),
        "dropped_windows": len(out.dropped), "seconds": round(seconds, 2),
        "s_per_frame": round(seconds / a.frames, 4),
        "stages_s": {k: round(v, 3) for k, v in out.timings.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        # the high-water mark before the run (model loaded, clip rendered): what the run itself added
        "peak_rss_before_run_mb": round(rss_before, 1),
        "render_s": round(render_s, 2),
    }
    if dev.type == "cuda":
        report["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
