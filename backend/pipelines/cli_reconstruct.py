"""``python -m backend reconstruct CLIP --out DIR``: a dynamic scene (Geo4D) from a clip.

Prints progress lines, writes a result bundle (atomically) and a summary with measured figures;
on failure prints one line ``error: ...`` and exits non-zero (1 for bad input, 130 when
cancelled or interrupted).
"""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("source", help="a video file, a folder of images, or one image file")
    p.add_argument("--out", required=True, help="the result bundle directory to write")
    p.add_argument("--start", type=int, default=0, help="first frame to use")
    p.add_argument("--stride", type=int, default=1, help="use every STRIDE-th frame")
    p.add_argument("--max-frames", type=int, default=None, help="use at most this many frames")
    p.add_argument("--window-stride", type=int, default=None,
                   help="frames between window starts, below the window's length (default Geo4D's 4)")
    p.add_argument("--chunk-frames", type=int, default=64,
                   help="frames aligned together; longer clips are chained chunk by chunk (default 64)")
    p.add_argument("--iterations", type=int, default=500, help="Adam iterations of the joint alignment (default 500)")
    p.add_argument("--pointmaps-only", action="store_true",
                   help="align the point maps alone (no disparity, ray or smoothness terms)")
    p.add_argument("--fps", type=float, default=None, help="frame rate to record (default: the video's)")
    p.add_argument("--model", default=None, metavar="ID_OR_PATH",
                   help="catalogue id or model folder: a hub geometry model (e.g. Depth Anything 3) gives the "
                        "depth, cameras and confidence itself; our own checkpoint runs the windows below "
                        "(default: the shipped parallax-tiny)")
    p.add_argument("--resolution", type=int, default=None,
                   help="with a hub geometry model: the longer side it processes frames at (Depth Anything 3: 504)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--zip", action="store_true", help="also write DIR.zip")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def main(args) -> int:
    from ..cli_bundle import run_to_bundle
    from ..geometry.align4d import POINTMAP_ONLY, ModalityWeights
    from .reconstruct import Reconstructor
    from .reconstruct_geometry import reconstruct_with_geometry, resolve_reconstructor

    def work(progress):
        geometry, model_path = resolve_reconstructor(args.model, args.device, args.resolution)
        if geometry is not None:  # the window, chunk and alignment flags are the unified path's
            return reconstruct_with_geometry(geometry, args.source, progress=progress, start=args.start,
                                             stride=args.stride, max_frames=args.max_frames, fps=args.fps)
        rec = Reconstructor(model_path=model_path, device=args.device)
        return rec.reconstruct(args.source, progress=progress, start=args.start, stride=args.stride,
                               max_frames=args.max_frames, window_stride=args.window_stride,
                               chunk_frames=args.chunk_frames, iterations=args.iterations, fps=args.fps,
                               weights=POINTMAP_ONLY if args.pointmaps_only else ModalityWeights())

    return run_to_bundle(args, work, summary)


def summary(bundle, seconds: float) -> str:
    """What the run measured, from the bundle itself."""
    s, t = bundle.scores, bundle.timings
    n = bundle.frame_count
    points = sum(len(p.xyz) for p in bundle.points or [])
    dynamic = sum(int(p.dynamic.sum()) for p in bundle.points or [] if p.dynamic is not None)
    used = sum(w["used"] for w in s["windows"])
    mem = s.get("memory", {})
    lines = [
        s["message"],
        f"windows: {used}/{len(s['windows'])} used"
        + (f" (dropped, by start frame: {s['dropped_windows']})" if s["dropped_windows"] else "")
        + (f"; alignment residual {s['alignment_residual']:.4f} of the median depth"
           if s.get("alignment_residual") is not None else ""),
        f"points: {points} ({dynamic} dynamic, {100 * s['dynamic_fraction']:.1f} % of confident pixels); "
        f"mean confidence {s['confidence']:.2f}; camera travel "
        f"{s['camera_travel'] if s['camera_travel'] is not None else float('nan'):.3f} x median depth",
        f"time: {seconds:.1f} s ({seconds / max(n, 1):.2f} s/frame): network {t.get('network', 0):.1f} s, "
        f"alignment {t.get('alignment', 0):.1f} s, dynamic mask {t.get('dynamic', 0):.2f} s; peak RSS "
        f"{mem.get('peak_rss_mb', float('nan')):.0f} MB"
        + (f", GPU {mem['cuda_max_allocated_mb']:.0f} MB" if "cuda_max_allocated_mb" in mem else ""),
    ]
    return "\n".join(lines)
