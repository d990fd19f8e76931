"""Learned features against SIFT in the colmap engine, on 16-frame hololens-000 windows.

The protocol of ``benchmarks/v2c_real.py`` (windows of 16 frames, pairwise RRA@5 / RTA@5 /
mAA@30 over all frame pairs against the headset's tracking, an unregistered frame fails every
pair it is in), for several engine variants on the same windows. One JSON line per window is
appended to ``--jsonl`` as soon as it is done, so a long run can be split into bounded pieces
and the table re-drawn from the file with ``--table-only``.

    .venv/bin/python benchmarks/features_real.py --variant sift=colmap --strides 4,8
    .venv/bin/python benchmarks/features_real.py --variant aliked=colmap:features=aliked --starts 0,120,240
    .venv/bin/python benchmarks/features_real.py --variant auto=auto --strides 8
    .venv/bin/python benchmarks/features_real.py --table-only

``--keep-db DIR`` keeps each window's COLMAP work folder (frames, database with the verified
matches, models) as DIR/<label>_<start>_<stride>, so that mapping can be studied again on the
same matches without extracting features (the mapping study in RESULTS.md, 2026-11-30).
``--short-clip-frames 0`` runs the colmap engine as it was before short clips got more
mapping hypotheses, for an A/B on the same windows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.engines import get_engine  # noqa: E402
from backend.eval.common import hardware, parse_options  # noqa: E402
from backend.eval.datasets import find_hololens, load_hololens, window_indices  # noqa: E402
from backend.eval.v2c import solve_clip  # noqa: E402

DEFAULT_JSONL = REPO / "benchmarks" / "results" / "features_real.jsonl"


def parse_variant(text: str):
    """``label=engine[:key=value,key=value]`` -> (label, engine, options)."""
    label, sep, rest = text.partition("=")
    if not sep:
        raise SystemExit(f"--variant {text!r}: expected LABEL=ENGINE[:KEY=VALUE,...]")
    engine, _, opts = rest.partition(":")
    return label, engine, parse_options([o for o in opts.split(",") if o])


def solve_auto(engine, frames, gt, K, options):
    """auto, with every candidate's accuracy beside the choice: (metrics of the chosen, registered,
    seconds, timings, error, {"auto": {candidate: {"mAA@30", "registered", "consistency"}, "chosen"}})."""
    from backend.engines import EngineError
    from backend.geometry.metrics import pairwise_metrics

    t0 = time.perf_counter()
    try:
        bundles, chosen = engine.solve_all(frames, **({"K": K} if K is not None else {}), **options)
    except EngineError as e:
        nan = np.full(np.shape(gt), np.nan)
        return pairwise_metrics(nan, gt), 0, time.perf_counter() - t0, {}, str(e), {}
    seconds = time.perf_counter() - t0
    detail = {}
    for c, b in bundles.items():
        mc = pairwise_metrics(b.c2w_array(), gt) if b is not None else {"mAA@30": 0.0}
        detail[c] = {"mAA@30": mc["mAA@30"], "registered": b.scores["registered"] if b is not None else 0,
                     "consistency": bundles[chosen].scores["auto"]["consistency"][c]}
    b = bundles[chosen]
    m = pairwise_metrics(b.c2w_array(), gt)
    return m, b.scores["registered"], seconds, b.timings, None, {"auto": {"chosen": chosen, **detail}}


def run(args) -> None:
    root = find_hololens(args.data)
    if root is None:
        print("hololens-000 not found; nothing to do")
        return
    files, c2w, K = load_hololens(root)
    from backend.io_video import read_frames

    if args.short_clip_frames is not None:  # A/B against the colmap engine's rule for short clips
        from backend.engines import colmap

        colmap.SHORT_CLIP_FRAMES = args.short_clip_frames
    starts = [int(s) for s in args.starts.split(",")]
    strides = [int(s) for s in args.strides.split(",")]
    out = Path(args.jsonl)
    out.parent.mkdir(parents=True, exist_ok=True)
    for variant in args.variant:
        label, engine_name, options = parse_variant(variant)
        engine = get_engine(engine_name)
        for start, stride, idx in window_indices(len(files), starts, strides, args.window):
            frames = read_frames([files[i] for i in idx]).frames
            t0 = time.perf_counter()
            extra = {}
            if args.keep_db:  # COLMAP's work folder (database with matches, models) kept per window
                options = {**options, "workdir": str(Path(args.keep_db) / f"{label}_{start}_{stride}")}
            if engine_name == "auto":
                m, reg, seconds, timings, error, extra = solve_auto(engine, frames, c2w[idx],
                                                                    K if args.known_k else None, options)
            else:
                m, reg, seconds, timings, error = solve_clip(engine, frames, c2w[idx], K if args.known_k else None,
                                                              options)
            row = {**extra, "label": label, "engine": engine_name, "options": options, "start": start, "stride": stride,
                   "known_k": args.known_k, "mAA@30": m["mAA@30"], "RRA@5": m["RRA@5"], "RTA@5": m["RTA@5"],
                   "registered": reg, "frames": len(idx), "seconds": round(seconds, 2),
                   "timings": timings, "error": error, "date": time.strftime("%Y-%m-%d"),
                   "hardware": hardware()}
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{label:>8} start {start:3d} stride {stride}: mAA@30 {m['mAA@30']:.3f}  RRA@5 {m['RRA@5']:.3f}  "
                  f"registered {reg:2d}/{len(idx)}  {time.perf_counter() - t0:.1f} s"
                  + (f"  ({error})" if error else ""), flush=True)


def table(jsonl: Path) -> str:
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    lines = ["| variant | stride | windows (starts) | mAA@30 mean | mAA@30 per window | registered | s / window |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    keys = list(dict.fromkeys((r["label"], r["stride"], r["known_k"]) for r in rows))
    for label, stride, known in keys:
        mine = {r["start"]: r for r in rows if (r["label"], r["stride"], r["known_k"]) == (label, stride, known)}
        mine = [mine[s] for s in sorted(mine)]  # the last run of each window
        maa = [r["mAA@30"] for r in mine]
        lines.append(f"| {label}{' (known K)' if known else ''} | {stride} | {len(mine)} "
                     f"({', '.join(str(r['start']) for r in mine)}) | {np.mean(maa):.3f} | "
                     f"{' / '.join(f'{x:.2f}' for x in maa)} | "
                     f"{' / '.join(str(r['registered']) for r in mine)} of {mine[0]['frames']} | "
                     f"{np.mean([r['seconds'] for r in mine]):.0f} |")
    autos = [r for r in rows if r.get("auto")]
    if autos:
        lines += ["", "| auto window | chosen | consistency (" + " / ".join(k for k in autos[0]["auto"] if k != "chosen")
                  + ") | mAA@30 of each | chosen's mAA@30 | best of the candidates |", "| --- | --- | --- | --- | --- | --- |"]
        for r in autos:
            cands = {k: v for k, v in r["auto"].items() if k != "chosen"}
            lines.append(f"| start {r['start']} stride {r['stride']} | {r['auto']['chosen']} | "
                         f"{' / '.join(format(v['consistency'], '.3f') for v in cands.values())} | "
                         f"{' / '.join(format(v['mAA@30'], '.2f') for v in cands.values())} | {r['mAA@30']:.2f} | "
                         f"{max(v['mAA@30'] for v in cands.values()):.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", action="append", default=[], help="LABEL=ENGINE[:KEY=VALUE,...], repeatable")
    ap.add_argument("--data", help="the hololens-000 folder (default: ../shared/data/hololens-000)")
    ap.add_argument("--strides", default="4,8")
    ap.add_argument("--starts", default="0,120,240")
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--known-k", action="store_true", help="give the engines the clip's intrinsics")
    ap.add_argument("--jsonl", default=str(DEFAULT_JSONL), help="per-window results, appended")
    ap.add_argument("--short-clip-frames", type=int,
                    help="the colmap engine's SHORT_CLIP_FRAMES for this run (0: what it did before short clips "
                         "got more hypotheses)")
    ap.add_argument("--keep-db", help="keep each window's COLMAP work folder (database, models) under this folder")
    ap.add_argument("--table-only", action="store_true", help="only print the table of --jsonl")
    args = ap.parse_args(argv)
    if not args.table_only:
        run(args)
    if Path(args.jsonl).exists():
        print(table(Path(args.jsonl)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
