"""Depth error per frame of a dynamic reconstruction (Geo4D), ours against point maps alone: the
README's plot.

``python benchmarks/depth_error_plot.py [--clips 2] [--frames 48] [--out docs/img/reconstruct_depth_error.png]``

Held-out dynamic synthetic clips (``eval 4d``'s data). Each method's depth gets one scale and shift
per clip (Geo4D's protocol, fitted over all frames as ``eval 4d`` does); the plot shows the Abs
Rel of every frame after that one fit, so drift along the clip shows as a slope. Prints the
per-clip means, which equal ``eval 4d``'s Abs Rel for the same clips and settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def per_frame_abs_rel(pred, gt):
    """Abs Rel of each frame after one L1 scale and shift for the whole clip."""
    import numpy as np
    import torch

    from backend.geometry.metrics import fit_scale_shift_l1

    valid = np.isfinite(gt) & (gt > 0) & (pred > 0)
    s, t = fit_scale_shift_l1(torch.as_tensor(pred[valid], dtype=torch.float64),
                              torch.as_tensor(gt[valid], dtype=torch.float64))
    a = float(s) * pred + float(t)
    err = np.where(valid, np.abs(a - gt) / np.where(valid, gt, 1.0), np.nan)
    return np.nanmean(err.reshape(len(err), -1), axis=1), float(np.nanmean(err[valid]))


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from backend.eval.fourd import heldout_dynamic_clips
    from backend.geometry.align4d import POINTMAP_ONLY, ModalityWeights
    from backend.pipelines.reconstruct import Reconstructor, to_bundle

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=2)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--start", type=int, default=0, help="held-out seed offset")
    p.add_argument("--textures", default=str(Path(__file__).resolve().parents[2] / "shared" / "textures"))
    p.add_argument("--device", default=None)
    p.add_argument("--out", type=Path, default=Path("docs/img/reconstruct_depth_error.png"))
    a = p.parse_args()
    textures = a.textures if Path(a.textures).is_dir() else None
    rec = Reconstructor(device=a.device)
    clips = list(heldout_dynamic_clips(a.clips, frames=a.frames, textures=textures, start=a.start))
    fig, axes = plt.subplots(1, len(clips), figsize=(4.2 * len(clips), 3.0), dpi=110, squeeze=False)
    for ax, clip in zip(axes[0], clips):
        cache: dict = {}
        for name, weights, style in (("ours (multi-modal)", ModalityWeights(), "-"),
                                     ("point maps only", POINTMAP_ONLY, "--")):
            r = rec.reconstruct_maps(clip.frames, weights=weights, cache=cache)
            depth = np.stack([d.depth for d in to_bundle(r).depth])
            curve, mean = per_frame_abs_rel(depth, clip.depth)
            print(f"{clip.name} ({clip.info['motion']}): {name} Abs Rel {mean:.3f} "
                  f"(frames {np.nanmin(curve):.3f}-{np.nanmax(curve):.3f})")
            ax.plot(curve, style, label=f"{name}: {mean:.3f}")
        ax.set_title(f"{clip.name}, {clip.info['motion']}", fontsize=8)
        ax.set_xlabel("frame")
        ax.set_ylabel("Abs Rel (one scale+shift per clip)", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
