"""V2C evaluation: camera engines on the same clips, scored like JOG3R Table 1.

Per clip and engine: ``engine.solve(frames)`` -> a bundle's per-frame c2w, scored by
``backend.geometry.metrics.pairwise_metrics`` over all frame pairs i < j (rotation error,
translation-direction error, RRA@5, RTA@5, mAA@30; a frame the engine did not register fails
every pair it is in; pairs with no true baseline are judged on rotation only). Per engine the
table gives the mean over clips of each figure, the fraction of frames registered and the
seconds per clip (wall time of ``solve``; loading the model is timed apart).
"""

from __future__ import annotations

import inspect
import math
import time
from typing import Iterable, Optional

import numpy as np

from ..engines import ENGINES, EngineError
from ..geometry.metrics import pairwise_metrics
from .common import EvalError, fmt, unified_model

METRICS = ("rot_err", "transl_err", "RRA@5", "RTA@5", "mAA@30")


def check_engines(names: str) -> list[str]:
    engines = [e.strip() for e in names.split(",") if e.strip()]
    if not engines:
        raise EvalError("--engines is empty; give e.g. unified,colmap")
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise EvalError(f"unknown engine(s) {', '.join(unknown)}; available: {', '.join(sorted(ENGINES))}")
    if len(set(engines)) != len(engines):
        raise EvalError(f"--engines {names}: an engine is named twice")
    return engines


def make_engine(name: str, device: Optional[str] = None, model: Optional[str] = None):
    """The engine, given ``device`` / ``model_path`` only where its constructor takes them (colmap
    takes neither), and its one-time load seconds: a model is loaded now, not in the first clip."""
    from ..pipelines.common import LazyModel

    cls = ENGINES[name].load()
    params = inspect.signature(cls).parameters
    init = {k: v for k, v in (("device", device), ("model_path", model)) if v is not None and k in params}
    t0 = time.perf_counter()
    # an engine on the unified model, or auto (whose candidates may include it): the process's
    # one loaded copy
    if issubclass(cls, LazyModel) or name == "auto":
        init["model"] = unified_model(model, device or "cpu")
    engine = cls(**init)
    if hasattr(type(engine), "model"):  # a LazyModel engine: load the weights now
        engine.model
    return engine, time.perf_counter() - t0


def solve_clip(engine, frames, gt_c2w: np.ndarray, K: Optional[np.ndarray] = None, options: Optional[dict] = None,
               scores: Optional[dict] = None):
    """Solve one clip and score it. Returns (metrics, registered frames, seconds, bundle timings,
    error message or None). An engine error (nothing registered, too few frames) is not fatal:
    every frame counts as unregistered, so every pair fails. ``scores``, when given, receives the
    bundle's own scores (auto's choice and consistencies)."""
    t0 = time.perf_counter()
    error, timings = None, {}
    kwargs = {**({"K": K} if K is not None else {}), **(options or {})}
    try:
        if scores is not None and hasattr(engine, "solve_all"):
            # auto: every candidate's cameras come back too, scored below, so its choice can be
            # set beside the better of its own candidates on the same solves
            bundles, chosen = engine.solve_all(frames, **kwargs)
            bundle = bundles[chosen]
            scores["candidates"] = {c: _candidate_figures(b, gt_c2w) for c, b in bundles.items()}
        else:
            bundle = engine.solve(frames, **kwargs)
        pred = bundle.c2w_array()
        timings = dict(bundle.timings or {})
        if scores is not None:
            scores.update(bundle.scores or {})
    except EngineError as e:
        error = str(e)
        pred = np.full(np.shape(gt_c2w), np.nan)
    except TypeError as e:  # an --option the engine does not take
        if "unexpected keyword argument" not in str(e):
            raise
        raise EvalError(f"engine {getattr(engine, 'name', engine)}: {e}") from None
    seconds = time.perf_counter() - t0
    if pred.shape != np.shape(gt_c2w):
        raise EvalError(f"engine {getattr(engine, 'name', engine)} returned {len(pred)} cameras for "
                        f"{len(gt_c2w)} frames")
    registered = int(np.isfinite(pred).all(axis=(1, 2)).sum())
    return pairwise_metrics(pred, gt_c2w), registered, seconds, timings, error


def _candidate_figures(bundle, gt_c2w: np.ndarray) -> dict:
    """mAA@30, RRA@5 and frames registered of one of auto's candidates (all failed when None)."""
    pred = np.full(np.shape(gt_c2w), np.nan) if bundle is None else bundle.c2w_array()
    m = pairwise_metrics(pred, gt_c2w)
    return {"mAA@30": m["mAA@30"], "RRA@5": m["RRA@5"], "registered": int(np.isfinite(pred).all(axis=(1, 2)).sum())}


def _nanmean(values) -> float:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def summarise(rows: list[dict]) -> dict:
    """Mean over clips of each pairwise figure; transl err / RTA over clips that have pairs with
    a true baseline; registered = frames with a pose / all frames; s_per_clip = mean solve time."""
    out = {k: _nanmean(r["metrics"][k] for r in rows) for k in METRICS}
    frames = sum(r["frames"] for r in rows)
    # Clips with a true baseline (not static / pure pan, tilt, roll): the figure to set beside
    # JOG3R's (RealEstate10K holds no pure rotations); rotation-only clips lift mAA otherwise.
    moving = [r for r in rows if r["metrics"]["translation_pairs"] > 0]
    out["mAA@30_baseline"] = _nanmean(r["metrics"]["mAA@30"] for r in moving)
    out["baseline_clips"] = len(moving)
    out["registered"] = sum(r["registered"] for r in rows) / frames if frames else float("nan")
    out["s_per_clip"] = _nanmean(r["seconds"] for r in rows)
    out["clips"] = len(rows)
    out["failed_clips"] = sum(1 for r in rows if r["error"])
    out["pairs"] = sum(r["metrics"]["pairs"] for r in rows)
    out["translation_pairs"] = sum(r["metrics"]["translation_pairs"] for r in rows)
    stages = sorted({k for r in rows for k in r["timings"]})
    out["timings"] = {k: _nanmean(r["timings"].get(k) for r in rows) for k in stages}
    return out


def evaluate(engines: dict, clips: Iterable, known_k: bool = False, options: Optional[dict] = None,
             warmup: int = 0, log=print) -> dict:
    """Run every engine on every clip (each clip is loaded once and given to all engines).

    engines: {name: engine}; clips: EvalClip iterable; options: {name: solve options}.
    warmup: solves of the first clip per model-backed engine before timing (CUDA start-up).
    Returns {name: {"rows": [...], "summary": {...}}}.
    """
    options = options or {}
    rows = {name: [] for name in engines}
    for ci, clip in enumerate(clips):
        K = clip.K if known_k else None
        if ci == 0 and warmup:
            for name, engine in engines.items():
                if hasattr(type(engine), "model"):
                    for _ in range(warmup):
                        solve_clip(engine, clip.frames, clip.c2w, K, options.get(name))
        for name, engine in engines.items():
            scores = {}
            m, reg, sec, timings, err = solve_clip(engine, clip.frames, clip.c2w, K, options.get(name), scores)
            n = len(clip.frames)
            row = {"clip": clip.name, **clip.info, "caption": clip.caption, "frames": n,
                   "metrics": m, "registered": reg, "seconds": sec, "timings": timings, "error": err}
            choice = ""
            if "auto" in scores:  # which candidate auto kept, and every candidate's consistency
                row["auto"] = {k: scores["auto"][k] for k in ("chosen", "consistency") if k in scores["auto"]}
                row["auto"]["candidates"] = scores.get("candidates", {})
                choice = f" chose {row['auto'].get('chosen')} {row['auto'].get('consistency')}"
            rows[name].append(row)
            log(f"[{ci + 1}] {name:>8} {clip.name}{' (' + clip.info['motion'] + ')' if clip.info.get('motion') else ''}: "
                f"rot {fmt(m['rot_err'])} transl {fmt(m['transl_err'])} RRA@5 {fmt(m['RRA@5'], 3)} "
                f"RTA@5 {fmt(m['RTA@5'], 3)} mAA@30 {fmt(m['mAA@30'], 3)} reg {reg}/{n} {sec:.2f} s"
                + (f"  [{err}]" if err else "") + choice)
    return {name: {"rows": r, "summary": summarise(r)} for name, r in rows.items()}


def oracle(results: dict, a: str = "colmap", b: str = "unified", metric: str = "mAA@30") -> Optional[dict]:
    """The per-clip better of engines ``a`` and ``b`` by ``metric`` (a ground-truth oracle: what a
    perfect chooser between them would score), or None when either did not run. Returns
    {"engines", "metric", "mean", "clips", "picked": {a: n, b: n}, "per_clip": [...]}."""
    if a not in results or b not in results:
        return None
    rows_a, rows_b = results[a]["rows"], results[b]["rows"]
    best, picked = [], {a: 0, b: 0}
    for ra, rb in zip(rows_a, rows_b):
        va, vb = (np.nan_to_num(r["metrics"][metric], nan=0.0) for r in (ra, rb))
        name = a if va >= vb else b
        picked[name] += 1
        best.append(float(max(va, vb)))
    return {"engines": [a, b], "metric": metric, "mean": float(np.mean(best)) if best else float("nan"),
            "clips": len(best), "picked": picked, "per_clip": best}


def auto_choices(results: dict, name: str = "auto") -> Optional[dict]:
    """How ``auto`` chose, from its rows: {"kept": {candidate: clips}, "candidates": {candidate:
    mean mAA@30 of its own solve}, "oracle": mean of the per-clip best candidate (by ground
    truth), "auto": mean of auto's choice}, all on the same solves; None when auto did not run."""
    if name not in results:
        return None
    rows = results[name]["rows"]
    names = list(dict.fromkeys(c for r in rows for c in ((r.get("auto") or {}).get("candidates") or {})))
    kept, per_candidate, best, own = {}, {c: [] for c in names}, [], []
    for r in rows:
        record = r.get("auto") or {}
        chosen = record.get("chosen", "none (failed)")
        kept[chosen] = kept.get(chosen, 0) + 1
        found = record.get("candidates") or {}
        # a clip where every candidate failed (auto raised) scores 0 for each
        figures = {c: float(np.nan_to_num(found[c]["mAA@30"], nan=0.0)) if c in found else 0.0 for c in names}
        for c, v in figures.items():
            per_candidate[c].append(v)
        best.append(max(figures.values(), default=0.0))
        own.append(float(np.nan_to_num(r["metrics"]["mAA@30"], nan=0.0)))
    out = {"kept": kept, "auto": float(np.mean(own)) if own else float("nan")}
    if names:
        out["candidates"] = {c: float(np.mean(v)) for c, v in per_candidate.items()}
        out["oracle"] = float(np.mean(best))
    return out


def table(results: dict) -> str:
    """A markdown table shaped like JOG3R Table 1 (accuracies in percent, as the paper prints)."""
    lines = ["| engine | rot err (deg) | transl err (deg) | RRA@5 | RTA@5 | mAA@30 | registered | s/clip | clips "
             "| mAA@30, clips with baseline |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, res in results.items():
        s = res["summary"]
        failed = f" ({s['failed_clips']} failed)" if s["failed_clips"] else ""
        lines.append(f"| {name} | {fmt(s['rot_err'])} | {fmt(s['transl_err'])} | {fmt(s['RRA@5'], 2, True)} | "
                     f"{fmt(s['RTA@5'], 2, True)} | {fmt(s['mAA@30'], 2, True)} | {fmt(s['registered'], 1, True)} | "
                     f"{fmt(s['s_per_clip'], 3)} | {s['clips']}{failed} | "
                     f"{fmt(s['mAA@30_baseline'], 2, True)} ({s['baseline_clips']}) |")
    return "\n".join(lines)


def finite_summary(results: dict) -> bool:
    """True when every engine's headline figures are finite numbers."""
    return all(math.isfinite(res["summary"][k]) for res in results.values()
               for k in ("rot_err", "RRA@5", "mAA@30", "registered", "s_per_clip"))
