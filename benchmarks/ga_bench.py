"""Time DUSt3R-style global alignment: 300 iterations on 16 frames (JOG3R (1, f) star: 30 point maps).

    .venv/bin/python benchmarks/ga_bench.py [--sizes 64x64,288x512] [--device cpu|cuda|auto]

Prints, per device and size, the seconds of the initialisation and of the optimisation loop,
without and with a per-iteration progress callback (which reads the loss, a GPU sync per step),
and the pose error reached, so a fast run is also a correct one. GPU target: <= 1 s per 300 iterations.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from backend.geometry.alignment import global_align, star_graph  # noqa: E402
from backend.geometry.metrics import pairwise_metrics  # noqa: E402
from backend.geometry.synthetic import graph_views, make_clip  # noqa: E402


def bench(device: str, height: int, width: int, frames: int, iters: int, repeats: int) -> dict:
    clip = make_clip(frames, height, width, seed=0)
    frame, group = star_graph(frames)
    P, C = graph_views(clip, frame, group, rel_noise=0.005, outlier_frac=0.1, seed=0)
    P, C = P.float().to(device), C.float().to(device)
    global_align(P, C, frame, group, n_iters=5)  # warm-up (CUDA context, kernels, allocator)
    best = None
    for _ in range(repeats):
        res = global_align(P, C, frame, group, n_iters=iters)
        if best is None or res.timings["optimise"] < best.timings["optimise"]:
            best = res
    with_cb = global_align(P, C, frame, group, n_iters=iters, callback=lambda it, n, loss: True)
    m = pairwise_metrics(best.c2w, clip["c2w"])
    return {"device": device, "size": f"{height}x{width}", "views": int(P.shape[0]),
            "init_s": best.timings["init"], "optimise_s": best.timings["optimise"],
            "optimise_with_callback_s": with_cb.timings["optimise"], "rot_err": m["rot_err"], "RRA@5": m["RRA@5"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=None, help="HxW list; default 64x64 on CPU, 64x64,288x512 on CUDA")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "auto" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    print(f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, "
          f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    print(f"{'device':6} {'size':>8} {'views':>5} {'init s':>8} {args.iters:>4} it s {'+callback s':>11} "
          f"{'rot err':>8} {'RRA@5':>6}")
    for device in devices:
        sizes = args.sizes or ("64x64" if device == "cpu" else "64x64,288x512")
        for size in sizes.split(","):
            h, w = (int(x) for x in size.lower().split("x"))
            r = bench(device, h, w, args.frames, args.iters, args.repeats)
            print(f"{r['device']:6} {r['size']:>8} {r['views']:>5} {r['init_s']:8.3f} {r['optimise_s']:9.3f} "
                  f"{r['optimise_with_callback_s']:11.3f} {r['rot_err']:8.3f} {r['RRA@5']:6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
