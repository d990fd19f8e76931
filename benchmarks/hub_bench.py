"""Hub models: seconds per shot and peak VRAM per generator, and seconds per geometry solve.

For each generator, one 16-frame 480p text-to-video shot (16 frames asked; each model makes its
own count, e.g. Wan 17; 480 px high at the model's default width) after a short warm-up shot that
is not counted; peak VRAM is ``torch.cuda.max_memory_allocated`` over the counted shot (with
model CPU offload when the model does not fit, which the row says). Then the geometry role on a
64-frame clip (a held-out synthetic render) through ``predict``, as ``generate`` runs it after a
hub generator's shot.

With the weights downloaded (``python -m backend models download ID``) on a GPU host::

    python benchmarks/hub_bench.py --models wan2.1-t2v-1.3b ltx-video cogvideox-2b --geometry parallax-tiny

``--tiny`` runs it on tiny random models instead (the test suite's, built from each real class's
config in a temporary folder, ``tests/backend_tests/hub_models.py``): 32 px frames, 2 steps and a
64 px geometry clip solved without global alignment or photometric refinement, so its figures
time the plumbing (loading, callbacks, decode, the geometry role), not the real models. No hub is reachable where Parallax is developed: that is the only way it runs there.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = "a camera dollies slowly past a red box on a wooden table"


def _peak_reset(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)


def _peak_gb(dev):
    import torch

    if dev.type != "cuda":
        return None
    torch.cuda.synchronize(dev)
    return round(torch.cuda.max_memory_allocated(dev) / 1024**3, 3)


def bench_generator(resolved, dev, frames: int, height, width, steps, offload=None) -> dict:
    """Load, warm up, then time one shot of ``frames`` (as the model rounds it). ``offload``:
    model CPU offload forced on or off (None: when the model does not fit the free VRAM)."""
    from backend.hub.generators import load_generator

    t0 = time.perf_counter()
    gen = load_generator(resolved, device=dev, height=height, width=width, steps=steps, offload=offload)
    load_s = time.perf_counter() - t0
    try:
        n = gen.frames_for(frames)
        if "t2v" not in gen.supports:  # first-last-frame models: an in-between of two frames
            import numpy as np

            rng = np.random.default_rng(0)
            a, b = ((rng.random((gen.height, gen.width, 3)) * 255).astype(np.uint8) for _ in range(2))
            shot = lambda k: gen.interpolate(a, b, k, seed=0, prompt=PROMPT)  # noqa: E731
        else:
            shot = lambda k: gen.text_to_video(PROMPT, k, seed=0)  # noqa: E731
        shot(gen.frames_for(2))  # warm-up: kernels, allocator, offload hooks
        _peak_reset(dev)
        t0 = time.perf_counter()
        video = shot(n)
        seconds = time.perf_counter() - t0
        return {"model": gen.model_id, "loader": gen.name, "frames": int(video.shape[0]),
                "size": f"{video.shape[2]}x{video.shape[1]}", "steps": gen.steps, "load_s": round(load_s, 3),
                "s_per_shot": round(seconds, 3), "peak_vram_gb": _peak_gb(dev), "offload": gen.offload}
    finally:
        if hasattr(gen, "release"):
            gen.release()


def bench_geometry(geometry_id, dev, frames: int, size: int, fast: bool = False) -> dict:
    """The geometry role on a ``frames``-frame synthetic clip of ``size`` px. ``fast``: the
    unified model without global alignment and photometric refinement (PnP cameras only)."""
    import numpy as np

    from backend.data.splits import heldout_seeds
    from backend.data.synth import render_clip
    from backend.hub.catalogue import resolve_model
    from backend.hub.geometry import is_unified, load_geometry

    clip = render_clip(heldout_seeds(1)[0], frames=frames, height=size, width=size)
    video = clip.rgb[0].numpy()
    resolved = resolve_model(geometry_id)
    options = {"align": False, "photometric": False} if fast and is_unified(resolved) else {}
    geo = load_geometry(resolved, device=dev, **options)
    geo.predict(video[:4])  # warm-up (and the model's load)
    _peak_reset(dev)
    t0 = time.perf_counter()
    pred = geo.predict(video)
    seconds = time.perf_counter() - t0
    return {"geometry": geo.model_id, "loader": geo.name, "frames": int(len(video)), "size": f"{size}x{size}",
            "options": options, "s_per_solve": round(seconds, 3), "peak_vram_gb": _peak_gb(dev),
            "posed_frames": int(sum(bool(np.isfinite(c).all()) for c in pred.c2w))}


def main() -> int:
    import torch

    from backend.hub.catalogue import resolve_model
    from backend.runtime import pick_device

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=["wan2.1-t2v-1.3b", "ltx-video", "cogvideox-2b"],
                   help="generator catalogue ids or folders")
    p.add_argument("--geometry", nargs="*", default=["parallax-tiny"], help="geometry catalogue ids or folders")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=None, help="default: each model's own width at 480p")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: each model's)")
    p.add_argument("--geometry-frames", type=int, default=64)
    p.add_argument("--geometry-size", type=int, default=256)
    p.add_argument("--offload", choices=("auto", "on", "off"), default="auto",
                   help="model CPU offload (auto: when a model does not fit the free VRAM)")
    p.add_argument("--fast-geometry", action="store_true",
                   help="the unified geometry without global alignment and photometric refinement")
    p.add_argument("--tiny", action="store_true",
                   help="tiny random models (32 px, 2 steps, 64 px geometry clip, --fast-geometry): plumbing only")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = pick_device(a.device)
    rows, tmp = [], None
    models = a.models
    if a.tiny:
        sys.path.insert(0, str(ROOT / "tests"))
        from backend_tests.hub_models import BUILDERS

        tmp = tempfile.TemporaryDirectory(prefix="hub_bench_")
        models = [str(build(Path(tmp.name) / name)) for name, build in BUILDERS.items()]
        a.height, a.width, a.steps = 32, 32, a.steps or 2
        # the 2-core development CPU: alignment and photometric refinement of 7 windows take minutes
        a.geometry_size, a.fast_geometry = min(a.geometry_size, 64), True
    try:
        for model in models:
            offload = {"auto": None, "on": True, "off": False}[a.offload]
            rows.append(bench_generator(resolve_model(model), dev, a.frames, a.height, a.width, a.steps, offload))
            print(json.dumps(rows[-1]), flush=True)
        for geometry in a.geometry:
            rows.append(bench_geometry(geometry, dev, a.geometry_frames, a.geometry_size, a.fast_geometry))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(json.dumps({"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                      "threads": torch.get_num_threads(), "tiny": a.tiny, "rows": len(rows)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
