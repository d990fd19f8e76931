"""Time DUSt3R-style global alignment: 300 iterations on 16 frames (JOG3R (1, f) star: 30 point maps).

    python benchmarks/ga_bench.py [--sizes 64x64,288x512] [--device cpu|cuda|auto] [--ops]

Prints, per device and size and loop kind, the seconds of the initialisation and of the 300
iterations (after a warm-up run, with torch.cuda.synchronize), the same with a progress callback
(a report every 25 iterations, each after a host sync on CUDA), and the pose error reached, so a
fast run is also a correct one. Loop kinds: "eager" (one Python iteration launching every op) and, on
CUDA, "graph" (the whole step captured once as a CUDA graph and replayed: the default there).
``--ops`` also counts the top-level tensor ops per iteration on the CPU (torch.profiler).
GPU target: <= 1 s per 300 iterations at 64x64.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the repository root for ``backend``; tests/ for the synthetic scenes, a test fixture shared with
# the geometry tests (``backend_tests.synthetic_geometry``, as tests/conftest.py imports it)
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import torch  # noqa: E402

from backend.geometry.alignment import global_align, star_graph  # noqa: E402
from backend.geometry.metrics import pairwise_metrics  # noqa: E402
from backend.geometry.optim import AdamSettings  # noqa: E402
from backend_tests.synthetic_geometry import graph_views, make_clip  # noqa: E402

# ops that only make views or read metadata: no kernel on CUDA
_NO_KERNEL = {"aten::" + n for n in (
    "transpose unsqueeze squeeze reshape expand select slice narrow t detach view as_strided alias unbind permute "
    "_reshape_alias empty empty_strided resize_ lift_fresh _unsafe_view expand_as item _local_scalar_dense "
    "is_nonzero resolve_conj resolve_neg to result_type is_same_size").split()}


def ops_per_iteration(frames: int = 16, size: int = 64) -> tuple[float, float]:
    """(top-level aten ops, of which compute ops) per iteration on the CPU, from 10 vs 30 iterations."""
    from torch.profiler import ProfilerActivity, profile

    clip = make_clip(frames, size, size, seed=0)
    frame, group = star_graph(frames)
    P, C = graph_views(clip, frame, group, rel_noise=0.005, outlier_frac=0.1, seed=0)

    def count(n):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            global_align(P.float(), C.float(), frame, group, adam=AdamSettings(n_iters=n))
        top = [e for e in prof.events() if e.name.startswith("aten::")
               and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))]
        return len(top), sum(e.name not in _NO_KERNEL for e in top)

    (a0, a1), (b0, b1) = count(10), count(30)
    return (b0 - a0) / 20, (b1 - a1) / 20


def bench(device: str, height: int, width: int, frames: int, iters: int, repeats: int, graph: bool) -> dict:
    clip = make_clip(frames, height, width, seed=0)
    frame, group = star_graph(frames)
    P, C = graph_views(clip, frame, group, rel_noise=0.005, outlier_frac=0.1, seed=0)
    P, C = P.float().to(device), C.float().to(device)
    kw = dict(cuda_graph=graph)
    global_align(P, C, frame, group, adam=AdamSettings(n_iters=5), **kw)  # warm-up (CUDA context, kernels, allocator)
    best = None
    for _ in range(repeats):
        res = global_align(P, C, frame, group, adam=AdamSettings(n_iters=iters), **kw)
        if best is None or res.timings["optimise"] < best.timings["optimise"]:
            best = res
    with_cb = global_align(P, C, frame, group, adam=AdamSettings(n_iters=iters), progress=lambda f, label: True, **kw)
    m = pairwise_metrics(best.c2w, clip["c2w"])
    return {"device": device, "size": f"{height}x{width}", "views": int(P.shape[0]),
            "loop": "graph" if best.cuda_graph else "eager",
            "init_s": best.timings["init"], "optimise_s": best.timings["optimise"],
            "optimise_with_callback_s": with_cb.timings["optimise"], "rot_err": m["rot_err"], "RRA@5": m["RRA@5"],
            "final_loss": best.losses[-1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=None, help="HxW list; default 64x64 on CPU, 64x64,288x512 on CUDA")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                    help="auto: CUDA when there is one, else the CPU")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--ops", action="store_true", help="also count ops per iteration on the CPU (profiler)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        devices = ["cuda"] if torch.cuda.is_available() else ["cpu"]
    else:
        devices = [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        print("CUDA not available")
        return 1
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, "
          f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    if args.ops:
        top, compute = ops_per_iteration(args.frames)
        print(f"ops per iteration (CPU, torch.profiler, {args.frames} frames 64x64): {top:.0f} top-level aten calls, "
              f"{compute:.0f} of them compute ops (each >= 1 kernel on CUDA)")
    print(f"{'device':6} {'size':>8} {'views':>5} {'loop':>5} {'init s':>8} {str(args.iters) + ' it s':>9} "
          f"{'+callback s':>11} {'rot err':>8} {'RRA@5':>6} {'loss':>9}")
    for device in devices:
        sizes = args.sizes or ("64x64" if device == "cpu" else "64x64,288x512")
        for size in sizes.split(","):
            h, w = (int(x) for x in size.lower().split("x"))
            for graph in ([False, True] if device == "cuda" else [False]):
                r = bench(device, h, w, args.frames, args.iters, args.repeats, graph)
                flag = "" if (r["loop"] == "graph") == graph else "  (CUDA graph capture FAILED: eager fallback)"
                print(f"{r['device']:6} {r['size']:>8} {r['views']:>5} {r['loop']:>5} {r['init_s']:8.3f} "
                      f"{r['optimise_s']:9.3f} {r['optimise_with_callback_s']:11.3f} {r['rot_err']:8.3f} "
                      f"{r['RRA@5']:6.2f} {r['final_loss']:9.5f}{flag}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
