"""Held-out evaluation of a checkpoint on the synthetic engine (used after every training run).

``python -m backend.train.evaluate --model DIR [--clips 24] [--known-k] [--no-align] [--no-photometric]`` prints JSON:
normalised point-map regression error (JOG3R eq. 2's distance, after average-distance
normalisation), pairwise pose metrics of the V2C cameras (rot/transl err, RRA@5, RTA@5,
mAA@30), seconds per clip.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def evaluate(model, clips: int = 24, known_k: bool = False, align: bool = True, device=None, start: int = 0,
             cameras: str | None = None, photometric: bool | None = None) -> dict:
    from ..data.splits import heldout_seeds
    from ..data.synth import render_batch
    from ..geometry.metrics import pairwise_metrics
    from ..pipelines.pointmap_cameras import cameras_from_pointmaps
    from ..pipelines.v2c import CAMERAS, PHOTOMETRIC, predict_window

    cameras = cameras or CAMERAS
    photometric = PHOTOMETRIC if photometric is None else photometric

    dev = next(model.parameters()).device
    cfg = model.config
    seeds = heldout_seeds(clips, start)
    rows, regs, secs = [], [], []
    for i in range(0, clips, 8):
        batch = render_batch(seeds[i:i + 8], frames=cfg.num_frames, height=cfg.sample_size, width=cfg.sample_size,
                             device=str(dev))
        for b in range(len(batch.captions)):
            t0 = time.perf_counter()
            maps = predict_window(model, batch.rgb[b])
            K = batch.K[b, 0].double().cpu() if known_k else None
            sol = cameras_from_pointmaps(maps["points"], maps["conf"], K, align=align,
                                         rays=maps["rays"] if cameras == "rays" else None,
                                         frames=batch.rgb[b] if photometric else None)
            secs.append(time.perf_counter() - t0)
            rows.append(pairwise_metrics(sol["c2w"], batch.c2w[b].double().cpu()))
            gt = batch.points[b].float()
            valid = torch.isfinite(batch.depth[b]) & (batch.depth[b] > 0)
            pred = maps["points"].to(gt.device)
            s_p = pred.norm(dim=-1)[valid].mean()
            g = torch.where(valid[..., None], gt, torch.zeros_like(gt))
            s_g = g.norm(dim=-1)[valid].mean()
            regs.append(float((pred / s_p - g / s_g).norm(dim=-1)[valid].mean()))
    keys = ["rot_err", "transl_err", "RRA@5", "RTA@5", "mAA@30"]
    out = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
    out.update(reg=float(np.mean(regs)), s_per_clip=float(np.mean(secs)), clips=clips, known_k=known_k,
               cameras=cameras, align=align and cameras == "points", photometric=photometric)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--known-k", action="store_true")
    p.add_argument("--no-align", action="store_true")
    p.add_argument("--cameras", choices=["rays", "points", "both"], default="both")
    p.add_argument("--no-photometric", action="store_true", help="skip the photometric refinement")
    p.add_argument("--device", default=None)
    a = p.parse_args(argv)
    from ..models import load_model
    from ..runtime import pick_device

    model = load_model(a.model, device=pick_device(a.device))
    for cams in (["rays", "points"] if a.cameras == "both" else [a.cameras]):
        for kk in ([a.known_k] if a.known_k else [False, True]):
            res = evaluate(model, a.clips, known_k=kk, align=not a.no_align, cameras=cams,
                           photometric=not a.no_photometric)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
