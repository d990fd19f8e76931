"""``python -m backend synth``: render synthetic ground-truth clips as result bundles.

Each clip becomes ``OUT/clip_<seed>/`` (a result bundle: frames, cameras, per-frame points,
depth) with the full ground truth in ``OUT/clip_<seed>/gt/ground_truth.npz`` (points, rays,
dynamic mask, depth, c2w, K, object ids) and ``gt/scene.json`` (caption, motion, seed).
``--preview`` writes a contact sheet PNG instead (or as well, with --out).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", choices=("heldout", "train"), default="heldout",
                   help="held-out seeds are fixed (HELDOUT_SEED_START + seed + i); train seeds are drawn below them")
    p.add_argument("--count", type=int, default=4, help="number of clips")
    p.add_argument("--pairs", type=int, metavar="N",
                   help="write N held-out wide-baseline image pairs (two-frame ground-truth bundles, "
                        "backend/data/pairs.py) instead of clips; --seed is the first pair scene offset")
    p.add_argument("--out", type=Path, help="output folder (one bundle per clip)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--textures", type=Path, help="folder of photo textures (none: procedural patterns only)")
    p.add_argument("--seed", type=int, default=0, help="held-out: first seed offset; train: generator seed")
    p.add_argument("--fps", type=float, default=24.0)
    p.add_argument("--batch", type=int, default=8, help="clips rendered together")
    p.add_argument("--dynamic", choices=("random", "yes", "no"), default="random")
    for k in ("fx", "fy", "cx", "cy"):
        p.add_argument(f"--{k}", type=float, help="override the sampled intrinsics (give all four)")
    p.add_argument("--preview", nargs="?", const="docs/img/synth_contact_sheet.png", type=Path,
                   help="write a contact sheet PNG (default docs/img/synth_contact_sheet.png)")


def seeds_for(split: str, count: int, seed: int) -> list[int]:
    from .splits import heldout_seeds, sample_train_seeds

    if split == "heldout":
        return heldout_seeds(count, start=seed)
    return [int(s) for s in sample_train_seeds(count, seed)]


def contact_sheet(rgb: np.ndarray, frames_shown: int = 4, pad: int = 2) -> np.ndarray:
    """(B, F, H, W, 3) uint8 -> one image: a row per clip, ``frames_shown`` evenly spaced frames."""
    B, F, H, W, _ = rgb.shape
    cols = np.linspace(0, F - 1, min(frames_shown, F)).round().astype(int)
    sheet = np.full((B * (H + pad) + pad, len(cols) * (W + pad) + pad, 3), 255, np.uint8)
    for b in range(B):
        for j, f in enumerate(cols):
            y, x = pad + b * (H + pad), pad + j * (W + pad)
            sheet[y:y + H, x:x + W] = rgb[b, f]
    return sheet


def main(args) -> int:
    if getattr(args, "pairs", None) is not None:  # callers building args by hand may not know the option
        return _pairs(args)
    from ..bundle import encode_png, write_bundle
    from .synth import render_batch
    from .to_bundle import clip_ground_truth, clip_to_bundle

    intr = None
    given = [getattr(args, k) for k in ("fx", "fy", "cx", "cy")]
    if any(v is not None for v in given):
        if not all(v is not None for v in given):
            raise SystemExit("--fx --fy --cx --cy: give all four")
        intr = dict(zip(("fx", "fy", "cx", "cy"), given))
    dyn = {"random": None, "yes": True, "no": False}[args.dynamic]
    seeds = seeds_for(args.split, args.count, args.seed)
    textures = str(args.textures) if args.textures else None
    sheet_rows = []
    t0 = time.perf_counter()
    n_done = 0
    for i in range(0, len(seeds), args.batch):
        batch = render_batch(seeds[i:i + args.batch], frames=args.frames, height=args.height, width=args.width,
                             device=args.device, textures=textures, intrinsics=intr, dynamic=dyn)
        if args.preview:
            sheet_rows.append(batch.rgb.cpu().numpy())
        if args.out:
            for j in range(len(batch)):
                d = write_bundle(clip_to_bundle(batch, j, fps=args.fps), args.out / f"clip_{batch.seeds[j]}")
                (d / "gt").mkdir(exist_ok=True)
                np.savez_compressed(d / "gt" / "ground_truth.npz", **clip_ground_truth(batch, j))
                (d / "gt" / "scene.json").write_text(json.dumps(
                    {"seed": batch.seeds[j], "caption": batch.captions[j], "motion": batch.motions[j],
                     "split": args.split}, indent=1))
        for j in range(len(batch)):
            print(f"{batch.seeds[j]}: [{batch.motions[j]}] {batch.captions[j]}")
        n_done += len(batch)
    dt = time.perf_counter() - t0
    print(f"rendered {n_done} clips in {dt:.1f} s ({n_done / dt:.2f} clips/s)")
    if args.preview:
        path = Path(args.preview)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_png(contact_sheet(np.concatenate(sheet_rows))))
        print(f"contact sheet: {path}")
    return 0


def _pairs(args) -> int:
    from .pairs import write_pairs

    if args.pairs < 1 or not args.out:
        raise SystemExit("--pairs N needs N >= 1 and --out DIR")
    t0 = time.perf_counter()
    written = write_pairs(args.pairs, args.out, args.height, args.width,
                          str(args.textures) if args.textures else None, args.seed, args.device)
    print(f"wrote {len(written)} pairs to {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0
