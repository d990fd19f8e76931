"""T2V+C self-consistency (JOG3R sec. 4.3): cameras generated with the video vs V2C on it.

For each prompt (captions of the engine's held-out seeds) T2V+C generates a video and its
cameras from the same denoising passes (``backend.pipelines.t2v.generate_bundle``); then the
unified engine's V2C solves the generated frames. The two camera sets are compared pair by
pair (``pairwise_metrics`` with the V2C cameras as the reference): mean rotation difference and
mean translation-direction difference over all frame pairs, as JOG3R reports 0.45 and 19.2 deg
over 100 prompts.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np

from ..geometry.metrics import pairwise_metrics
from .common import EvalError, caption_encoder, fmt, unified_model

JOG3R_REFERENCE = {"rot_diff": 0.45, "transl_diff": 19.20, "prompts": 100}


def heldout_prompts(count: int, start: int = 0, frames: int = 16, size: int = 64, device: str = "cpu") -> list:
    """[(seed, caption)] of the first ``count`` held-out seeds. Captions name only what the
    renderer showed, so the clips are rendered (at the training resolution, no photo textures:
    the captions the model was trained on)."""
    from ..data.splits import heldout_seeds
    from ..data.synth import render_batch

    out = []
    seeds = heldout_seeds(count, start=start)
    for i in range(0, len(seeds), 32):
        b = render_batch(seeds[i:i + 32], frames=frames, height=size, width=size, device=device)
        out += list(zip(b.seeds, b.captions))
    return out


def evaluate_t2vc(count: int, model: Optional[str] = None, device: str = "cpu", steps: int = 25,
                  guidance: float = 5.0, frames: Optional[int] = None, start: int = 0, seed: int = 0,
                  warmup: int = 0, log=print) -> dict:
    from ..pipelines.t2v import T2VPipeline, generate_bundle
    from ..pipelines.v2c import UnifiedEngine

    if count < 1:
        raise EvalError("--videos must be at least 1")
    if steps < 1:
        raise EvalError("--steps must be at least 1")
    t0 = time.perf_counter()
    net = unified_model(model, device)
    pipe = T2VPipeline(model=net, model_path=model, device=device, text_encoder=caption_encoder(net, device))
    cfg = net.config
    load_s = time.perf_counter() - t0  # weights and caption encoder, before any timing
    n = int(frames or cfg.num_frames)
    if not 2 <= n <= cfg.num_frames:
        raise EvalError(f"--frames must be between 2 and {cfg.num_frames} for this model, got {n}")
    engine = UnifiedEngine(model=pipe.model, device=device, model_path=model)
    log(f"model {pipe.model_id} on {device} loaded in {load_s:.1f} s; {n} frames x {cfg.sample_size}x{cfg.sample_size}, "
        f"{steps} steps, guidance {guidance}")
    prompts = heldout_prompts(count, start, frames=cfg.num_frames, size=cfg.sample_size)
    for _ in range(warmup):  # CUDA start-up, kernel selection: not billed to the first video
        b = generate_bundle(pipe, prompts[0][1], frames=n, seed=seed, steps=min(steps, 2), guidance=guidance)
        engine.solve(np.stack(b.frames))
    rows = []
    for i, (clip_seed, caption) in enumerate(prompts):
        t1 = time.perf_counter()
        b = generate_bundle(pipe, caption, frames=n, seed=seed + i, camera=True, steps=steps, guidance=guidance)
        t_gen = time.perf_counter() - t1
        c2w_gen = b.c2w_array()
        t2 = time.perf_counter()
        v = engine.solve(np.stack(b.frames))
        t_v2c = time.perf_counter() - t2
        m = pairwise_metrics(c2w_gen, v.c2w_array())
        rows.append({"seed": int(clip_seed), "caption": caption, "metrics": m, "t2vc_s": t_gen, "v2c_s": t_v2c,
                     "forwards": b.scores.get("forwards"), "t2vc_timings": b.timings, "v2c_timings": v.timings})
        log(f"[{i + 1}/{count}] rot diff {fmt(m['rot_err'])} deg, transl diff {fmt(m['transl_err'])} deg; "
            f"T2V+C {t_gen:.2f} s ({b.scores.get('forwards')} passes), V2C {t_v2c:.2f} s: {caption[:70]}")
    return {"rows": rows, "summary": summarise(rows), "load_s": load_s, "frames": n, "size": cfg.sample_size,
            "steps": steps, "guidance": guidance, "model": pipe.model_id}


def summarise(rows: list) -> dict:
    def col(key, sub=None):
        v = np.array([r[key][sub] if sub else r[key] for r in rows], dtype=float)
        return v[np.isfinite(v)]

    rot, tr = col("metrics", "rot_err"), col("metrics", "transl_err")
    return {"videos": len(rows),
            "rot_diff": float(rot.mean()) if rot.size else float("nan"),
            "transl_diff": float(tr.mean()) if tr.size else float("nan"),
            "rot_diff_median": float(np.median(rot)) if rot.size else float("nan"),
            "transl_diff_median": float(np.median(tr)) if tr.size else float("nan"),
            "RRA@5": float(col("metrics", "RRA@5").mean()), "RTA@5": float(np.nanmean(col("metrics", "RTA@5"))),
            "mAA@30": float(col("metrics", "mAA@30").mean()),
            "t2vc_s_per_video": float(col("t2vc_s").mean()), "v2c_s_per_video": float(col("v2c_s").mean()),
            "forwards_per_video": float(col("forwards").mean())}


def table(res: dict) -> str:
    s = res["summary"]
    ref = JOG3R_REFERENCE
    return "\n".join([
        "| | videos | rot diff (deg) | transl diff (deg) | agreement RRA@5 | RTA@5 | mAA@30 | T2V+C s/video | V2C s/video |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| T2V+C vs T2V -> V2C (ours) | {s['videos']} | {fmt(s['rot_diff'])} | {fmt(s['transl_diff'])} | "
        f"{fmt(s['RRA@5'], 2, True)} | {fmt(s['RTA@5'], 2, True)} | {fmt(s['mAA@30'], 2, True)} | "
        f"{fmt(s['t2vc_s_per_video'], 3)} | {fmt(s['v2c_s_per_video'], 3)} |",
        f"| JOG3R (paper, sec. 4.3) | {ref['prompts']} | {ref['rot_diff']:.2f} | {ref['transl_diff']:.2f} | | | | | |",
    ])
