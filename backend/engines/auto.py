"""The ``auto`` engine: solve a clip with several solvers and keep the most consistent.

Different solvers fail on different clips, and a solver's own figures do not say when it
failed: GLOMAP and incremental mapping each reported sub-pixel reprojection errors on models
33 deg apart (:mod:`.colmap_select`). What every candidate can be judged on without ground
truth is the evidence all of them saw: the verified two-view matches. ``auto`` solves the clip
with each candidate (by default ALIKED + LightGlue and SIFT), pools the verified matches of
all of them, and scores each candidate's cameras by how well they explain each pool: the
*consistency* of a candidate is the mean, over the pools, of its truncated-quadratic epipolar
support (:func:`.colmap_select.epipolar_support`) divided by the pool's number of matches.
A match supports a model fully when it lies on the epipolar line the model's relative pose
predicts, not at all beyond ``TAU_PX`` pixels, and a frame the model did not place supports
nothing, so the score is a fraction in [0, 1] that rewards both placing frames and placing
them right. A candidate is also judged on the other candidates' matches, so a model that fits
only its own (possibly wrong) matches scores low.

The unified model can be a candidate too (``candidates=["unified", "sift"]``): it runs on the
same frames and verifies no matches of its own, so its per-frame K and c2w are scored on the
colmap candidates' pools by the same rule (:func:`.colmap_select.pinhole_support`). That rule
is not neutral between them: SIFT's cameras were bundle-adjusted to the very matches they are
judged on, and on 128 px clips with small baselines a 2 px epipolar test barely constrains the
translation (a SIFT model with mAA@30 0 still explained 0.99 of its matches). So the unified
model is compared with ``UNIFIED_MARGIN`` added, and goes first (ties keep it). Measured
2026-11-30 (mAA@30, every figure from the same solves; ``benchmarks/results/auto_*.json``):

=====================================  =====  =======  ======  ===============================
set                                    SIFT   unified  oracle  auto (unified,sift)
=====================================  =====  =======  ======  ===============================
16 held-out synthetic (margin chosen)  0.55   0.88     0.93    0.91 (0.89 without the margin,
                                                               0.73 sift first, no margin)
16 held-out synthetic, seeds 16-31     0.45   0.77     0.77    0.77 (0.66 without the margin)
24 Cycles rooms (128 px, 16 frames)    0.53   0.85     0.87    0.86 (0.84 without the margin)
4 hololens-000 windows (stride 1-8)    0.57   0.02     0.57    0.57 (kept SIFT on all four:
                                                               unified consistency 0.03-0.22)
=====================================  =====  =======  ======  ===============================

The margin (0.02, plus TIE: the unified model is kept within 0.03 of SIFT's consistency) is the
smallest that reached the best mean on the first 16 held-out clips; the other sets are the
check. It is not in the default candidates: it adds 9-25 s per 16-frame clip on a CPU, and on
real footage it only ever lost (above), so it would cost time for nothing there.

The bundle is the winner's; ``scores["auto"]`` records every candidate's consistency (and
``score``, the bundle's own), and
``source["auto"]`` each candidate's frames registered, seconds and error, if any.

Measured 2026-11-30 on the six hololens-000 windows of ``benchmarks/features_real.py`` (strides
4 and 8): auto chose ALIKED on every window, which was each time the more accurate candidate
(mAA@30 0.26-0.94 against SIFT's 0.00-0.61); the consistency scores were 0.70-0.92 for ALIKED
and 0.25-0.70 for SIFT. ALIKED goes first because it measured better: a tie keeps it.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np

from ..bundle import Bundle
from ..runtime import Cancelled, Progress
from .base import EngineError, NothingRegistered
from .colmap import STAGES, ColmapEngine, _load, known_intrinsics, to_bundle
from .colmap_select import TAU_PX, PinholeCameras, VerifiedMatches, epipolar_support, pinhole_support
from .options import AUTO_CANDIDATES as DEFAULT_CANDIDATES

# The candidate that is not a colmap feature variant: the unified model's V2C.
UNIFIED = "unified"

# Candidates tried first win ties (within TIE of the best score).
TIE = 0.01
# The unified model's cameras are judged on matches the colmap candidates' cameras were
# bundle-adjusted to (module doc): they are compared as if this much more consistent. Chosen
# on 16 held-out synthetic clips as the smallest margin that reached their best mean (module doc).
UNIFIED_MARGIN = 0.02


def consistency(model, pools: dict) -> dict:
    """{pool name: support / matches} of ``model``'s cameras on each pool of verified matches.
    ``model``: a pycolmap Reconstruction or :class:`.colmap_select.PinholeCameras`."""
    support = pinhole_support if isinstance(model, PinholeCameras) else epipolar_support
    out = {}
    for name, verified in pools.items():
        total = verified.total
        out[name] = float(support(model, verified, TAU_PX) / total) if total else 0.0
    return out


def choose(models: dict, pools: dict, margins: Optional[dict] = None) -> tuple[Optional[str], dict]:
    """(the chosen candidate or None, {candidate: {"consistency", "per_pool"}}).

    ``models``: candidate -> pycolmap Reconstruction or PinholeCameras (or None when it failed),
    in order of preference; ``pools``: source -> VerifiedMatches (pools with no match are ignored);
    ``margins``: candidate -> what is added to its consistency for the comparison only."""
    pools = {k: v for k, v in pools.items() if v is not None and v.total > 0}
    scored = {}
    for name, rec in models.items():
        per_pool = consistency(rec, pools) if rec is not None else {k: 0.0 for k in pools}
        scored[name] = {"consistency": round(float(np.mean(list(per_pool.values()))) if per_pool else 0.0, 4),
                        "per_pool": {k: round(v, 4) for k, v in per_pool.items()}}
    alive = [n for n, rec in models.items() if rec is not None]
    if not alive:
        return None, scored
    margins = margins or {}
    judged = {n: scored[n]["consistency"] + margins.get(n, 0.0) for n in alive}
    top = max(judged.values())
    chosen = next(n for n in alive if judged[n] >= top - TIE)  # the first near the top
    return chosen, scored


class AutoEngine:
    """Solves with each candidate (colmap variants, and the unified model when asked) and keeps
    the most consistent (module doc).

    ``device``: where learned features and the unified model run; ``model_path`` / ``model``: the
    unified model's checkpoint folder or an already loaded model (default: the shipped weights,
    loaded only when ``unified`` is a candidate)."""

    name = "auto"

    def __init__(self, device=None, model_path=None, model=None):
        self.colmap = ColmapEngine(device=device)
        self._unified_init = {"device": device, "model_path": model_path, "model": model}
        self._unified = None

    @property
    def unified(self):
        """The unified engine, built on first use (importing torch and the model code only then)."""
        if self._unified is None:
            from . import get_engine

            self._unified = get_engine(UNIFIED, **self._unified_init)
        return self._unified

    def solve(self, frames, progress=None, *, candidates=DEFAULT_CANDIDATES, start: int = 0, stride: int = 1,
              max_frames: Optional[int] = None, fps: Optional[float] = None, **options) -> Bundle:
        """``candidates``: features to try ("sift", "disk", "aliked") and/or "unified", in order of
        preference (ties go to the first), as a list or a comma-separated string. Every other
        option is the colmap engine's, given to each colmap candidate (the unified one takes the
        known intrinsics only). A candidate that cannot run here is an error, not a skip."""
        bundles, chosen = self.solve_all(frames, progress, candidates=candidates, start=start, stride=stride,
                                         max_frames=max_frames, fps=fps, **options)
        return bundles[chosen]

    def solve_all(self, frames, progress=None, *, candidates=DEFAULT_CANDIDATES, start: int = 0, stride: int = 1,
                  max_frames: Optional[int] = None, fps: Optional[float] = None, **options) -> tuple[dict, str]:
        """({candidate: its Bundle, or None when it registered nothing}, the chosen candidate).
        Every bundle records the scores of all (``scores["auto"]``), so benchmarks can set the
        choice beside each candidate's accuracy."""
        candidates = _candidate_list(candidates)
        self._check_available(candidates, options)
        prog = Progress.of(progress)
        load = prog.span(0.0, 0.03, "load")
        load(0.0)
        frames, indices, clip_fps, source_name = _load(frames, start, stride, max_frames)
        fps = float(fps or clip_fps)
        names = [f"{i:06d}.png" for i in range(len(frames))]  # the colmap engine's image names
        solved, unified_bundle, info, timings = {}, None, {}, {}
        for k, c in enumerate(candidates):
            span = prog.span(0.03 + 0.95 * k / len(candidates), 0.03 + 0.95 * (k + 1) / len(candidates), c)
            # a Progress of its own per candidate: its stage timings do not overwrite the other's
            child = Progress(lambda f, label, span=span: span(f, label))
            t0 = time.perf_counter()
            try:
                if c == UNIFIED:
                    unified_bundle = self._solve_unified(frames, child, fps, options)
                    solved[c] = PinholeCameras.from_bundle(unified_bundle, names)
                    info[c] = {"registered": len(solved[c].views)}
                    timings.update({f"{c}/{stage}": t for stage, t in (unified_bundle.timings or {}).items()
                                    if stage != "total"})
                else:
                    child = child.staged(STAGES)
                    solved[c] = self.colmap.solve_clip(frames, child, features=c, **options)
                    info[c] = {"registered": int(solved[c].rec.num_reg_images())}
                    timings.update({f"{c}/{stage}": t for stage, t in child.timings.items()})
            except NothingRegistered as e:
                solved[c] = None
                info[c] = {"registered": 0, "error": str(e)}
            info[c]["seconds"] = round(time.perf_counter() - t0, 3)
        convert = prog.span(0.98, 1.0, "convert")
        convert(0.0)
        # only colmap candidates verify matches: the unified model is judged on theirs
        pools = {c: s.verified for c, s in solved.items() if s is not None and c != UNIFIED}
        models = {c: None if s is None else (s if c == UNIFIED else s.rec) for c, s in solved.items()}
        chosen, scored = choose(models, pools, {UNIFIED: UNIFIED_MARGIN})
        if chosen is None:
            raise NothingRegistered("nothing registered by any candidate ("
                                    + "; ".join(f"{c}: {info[c].get('error', 'no model')}" for c in candidates) + ")")
        for c in candidates:
            info[c].update(scored[c], verified_matches=pools[c].total if c in pools else 0)
        record = {"chosen": chosen, "consistency": {c: scored[c]["consistency"] for c in candidates}}
        if not pools:
            record["note"] = "no colmap candidate verified any match: the one candidate with cameras is kept unscored"
        source = {"input": source_name, "frame_indices": indices,
                  "auto": {"chosen": chosen, "candidates": info,
                           "score": "mean over the colmap candidates' verified-match pools of the epipolar support "
                                    f"(tau {TAU_PX} px) per match"}}
        all_timings = {**timings, **{f"{x}/total": info[x]["seconds"] for x in candidates},
                       "total": round(sum(v["seconds"] for v in info.values()), 3)}
        bundles = {}
        for c in candidates:
            if solved[c] is None:
                bundles[c] = None
                continue
            if c == UNIFIED:
                b = unified_bundle
                b.engine = self.name
                b.source = {**(b.source or {}), **source}
            else:
                b = to_bundle(solved[c], frames, self.name, fps=fps, source=dict(source))
            # "score": this bundle's own consistency, the one number a summary line shows
            b.scores["auto"] = dict(record, this=c, score=record["consistency"][c])
            b.timings = dict(all_timings)
            bundles[c] = b
        convert(1.0, "done")
        return bundles, chosen

    def _check_available(self, candidates: list, options: dict) -> None:
        """Fail before any work when a candidate cannot run here."""
        for c in candidates:
            if c == UNIFIED:
                from . import get_spec

                reason = get_spec(UNIFIED).unavailable_reason()
                if reason:
                    raise EngineError(f"auto: the unified candidate cannot run here: {reason}")
            elif c != "sift":
                self.colmap.learned(c, options.get("max_keypoints", 2048), options.get("learned_image_size", 1024))

    def _solve_unified(self, frames: list, progress: Progress, fps: float, options: dict) -> Bundle:
        """The unified model's V2C on the frames the colmap candidates see, with the known
        intrinsics (K, focal_px or focal_mm) when given; its other options are its defaults."""
        h, w = frames[0].shape[:2]
        K = known_intrinsics(options.get("K"), len(frames), w, focal_px=options.get("focal_px"),
                             focal_mm=options.get("focal_mm"), sensor_mm=options.get("sensor_mm"), h=h)
        try:
            return self.unified.solve(frames, progress, K=K, fps=fps)
        except EngineError as e:  # too few frames, or no solution: the candidate failed
            raise NothingRegistered(str(e)) from e


def _candidate_list(candidates) -> list:
    """Candidates as a list without repeats; a string is read as comma-separated names (the
    eval CLI's ``--option auto:candidates=sift,unified``)."""
    if isinstance(candidates, str):
        candidates = [c.strip() for c in candidates.split(",") if c.strip()]
    candidates = list(dict.fromkeys(candidates))
    if not candidates:
        raise EngineError("auto needs at least one candidate")
    known = ("sift", "disk", "aliked", UNIFIED)
    unknown = [c for c in candidates if c not in known]
    if unknown:
        raise EngineError(f"auto: unknown candidate(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return candidates


__all__ = ["AutoEngine", "Cancelled", "DEFAULT_CANDIDATES", "PinholeCameras", "UNIFIED", "VerifiedMatches",
           "choose", "consistency"]
