"""``python -m backend generate "PROMPT" --out DIR [--model ID_OR_PATH] [--geometry ID_OR_PATH]
[--frames N] [--seed S] [--no-camera] [--image FIRST.png [--image LAST.png]] [--fast]``.

Generates a shot with a generator role and writes a result bundle, printing progress lines.
The default generator, the shipped unified model, makes the video and its cameras from the same
denoising passes (T2V+C). ``--model`` names another: a catalogue id (``python -m backend models
list``) or a model folder in the hub's layout; its shot then gets its cameras from the geometry
role (``--geometry``, default the unified model's V2C), and the bundle names both models.

``--fast`` is the unified model's CPU preset (``t2v.FAST_CPU``, measured by
``benchmarks/cpu_shot_bench.py``): fewer steps with a multistep flow solver and cheaper camera
optimisations. Without it the shipped sampler runs unchanged, on any device.
"""

from __future__ import annotations

import sys


def add_arguments(p) -> None:
    p.add_argument("prompt")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--frames", type=int, default=None,
                   help="frames (the unified model: up to its window; hub models round to the counts they make)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-camera", action="store_true", help="video only (T2V), no cameras")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's)")
    p.add_argument("--model", default=None, metavar="ID_OR_PATH",
                   help="generator: a catalogue id or model folder (default: the shipped parallax-tiny)")
    p.add_argument("--geometry", default=None, metavar="ID_OR_PATH",
                   help="geometry model for the cameras of another generator's shot (default: the unified V2C)")
    p.add_argument("--image", action="append", default=[], metavar="PATH",
                   help="keyframe image: once for the first frame, twice for the first and the last")
    p.add_argument("--height", type=int, default=None, help="frame height for hub generators (default: the model's)")
    p.add_argument("--width", type=int, default=None, help="frame width for hub generators (default: the model's)")
    p.add_argument("--device", default=None)
    p.add_argument("--fast", action="store_true",
                   help="the unified model's CPU preset (backend.pipelines.t2v.FAST_CPU): a multistep flow solver "
                        "with fewer steps and cheaper camera optimisations, chosen by benchmarks/cpu_shot_bench.py "
                        "for a 16-frame shot with cameras in 18-27 s on 2 shared CPU cores (the default sampler: "
                        "95 s); one torch thread on a CPU; --steps and --guidance still override it")


def build_generator(model, device=None, steps=None, guidance=None, height=None, width=None, progress=None):
    """The generator role ``--model`` names (None: the shipped unified model)."""
    if model is None:
        from .unified_roles import UnifiedGenerator

        return UnifiedGenerator(device=device, steps=steps or 25, guidance=5.0 if guidance is None else guidance)
    from ..hub.catalogue import resolve_model
    from ..hub.generators import load_generator

    return load_generator(resolve_model(model), device=device, steps=steps, guidance=guidance, height=height,
                          width=width, progress=progress)


def use_fast_preset(generator, steps=None, guidance=None) -> None:
    """Switch a unified-model generator to the CPU preset (``--fast``); ValueError for another
    generator (the preset is measured on the unified model's sampler only)."""
    from .t2v import FAST_CPU, T2VPipeline

    if not isinstance(getattr(generator, "pipe", None), T2VPipeline):
        raise ValueError(f"--fast is the unified model's CPU preset; generator {generator.name} "
                         f"({generator.model_id}) has its own sampler")
    generator.pipe.options = FAST_CPU.options
    generator.steps = int(steps or FAST_CPU.steps)
    generator.guidance = FAST_CPU.guidance if guidance is None else float(guidance)
    if str(generator.pipe.device).startswith("cpu"):
        import torch

        # Measured on the shared 2-core machine: two OpenMP threads stalled a shot from 8 s to
        # 54-91 s when other work held a core; one thread ran every shot in 12-13 s.
        torch.set_num_threads(1)


def build_geometry(geometry, generator, device=None):
    """The geometry role ``--geometry`` names; None lets the pipeline choose (the generator's own
    T2V+C, or the unified V2C)."""
    if geometry is None:
        if "t2v+c" in generator.supports:
            return None
        from .unified_roles import UnifiedGeometry

        return UnifiedGeometry(device=device)
    from ..hub.catalogue import resolve_model
    from ..hub.geometry import load_geometry

    return load_geometry(resolve_model(geometry), device=device)


def read_images(paths) -> list:
    """--image files as (h, w, 3) uint8 arrays (ValueError naming a file that is not an image)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if len(paths) > 2:
        raise ValueError(f"--image at most twice (first and last frame), got {len(paths)}")
    out = []
    for path in paths:
        try:
            with Image.open(path) as im:
                out.append(np.asarray(im.convert("RGB")))
        except FileNotFoundError:
            raise ValueError(f"--image {path}: no such file") from None
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"--image {path}: not an image ({e})") from None
    return out


def main(args) -> int:
    from ..bundle import BundleError, check_replaceable, write_bundle

    try:
        # Refused before the model loads: Parallax replaces only folders it wrote.
        check_replaceable(args.out)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from ..hub.catalogue import ModelNotAvailable
    from ..runtime import Cancelled
    from .generate import generate_shot

    def progress(fraction, stage):
        print(f"progress {fraction:.3f} {stage}", flush=True)

    try:
        images = read_images(args.image)
        generator = build_generator(args.model, device=args.device, steps=args.steps, guidance=args.guidance,
                                    height=args.height, width=args.width, progress=progress)
        if getattr(args, "fast", False):
            use_fast_preset(generator, steps=args.steps, guidance=args.guidance)
        geometry = None if args.no_camera else build_geometry(args.geometry, generator, device=args.device)
        bundle = generate_shot(generator, args.prompt, frames=args.frames, seed=args.seed, camera=not args.no_camera,
                               steps=args.steps, guidance=args.guidance, images=images, geometry=geometry,
                               progress=progress)
    except (ValueError, NotImplementedError, ModelNotAvailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt):
        print("cancelled", file=sys.stderr)
        return 130
    try:
        path = write_bundle(bundle, args.out)
    except (OSError, BundleError) as e:  # the folder changed meanwhile, the disk is full...
        print(f"error: {e}", file=sys.stderr)
        return 1
    src = bundle.source
    made_by = f"generator {src['generator']['model_id']}"
    if src.get("geometry"):
        made_by += f", cameras by {src['geometry']['model_id']}" + (" (same passes)" if src.get("one_pass") else "")
    print(f"wrote {path} ({bundle.frame_count} frames, {made_by}, cameras: {bundle.cameras is not None}, "
          f"timings {bundle.timings})")
    return 0
