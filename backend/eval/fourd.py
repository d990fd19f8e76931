"""4D reconstruction evaluation: every method on the same clips, scored like Geo4D.

Methods, per clip (the network's window maps are computed once and shared by the two
alignments of the same predictions):

- ``ours``: the reconstruct pipeline (multi-modal alignment, Geo4D eq. 4-10);
- ``pointmap-only``: the same pipeline with the disparity, ray and smoothness weights at 0
  (Geo4D's single-modality ablation), same iterations;
- ``v2c-chained``: the unified engine's solve (V2C windows chained by Sim(3), with its global
  alignment and photometric refinement): cameras and depth;
- ``colmap``: the classical engine's cameras (trajectory columns only; frames it leaves out are
  left out of its trajectory figures, and ``registered`` says how many).

Metrics: video depth Abs Rel and delta<1.25 in *depth* space after one least-absolute-deviation
scale and shift for the whole clip (MonST3R's and Geo4D's protocol), over pixels with true depth
(sky and ToF holes excluded), at the frames' resolution (the bundle's depth maps); ATE, RPE-T and
RPE-R after a Sim(3) Umeyama alignment of the camera centres (``geometry.metrics.ate_rpe``);
dynamic-mask IoU against the synthetic ground truth at the model's map size (the truth area-
sampled, a map pixel moving when more than half of it does); seconds per frame (wall time;
for the two alignments the shared network time is counted in each).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional

import numpy as np
import torch

from .common import EvalError, fmt

METHODS = ("ours", "pointmap-only", "v2c-chained", "colmap")
HOLOLENS_STARTS = (0, 120, 240)
HOLOLENS_STRIDE = 2  # 30 fps footage: every 2nd frame gives windows some baseline


@dataclass
class FourDClip:
    name: str
    frames: np.ndarray  # (F, H, W, 3) uint8
    c2w: np.ndarray  # (F, 4, 4) true camera-to-world
    depth: Optional[np.ndarray]  # (F, H, W) true depth, 0 or inf where unknown
    dynamic: Optional[np.ndarray] = None  # (F, H, W) bool, where known
    info: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------
# Clips


def heldout_dynamic_clips(count: int, frames: int = 48, size: int = 128, textures=None, start: int = 0,
                          device: str = "cpu", batch: int = 4) -> Iterator[FourDClip]:
    """The first ``count`` held-out seeds (from offset ``start``) rendered with 1-4 moving objects."""
    from ..data.splits import heldout_seeds
    from ..data.synth import render_batch

    if count < 1 or frames < 2 or size < 32:
        raise EvalError("held-out dynamic clips need --clips >= 1, --frames >= 2 and --size >= 32")
    seeds = heldout_seeds(count, start=start)
    for i in range(0, len(seeds), batch):
        b = render_batch(seeds[i:i + batch], frames=frames, height=size, width=size, device=device,
                         textures=str(textures) if textures else None, dynamic=True)
        for j, seed in enumerate(b.seeds):
            yield FourDClip(f"seed {seed}", b.rgb[j].cpu().numpy(), b.c2w[j].double().cpu().numpy(),
                            b.depth[j].cpu().numpy(), b.dynamic_mask[j].cpu().numpy(),
                            {"seed": int(seed), "motion": b.motions[j]})


def hololens_clips(root, count: Optional[int], frames: int = 48) -> Iterator[FourDClip]:
    """``frames`` frames at stride 2 from frames 0, 120, 240 of hololens-000, with the headset's
    tracking and its time-of-flight depth (millimetres, 0 = none). No dynamic ground truth."""
    from PIL import Image

    from ..io_video import read_frames
    from .datasets import HOLOLENS, find_hololens, load_hololens

    folder = find_hololens(root)
    if folder is None:
        raise EvalError(f"{HOLOLENS} not found ({root or 'looked in ../shared/data and /work/shared/data'}); "
                        "give its folder with --root")
    files, c2w, _ = load_hololens(folder)
    starts = [s for s in HOLOLENS_STARTS if s + (frames - 1) * HOLOLENS_STRIDE < len(files)]
    if not starts:
        raise EvalError(f"{folder}: {len(files)} frames, too few for {frames} at stride {HOLOLENS_STRIDE}")
    for s in starts[:count]:
        idx = list(range(s, s + frames * HOLOLENS_STRIDE, HOLOLENS_STRIDE))
        rgb = np.stack(read_frames([files[i] for i in idx]).frames)
        depth = np.stack([np.asarray(Image.open(folder / "depth" / f"{i:06d}.png"), dtype=np.float32) / 1000.0
                          for i in idx])
        yield FourDClip(f"start {s} stride {HOLOLENS_STRIDE}", rgb, c2w[idx], depth, None,
                        {"start": s, "stride": HOLOLENS_STRIDE})


# ----------------------------------------------------------------------------------------
# Scoring


def depth_scores(pred: np.ndarray, gt: Optional[np.ndarray]) -> dict:
    from ..geometry.metrics import video_depth_metrics

    if gt is None:
        return {"abs_rel": float("nan"), "delta1.25": float("nan")}
    valid = np.isfinite(gt) & (gt > 0) & (pred > 0)
    if not valid.any():
        return {"abs_rel": float("nan"), "delta1.25": float("nan")}
    m = video_depth_metrics(pred, np.where(np.isfinite(gt), gt, 0.0), mask=valid, align="scale_shift")
    return {"abs_rel": m["abs_rel"], "delta1.25": m["delta1.25"]}


def trajectory_scores(pred: np.ndarray, gt: np.ndarray) -> dict:
    """ATE / RPE over the frames the method solved (all, for the model-based methods)."""
    from ..geometry.metrics import ate_rpe

    ok = np.isfinite(pred).all(axis=(1, 2))
    centres = gt[:, :3, 3]
    # A camera that only rotates (pan, tilt, roll) or stands still has no trajectory to compare:
    # the Sim(3) fit then shrinks any prediction onto the one true centre and ATE reads 0.
    out = {"registered": float(ok.mean()), "translating": bool(np.ptp(centres, axis=0).max() > 1e-6)}
    if ok.sum() < 3:
        return {**out, "ATE": float("nan"), "RPE_T": float("nan"), "RPE_R": float("nan")}
    return {**out, **ate_rpe(pred[ok], gt[ok])}


def mask_iou(pred: torch.Tensor, gt: Optional[np.ndarray], crop) -> float:
    """IoU of a (F, S, S) mask of the model's square against the truth inside that square,
    area-sampled to S x S (a map pixel is moving when more than half of it is). NaN without truth
    or when neither holds a moving pixel."""
    import torch.nn.functional as F

    if gt is None:
        return float("nan")
    S = pred.shape[-1]
    sq = torch.as_tensor(gt[:, crop.top:crop.top + crop.side, crop.left:crop.left + crop.side]).float()
    truth = F.interpolate(sq[:, None], size=(S, S), mode="area")[:, 0] > 0.5
    union = (pred | truth).sum()
    return float((pred & truth).sum() / union) if union > 0 else float("nan")


def _bundle_depth(bundle) -> np.ndarray:
    return np.stack([d.depth for d in bundle.depth]) if bundle.depth else None


def evaluate(clips: Iterable[FourDClip], methods: list, reconstructor=None, engines: Optional[dict] = None,
             iterations: int = 500, log=print) -> dict:
    """Every method on every clip. reconstructor: a ``pipelines.reconstruct.Reconstructor``
    (ours, pointmap-only); engines: {"v2c-chained": unified engine, "colmap": colmap engine}.
    Returns {method: {"rows": [...], "summary": {...}}}."""
    from ..engines import EngineError
    from ..geometry.align4d import POINTMAP_ONLY, ModalityWeights
    from ..pipelines.reconstruct import to_bundle

    engines = engines or {}
    rows = {m: [] for m in methods}
    for ci, clip in enumerate(clips):
        n = len(clip.frames)
        cache: dict = {}
        network_s = 0.0
        for m in methods:
            t0 = time.perf_counter()
            row = {"clip": clip.name, **clip.info, "frames": n, "error": None}
            try:
                if m in ("ours", "pointmap-only"):
                    weights = ModalityWeights() if m == "ours" else POINTMAP_ONLY
                    rec = reconstructor.reconstruct_maps(clip.frames, weights=weights, iterations=iterations,
                                                         cache=cache)
                    network_s = max(network_s, rec.timings.get("network", 0.0))
                    seconds = time.perf_counter() - t0 + (network_s if "network" not in rec.timings else 0.0)
                    bundle = to_bundle(rec)
                    row.update(depth_scores(_bundle_depth(bundle), clip.depth))
                    row.update(trajectory_scores(rec.c2w.numpy(), clip.c2w))
                    row["dynamic_iou"] = mask_iou(rec.dynamic, clip.dynamic, rec.crop)
                    row["dropped_windows"] = len(rec.dropped)
                    row["windows"] = len(rec.windows)
                    row["timings"] = {k: round(v, 3) for k, v in rec.timings.items()}
                else:
                    bundle = engines[m].solve(list(clip.frames))
                    seconds = time.perf_counter() - t0
                    if m != "colmap":
                        row.update(depth_scores(_bundle_depth(bundle), clip.depth))
                    row.update(trajectory_scores(bundle.c2w_array(), clip.c2w))
                    row["timings"] = dict(bundle.timings or {})
            except (EngineError, ValueError) as e:  # no result for this method on this clip
                seconds = time.perf_counter() - t0
                row["error"] = " ".join(str(e).split())[:200]
            row["s_per_frame"] = seconds / n
            rows[m].append(row)
            log(f"[{ci + 1}] {m:>13} {clip.name}{' (' + clip.info['motion'] + ')' if clip.info.get('motion') else ''}: "
                f"AbsRel {fmt(row.get('abs_rel'), 3)} d1.25 {fmt(row.get('delta1.25'), 3)} ATE {fmt(row.get('ATE'), 4)} "
                f"RPE-T {fmt(row.get('RPE_T'), 4)} RPE-R {fmt(row.get('RPE_R'), 2)} IoU {fmt(row.get('dynamic_iou'), 3)} "
                f"{row['s_per_frame']:.2f} s/frame" + (f"  [{row['error']}]" if row["error"] else ""))
    return {m: {"rows": r, "summary": summarise(r)} for m, r in rows.items()}


def _nanmean(values) -> float:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def summarise(rows: list) -> dict:
    keys = ("abs_rel", "delta1.25", "ATE", "RPE_T", "RPE_R", "dynamic_iou", "registered", "s_per_frame")
    out = {k: _nanmean(r.get(k) for r in rows) for k in keys}
    moving = [r for r in rows if r.get("translating")]
    out["ATE_translating"] = _nanmean(r.get("ATE") for r in moving)
    out["RPE_T_translating"] = _nanmean(r.get("RPE_T") for r in moving)
    out["translating_clips"] = len(moving)
    out["clips"] = len(rows)
    out["failed"] = sum(1 for r in rows if r["error"])
    out["dropped_windows"] = sum(r.get("dropped_windows", 0) for r in rows)
    out["windows"] = sum(r.get("windows", 0) for r in rows)
    return out


def table(results: dict) -> str:
    lines = ["| method | Abs Rel | delta<1.25 | ATE | RPE-T | RPE-R (deg) | ATE / RPE-T, translating clips "
             "| dynamic IoU | registered | s/frame | clips | windows dropped |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for m, res in results.items():
        s = res["summary"]
        failed = f" ({s['failed']} failed)" if s["failed"] else ""
        dropped = f"{s['dropped_windows']}/{s['windows']}" if s["windows"] else "-"
        lines.append(f"| {m} | {fmt(s['abs_rel'], 3)} | {fmt(s['delta1.25'], 3)} | {fmt(s['ATE'], 4)} | "
                     f"{fmt(s['RPE_T'], 4)} | {fmt(s['RPE_R'], 2)} | {fmt(s['ATE_translating'], 4)} / "
                     f"{fmt(s['RPE_T_translating'], 4)} ({s['translating_clips']}) | {fmt(s['dynamic_iou'], 3)} | "
                     f"{fmt(s['registered'], 1, True)} | {fmt(s['s_per_frame'], 2)} | {s['clips']}{failed} | {dropped} |")
    return "\n".join(lines)


def finite_summary(results: dict) -> bool:
    return all(math.isfinite(res["summary"]["ATE"]) for res in results.values())
