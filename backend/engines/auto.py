"""The ``auto`` engine: solve a clip with several colmap variants and keep the most consistent.

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
from .colmap import STAGES, ColmapEngine, _load, to_bundle
from .colmap_select import TAU_PX, VerifiedMatches, epipolar_support
from .options import AUTO_CANDIDATES as DEFAULT_CANDIDATES

# Candidates tried first win ties (within TIE of the best score).
TIE = 0.01


def consistency(rec, pools: dict) -> dict:
    """{pool name: support / matches} of ``rec``'s cameras on each pool of verified matches."""
    out = {}
    for name, verified in pools.items():
        total = verified.total
        out[name] = float(epipolar_support(rec, verified, TAU_PX) / total) if total else 0.0
    return out


def choose(models: dict, pools: dict) -> tuple[Optional[str], dict]:
    """(the chosen candidate or None, {candidate: {"consistency", "per_pool"}}).

    ``models``: candidate -> pycolmap Reconstruction (or None when it failed), in order of
    preference; ``pools``: source -> VerifiedMatches (pools with no match are ignored)."""
    pools = {k: v for k, v in pools.items() if v is not None and v.total > 0}
    scored = {}
    for name, rec in models.items():
        per_pool = consistency(rec, pools) if rec is not None else {k: 0.0 for k in pools}
        scored[name] = {"consistency": round(float(np.mean(list(per_pool.values()))) if per_pool else 0.0, 4),
                        "per_pool": {k: round(v, 4) for k, v in per_pool.items()}}
    alive = [n for n, rec in models.items() if rec is not None]
    if not alive:
        return None, scored
    top = max(scored[n]["consistency"] for n in alive)
    chosen = next(n for n in alive if scored[n]["consistency"] >= top - TIE)  # the first near the top
    return chosen, scored


class AutoEngine:
    """Solves with each candidate colmap variant and keeps the most consistent (module doc)."""

    name = "auto"

    def __init__(self, device=None):
        self.colmap = ColmapEngine(device=device)

    def solve(self, frames, progress=None, *, candidates=DEFAULT_CANDIDATES, start: int = 0, stride: int = 1,
              max_frames: Optional[int] = None, fps: Optional[float] = None, **options) -> Bundle:
        """``candidates``: features to try ("sift", "disk", "aliked"), in order of preference
        (ties go to the first). Every other option is the colmap engine's, given to each
        candidate. A candidate whose features cannot run here is an error, not a skip."""
        bundles, chosen = self.solve_all(frames, progress, candidates=candidates, start=start, stride=stride,
                                         max_frames=max_frames, fps=fps, **options)
        return bundles[chosen]

    def solve_all(self, frames, progress=None, *, candidates=DEFAULT_CANDIDATES, start: int = 0, stride: int = 1,
                  max_frames: Optional[int] = None, fps: Optional[float] = None, **options) -> tuple[dict, str]:
        """({candidate: its Bundle, or None when it registered nothing}, the chosen candidate).
        Every bundle records the scores of all (``scores["auto"]``), so benchmarks can set the
        choice beside each candidate's accuracy."""
        candidates = list(dict.fromkeys(candidates))
        if not candidates:
            raise EngineError("auto needs at least one candidate")
        for c in candidates:
            if c != "sift":
                self.colmap.learned(c, options.get("max_keypoints", 2048),
                                    options.get("learned_image_size", 1024))  # unavailable: fail before any work
        prog = Progress.of(progress)
        load = prog.span(0.0, 0.03, "load")
        load(0.0)
        frames, indices, clip_fps, source_name = _load(frames, start, stride, max_frames)
        solved, info, timings = {}, {}, {}
        for k, c in enumerate(candidates):
            span = prog.span(0.03 + 0.95 * k / len(candidates), 0.03 + 0.95 * (k + 1) / len(candidates), c)
            # a Progress of its own per candidate: its stage timings do not overwrite the other's
            child = Progress(lambda f, label, span=span: span(f, label)).staged(STAGES)
            t0 = time.perf_counter()
            try:
                solved[c] = self.colmap.solve_clip(frames, child, features=c, **options)
                info[c] = {"registered": int(solved[c].rec.num_reg_images())}
            except NothingRegistered as e:
                solved[c] = None
                info[c] = {"registered": 0, "error": str(e)}
            info[c]["seconds"] = round(time.perf_counter() - t0, 3)
            timings.update({f"{c}/{stage}": t for stage, t in child.timings.items()})
        convert = prog.span(0.98, 1.0, "convert")
        convert(0.0)
        pools = {c: s.verified for c, s in solved.items() if s is not None}
        chosen, scored = choose({c: (s.rec if s is not None else None) for c, s in solved.items()}, pools)
        if chosen is None:
            raise NothingRegistered("nothing registered by any candidate ("
                                    + "; ".join(f"{c}: {info[c].get('error', 'no model')}" for c in candidates) + ")")
        for c in candidates:
            info[c].update(scored[c], verified_matches=pools[c].total if c in pools else 0)
        record = {"chosen": chosen, "consistency": {c: scored[c]["consistency"] for c in candidates}}
        source = {"input": source_name, "frame_indices": indices,
                  "auto": {"chosen": chosen, "candidates": info,
                           "score": "mean over the candidates' verified-match pools of the epipolar support "
                                    f"(tau {TAU_PX} px) per match"}}
        bundles = {}
        for c in candidates:
            if solved[c] is None:
                bundles[c] = None
                continue
            b = to_bundle(solved[c], frames, self.name, fps=float(fps or clip_fps), source=dict(source))
            # "score": this bundle's own consistency, the one number a summary line shows
            b.scores["auto"] = dict(record, this=c, score=record["consistency"][c])
            b.timings = {**timings, **{f"{x}/total": info[x]["seconds"] for x in candidates},
                         "total": round(sum(v["seconds"] for v in info.values()), 3)}
            bundles[c] = b
        convert(1.0, "done")
        return bundles, chosen


__all__ = ["AutoEngine", "Cancelled", "DEFAULT_CANDIDATES", "VerifiedMatches", "choose", "consistency"]
