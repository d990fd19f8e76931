"""``python -m backend generate "PROMPT" --out DIR [--frames N] [--seed S] [--no-camera]``.

Generates a shot with the unified model (T2V) and, unless ``--no-camera``, its cameras from
the same denoising passes (T2V+C); writes a result bundle and prints progress lines.
"""

from __future__ import annotations

import sys


def add_arguments(p) -> None:
    p.add_argument("prompt")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--frames", type=int, default=None, help="frames (at most the model's window)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-camera", action="store_true", help="video only (T2V), no cameras")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--model", default=None, help="model folder or hub id (default: shipped parallax-tiny)")
    p.add_argument("--device", default=None)


def main(args) -> int:
    from ..bundle import BundleError, check_replaceable, write_bundle

    try:
        # Refused before the model loads: Parallax replaces only folders it wrote.
        check_replaceable(args.out)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from .t2v import T2VPipeline, generate_bundle

    def progress(fraction, stage):
        print(f"progress {fraction:.3f} {stage}", flush=True)

    pipe = T2VPipeline(model_path=args.model, device=args.device)
    try:
        bundle = generate_bundle(pipe, args.prompt, frames=args.frames, seed=args.seed, camera=not args.no_camera,
                                 steps=args.steps, guidance=args.guidance, progress=progress)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        path = write_bundle(bundle, args.out)
    except (OSError, BundleError) as e:  # the folder changed meanwhile, the disk is full...
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({bundle.frame_count} frames, cameras: {bundle.cameras is not None}, timings {bundle.timings})")
    return 0
