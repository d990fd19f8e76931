"""Time one 16-frame T2V+C shot on the CPU, by stage, for a list of sampler settings, each with a
quality figure beside its time (issue 17, item 4: "a 16-frame shot with cameras in <= 30 s on
the 2-core machine").

For every setting and prompt (the first ``--prompts`` held-out captions, seed = prompt index)
it runs ``backend.pipelines.t2v.generate_bundle`` after a warm-up and reports:

- seconds by stage: ``text`` (caption encoder), ``denoise`` (the network passes), ``decode``,
  ``cameras`` (focal + PnP + global alignment + photometric refinement) and the total, the
  process CPU seconds and the load average (the dev machine's 2 cores are shared);
- quality against the shipped default (25 Euler steps, guidance 5) with the same prompt and
  seed, computed once and cached (``--ref-cache``): the mean absolute pixel difference (uint8
  levels) and PSNR of the frames, and the camera difference (``geometry.metrics.pairwise_metrics``
  of the shot's cameras against the default's: mean rotation and translation-direction deg over
  frame pairs); with ``--v2c`` also the T2V+C self-consistency of ``eval t2vc`` (the shot's own
  cameras against V2C on its frames).

Settings are named (``SETTINGS``) or written inline: ``name:key=value,key=value`` with keys
``steps guidance scheduler shift cfg_steps autocast alignment_iters photometric_iters threads
compile inference_mode``. torch.compile's compile time is reported apart (a full warm-up shot
minus the timed median). Example::

    .venv/bin/python benchmarks/cpu_shot_bench.py --settings euler-8/t1 unipc-8/t1 unipc-16/t1 fast \\
        --prompts 3 --v2c --json benchmarks/results/cpu_shot.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.pipelines.t2v import FAST_CPU, SamplerOptions  # noqa: E402

# name -> overrides of the shipped default (25 Euler steps, guidance 5 on every step, 2 threads).
# "/t1": one torch thread (on the shared 2-core machine two OpenMP threads spin against the
# other jobs: measured 2-3x slower per pass under load 6).
SETTINGS = {
    "default": {},
    "default/t1": {"threads": 1},
    "euler-8/t1": {"steps": 8, "threads": 1},
    "euler-6-shift3/t1": {"steps": 6, "shift": 3.0, "threads": 1},
    "unipc-6/t1": {"steps": 6, "scheduler": "unipc", "threads": 1},
    "unipc-8/t1": {"steps": 8, "scheduler": "unipc", "threads": 1},
    "unipc-8": {"steps": 8, "scheduler": "unipc"},
    "unipc-12/t1": {"steps": 12, "scheduler": "unipc", "threads": 1},
    "unipc-16/t1": {"steps": 16, "scheduler": "unipc", "threads": 1},
    "dpm-8/t1": {"steps": 8, "scheduler": "dpm++", "threads": 1},
    "unipc-6-cfg3/t1": {"steps": 6, "scheduler": "unipc", "cfg_steps": 3, "threads": 1},
    "unipc-8-cfg4/t1": {"steps": 8, "scheduler": "unipc", "cfg_steps": 4, "threads": 1},
    "unipc-8-bf16/t1": {"steps": 8, "scheduler": "unipc", "autocast": True, "threads": 1},
    "unipc-8-compile/t1": {"steps": 8, "scheduler": "unipc", "compile": True, "threads": 1},
    "unipc-8-inference-mode/t1": {"steps": 8, "scheduler": "unipc", "inference_mode": True, "threads": 1},
    "unipc-8-cam/t1": {"steps": 8, "scheduler": "unipc", "alignment_iters": 100, "photometric_iters": 20,
                       "threads": 1},
    "fast": {"steps": FAST_CPU.steps, "guidance": FAST_CPU.guidance, "threads": 1,
             **{f.name: getattr(FAST_CPU.options, f.name) for f in fields(SamplerOptions)}},
}
DEFAULT = {"steps": 25, "guidance": 5.0, "threads": 2, "compile": False, "inference_mode": False,
           **{f.name: getattr(SamplerOptions(), f.name) for f in fields(SamplerOptions)}}
STAGES = ("text", "denoise", "decode", "cameras")


def parse_setting(text: str) -> tuple[str, dict]:
    """``name`` of SETTINGS, or ``name:key=value,...`` -> (name, full setting)."""
    name, _, spec = text.partition(":")
    if not spec:
        if name not in SETTINGS:
            raise SystemExit(f"unknown setting {name!r}; known: {', '.join(SETTINGS)} (or name:key=value,...)")
        return name, {**DEFAULT, **SETTINGS[name]}
    out = dict(DEFAULT)
    for item in spec.split(","):
        key, _, value = item.partition("=")
        if key not in DEFAULT:
            raise SystemExit(f"setting {name}: unknown key {key!r}; keys: {', '.join(DEFAULT)}")
        out[key] = _value(value)
    return name, out


def _value(text: str):
    if text in ("None", "none"):
        return None
    if text in ("True", "true", "False", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def sampler_options(setting: dict) -> SamplerOptions:
    return SamplerOptions(**{f.name: setting[f.name] for f in fields(SamplerOptions)})


def stage_seconds(timings: dict) -> dict:
    """generate_bundle's timings -> the benchmark's stages."""
    return {"text": timings.get("text", 0.0), "denoise": timings.get("network", 0.0),
            "decode": timings.get("decode", 0.0), "cameras": timings.get("alignment", 0.0)}


class InferenceMode(torch.nn.Module):
    """The network's passes under ``torch.inference_mode`` (the pipeline's own is ``no_grad``);
    outputs are cloned out of it, since the camera optimisation after them needs autograd."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    @property
    def config(self):
        return self.net.config

    def forward(self, *args, **kwargs):
        with torch.inference_mode():
            out = self.net(*args, **kwargs)
        geo = None if out.geometry is None else {k: v.clone() for k, v in out.geometry.items()}
        return type(out)(sample=out.sample.clone(), geometry=geo)


def run_shot(pipe, prompt: str, seed: int, setting: dict):
    from backend.pipelines.t2v import generate_bundle

    load0 = os.getloadavg()[0]
    cpu0, t0 = time.process_time(), time.perf_counter()
    b = generate_bundle(pipe, prompt, frames=16, seed=seed, camera=True, steps=int(setting["steps"]),
                            guidance=float(setting["guidance"]), options=sampler_options(setting))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return b, {"total": wall, "cpu": cpu, "load": (load0 + os.getloadavg()[0]) / 2, **stage_seconds(b.timings)}


def reference(pipe, prompts, cache: Path, log) -> dict:
    """The shipped default's frames and cameras per (prompt, seed), cached in ``cache``."""
    key = lambda i, p: f"{pipe.model_id}|{i}|{p}"  # noqa: E731
    refs = {}
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            names = list(z["keys"])
            refs = {k: (z[f"video_{j}"], z[f"c2w_{j}"]) for j, k in enumerate(names)}
    todo = [(i, p) for i, p in enumerate(prompts) if key(i, p) not in refs]
    for i, p in todo:
        log(f"reference (25 Euler steps, guidance 5) for prompt {i}: {p[:60]}")
        b, t = run_shot(pipe, p, i, {**DEFAULT})
        log(f"  {t['total']:.1f} s (" + ", ".join(f"{s} {t[s]:.1f}" for s in STAGES) + f"), load {t['load']:.1f}")
        refs[key(i, p)] = (np.stack(b.frames), b.c2w_array())
    if todo:
        cache.parent.mkdir(parents=True, exist_ok=True)
        names = list(refs)
        np.savez_compressed(cache, keys=np.array(names), **{f"video_{j}": refs[k][0] for j, k in enumerate(names)},
                            **{f"c2w_{j}": refs[k][1] for j, k in enumerate(names)})
    return {i: refs[key(i, p)] for i, p in enumerate(prompts)}


def quality(b, ref) -> dict:
    from backend.geometry.metrics import pairwise_metrics

    video = np.stack(b.frames).astype(np.float64)
    diff = np.abs(video - ref[0].astype(np.float64))
    mse = float((diff ** 2).mean())
    m = pairwise_metrics(b.c2w_array(), ref[1])
    return {"pixel_diff": float(diff.mean()), "psnr": 10 * np.log10(255.0 ** 2 / max(mse, 1e-12)),
            "cam_rot_diff": float(m["rot_err"]), "cam_transl_diff": float(m["transl_err"])}


def self_consistency(engine, b) -> dict:
    """eval t2vc's figure for one shot: its cameras against V2C on its own frames."""
    from backend.geometry.metrics import pairwise_metrics

    v = engine.solve(np.stack(b.frames))
    m = pairwise_metrics(b.c2w_array(), v.c2w_array())
    return {"t2vc_rot": float(m["rot_err"]), "t2vc_transl": float(m["transl_err"])}


def bench_setting(name, setting, net, text, prompts, refs, engine, log, save=None) -> dict:
    from backend.pipelines.t2v import T2VPipeline

    torch.set_num_threads(int(setting["threads"]))
    model, compile_s = net, None
    if setting["compile"]:
        model = torch.compile(net, dynamic=False)
    if setting["inference_mode"]:
        model = InferenceMode(model)
    pipe = T2VPipeline(model=model, device="cpu", text_encoder=text)
    if setting["compile"]:  # a full shot: every pass shape (2 rows, 1 row, geometry) compiles
        _, t = run_shot(pipe, prompts[0], 0, setting)
        compile_s = t["total"]
    rows = []
    for i, p in enumerate(prompts):
        b, t = run_shot(pipe, p, i, setting)
        q = quality(b, refs[i])
        if save is not None:  # frames and cameras, for comparisons between settings afterwards
            save.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(save / f"{name.replace('/', '_')}_{i}.npz", video=np.stack(b.frames), c2w=b.c2w_array())
        if engine is not None:
            q.update(self_consistency(engine, b))
        rows.append({**t, **q, "forwards": b.scores.get("forwards")})
        log(f"  {name} prompt {i}: {t['total']:.1f} s (" + ", ".join(f"{s} {t[s]:.1f}" for s in STAGES)
            + f"), load {t['load']:.1f}; pixel diff {q['pixel_diff']:.2f}, cameras {q['cam_rot_diff']:.2f} / "
            f"{q['cam_transl_diff']:.1f} deg")
    med = {k: statistics.median(r[k] for r in rows) for k in ("total", "cpu", "load", *STAGES)}
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k not in med and k != "forwards"}
    if compile_s is not None:
        compile_s = max(0.0, compile_s - med["total"])
    return {"setting": name, **{k: setting[k] for k in DEFAULT}, "median": med, "mean": mean,
            "compile_s": compile_s, "rows": rows, "forwards": rows[0]["forwards"],
            "when": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__, "cpus": os.cpu_count()}


def table(results: list) -> str:
    head = ("| setting | passes | text | denoise | decode | cameras | **total s** | CPU s | load | pixel diff | PSNR dB | "
            "cam rot / transl diff (deg) |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in results:
        m, q = r["median"], r["mean"]
        extra = f" (+{r['compile_s']:.0f} s compile)" if r["compile_s"] is not None else ""
        t2vc = f"; t2vc {q['t2vc_rot']:.2f} / {q['t2vc_transl']:.1f}" if "t2vc_rot" in q else ""
        lines.append(f"| {r['setting']} | {r['forwards']} | {m['text']:.2f} | {m['denoise']:.1f} | {m['decode']:.2f} | "
                     f"{m['cameras']:.1f} | **{m['total']:.1f}**{extra} | {m['cpu']:.1f} | {m['load']:.1f} | "
                     f"{q['pixel_diff']:.2f} | {q['psnr']:.1f} | {q['cam_rot_diff']:.2f} / {q['cam_transl_diff']:.1f}{t2vc} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", nargs="+", default=["euler-8/t1", "unipc-8/t1", "fast"],
                    help=f"named ({', '.join(SETTINGS)}) or name:key=value,...")
    ap.add_argument("--prompts", type=int, default=3, help="held-out captions (seed = index)")
    ap.add_argument("--ref-cache", type=Path, default=Path.home() / ".cache" / "parallax" / "cpu_shot_ref.npz",
                    help="the 25-step default's frames and cameras, computed once")
    ap.add_argument("--v2c", action="store_true", help="also eval t2vc's self-consistency (V2C on each shot)")
    ap.add_argument("--json", type=Path, default=None, help="append one JSON line per setting")
    ap.add_argument("--save", type=Path, default=None, help="folder for each shot's frames and cameras (.npz)")
    args = ap.parse_args(argv)
    settings = [parse_setting(s) for s in args.settings]
    log = lambda s: print(s, flush=True)  # noqa: E731

    from backend.eval.t2vc import heldout_prompts
    from backend.models import load_model
    from backend.models.components import components_of
    from backend.models.text import TextEncoder
    from backend.pipelines.t2v import T2VPipeline

    torch.set_num_threads(int(settings[0][1]["threads"]))
    net = load_model(device="cpu").eval()
    text = TextEncoder(components_of(net.config).text_encoder, max_length=net.config.model_max_length, device="cpu")
    prompts = [c for _, c in heldout_prompts(args.prompts)]
    log(f"{os.cpu_count()} CPUs, torch {torch.__version__}; prompts: {prompts}")
    warm = T2VPipeline(model=net, device="cpu", text_encoder=text)
    # first-call allocations, not billed to a setting (the cameras' optimisations are cut short too)
    _, t = run_shot(warm, prompts[0], 0, {**DEFAULT, "steps": 2, "alignment_iters": 10, "photometric_iters": 5})
    log("warm-up (2 steps): " + ", ".join(f"{s} {t[s]:.1f}" for s in STAGES) + f" s, load {t['load']:.1f}")
    refs = reference(warm, prompts, args.ref_cache, log)
    engine = None
    if args.v2c:
        from backend.pipelines.v2c import UnifiedEngine

        engine = UnifiedEngine(model=net, device="cpu")
    results = []
    for name, setting in settings:
        log(f"setting {name}: {setting}")
        r = bench_setting(name, setting, net, text, prompts, refs, engine, log, save=args.save)
        results.append(r)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            with args.json.open("a") as f:
                f.write(json.dumps(r) + "\n")
    log("\n" + table(results))
    log(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
