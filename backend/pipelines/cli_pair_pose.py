"""``python -m backend pair-pose A.jpg B.jpg --out DIR [--videos N] [--generator ID_OR_PATH]
[--estimator NAME] [--intrinsics FX,FY,CX,CY]``.

The relative pose of image B from image A (InterPose, ``pair_pose.py``): writes a ``pair_pose``
bundle (A at the origin, B at baseline 1, the scores and the reliability grade) with the
selected generated video in its ``generated/`` folder, and prints progress lines and a summary.
``--videos 0`` is the pair-only estimate (no video generated).
"""

from __future__ import annotations

import sys


def add_arguments(p) -> None:
    from .pair_pose import DEFAULT_VIDEOS, RANDOM_SUBSETS, SUBSET_LEFT_OUT
    from .pair_roles import ESTIMATORS, GENERATORS

    p.add_argument("images", nargs="*", metavar="IMAGE", help="image A, then image B")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--videos", type=int, default=DEFAULT_VIDEOS,
                   help=f"generated in-between videos (default {DEFAULT_VIDEOS}); 0: pair-only estimate")
    p.add_argument("--generator", default="unified", metavar="ID_OR_PATH",
                   help=f"video generator (role): {', '.join(GENERATORS)} (the unified model), or a catalogue id "
                        "or model folder of a first-last-frame model (python -m backend models list)")
    p.add_argument("--estimator", default="unified", choices=ESTIMATORS, help="pose estimator (role)")
    p.add_argument("--intrinsics", metavar="FX,FY,CX,CY",
                   help="the camera's intrinsics in pixels (both images; default: estimated)")
    p.add_argument("--frames", type=int, default=None, help="frames per generated video (default: the model's window)")
    p.add_argument("--k", type=int, default=None,
                   help=f"frames per subset, A and B included (default: a video's frames but {SUBSET_LEFT_OUT})")
    p.add_argument("--subsets", type=int, default=RANDOM_SUBSETS,
                   help=f"random frame subsets per video, plus one uniform (default {RANDOM_SUBSETS})")
    p.add_argument("--steps", type=int, default=25, help="denoising steps per video")
    p.add_argument("--guidance", type=float, default=5.0, help="classifier-free guidance (0: prompts ignored)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first video (video i uses seed + i)")
    p.add_argument("--model", default=None,
                   help="the unified model's checkpoint folder (default: shipped parallax-tiny), used by the "
                        "unified generator and estimator")
    p.add_argument("--device", default=None)


def parse_intrinsics(text):
    """"fx,fy,cx,cy" -> [fx, fy, cx, cy] floats (ValueError with a message otherwise)."""
    if text is None:
        return None
    parts = [x.strip() for x in text.split(",")]
    try:
        values = [float(x) for x in parts]
    except ValueError:
        values = []
    if len(values) != 4 or values[0] <= 0 or values[1] <= 0:
        raise ValueError(f"--intrinsics {text!r}: give four numbers FX,FY,CX,CY in pixels, focal lengths > 0")
    return values


def main(args) -> int:
    from ..bundle import BundleError
    from .pair_pose import check_output

    if len(args.images) != 2:
        print(f"error: pair-pose needs two images, A and B (got {len(args.images)}): "
              "python -m backend pair-pose A.jpg B.jpg --out DIR", file=sys.stderr)
        return 2
    try:
        K = parse_intrinsics(args.intrinsics)
        check_output(args.out)  # refused before the model loads: Parallax replaces only what it wrote
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from ..hub.catalogue import ModelNotAvailable
    from ..runtime import Cancelled
    from .pair_pose import PairPosePipeline, prepare_views, write_result
    from .pair_roles import make_roles, video_frames

    try:
        prepare_views(args.images[0], args.images[1], K)  # bad input: a message, and no model loaded
        gen, est = make_roles(args.generator, args.estimator, model_path=args.model, device=args.device,
                              steps=args.steps, guidance=args.guidance)
        pipe = PairPosePipeline(gen, est, videos=args.videos, frames=video_frames(gen, args.frames), k=args.k,
                                random_subsets=args.subsets, seed=args.seed)
        result = pipe(args.images[0], args.images[1], K=K,
                      progress=lambda f, stage: print(f"progress {f:.3f} {stage}", flush=True))
    except (ValueError, ModelNotAvailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt):
        print("cancelled", file=sys.stderr)
        return 130
    try:
        path = write_result(result, args.out)
    except (OSError, BundleError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    s = result.scores
    print(f"wrote {path}: {s['method']}, rotation {s['rotation_deg']:.1f} deg, B's direction from A "
          f"{[round(x, 3) for x in s['translation_dir']]}, reliability {s['reliability']}"
          + (f" (D_med {s['d_med']:.1f}, D_total {s['d_total']:.1f} deg)" if s.get("d_total") is not None else ""))
    for note in result.notes:
        print(f"note: {note}")
    return 0
