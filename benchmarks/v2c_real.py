"""V2C on real footage: camera engines on 16-frame windows of hololens-000 against its ground truth.

Windows of 16 frames at strides 1, 2, 4 and 8, starting at frames 0, 120 and 240 (12 windows),
scored with the pairwise metrics of JOG3R/DUSt3R (``backend.geometry.metrics``): RRA@5, RTA@5
and mAA@30 over all frame pairs. A frame the engine did not register counts as a failure in
every pair it belongs to; a window with nothing registered scores 0.

    .venv/bin/python benchmarks/v2c_real.py --engines colmap
    .venv/bin/python benchmarks/v2c_real.py --engines colmap,unified --option mapper=global

Prints the table and writes it (with date and hardware) to benchmarks/results/v2c_real.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.engines import ENGINES, EngineError, get_engine  # noqa: E402
from backend.geometry.metrics import pairwise_metrics  # noqa: E402

CLIP = "hololens-000"


def find_data(explicit: str | None) -> Path | None:
    """The clip folder: --data, else ../shared/data (CI, relative to the repo) or /work/shared/data."""
    candidates = [Path(explicit)] if explicit else [REPO.parent / "shared" / "data" / CLIP,
                                                   Path("/work/shared/data") / CLIP]
    return next((p for p in candidates if (p / "poses_c2w.txt").is_file()), None)


def load_clip(root: Path):
    files = sorted((root / "images").glob("*.jpg")) or sorted((root / "images").glob("*.png"))
    c2w = np.loadtxt(root / "poses_c2w.txt").reshape(-1, 4, 4)
    K = np.loadtxt(root / "K.txt").reshape(3, 3)
    if len(files) != len(c2w):
        raise SystemExit(f"{root}: {len(files)} images but {len(c2w)} poses")
    return files, c2w, K


def parse_options(items: list[str]) -> dict:
    """key=value pairs; values parsed as int, float, or left as strings."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                pass
        out[key] = value
    return out


def run_window(engine, files, gt, K, options):
    """(metrics dict, registered count, seconds) for one window."""
    t0 = time.perf_counter()
    try:
        bundle = engine.solve(files, **({"K": K} if K is not None else {}), **options)
        pred = bundle.c2w_array()
    except EngineError as e:  # nothing registered etc.: every pair fails
        print(f"    engine failed: {e}", flush=True)
        pred = np.full_like(gt, np.nan)
    seconds = time.perf_counter() - t0
    registered = int(np.isfinite(pred).all(axis=(1, 2)).sum())
    return pairwise_metrics(pred, gt), registered, seconds


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return f"{cpu}, {cores} cores available, {platform.system()} {platform.release()}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default="colmap", help=f"comma-separated, from {sorted(ENGINES)}")
    ap.add_argument("--data", help=f"the {CLIP} folder (default: ../shared/data/{CLIP})")
    ap.add_argument("--strides", default="1,2,4,8")
    ap.add_argument("--starts", default="0,120,240")
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--known-k", action="store_true", help="give the engines the clip's intrinsics")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="engine option, repeatable (e.g. mapper=global)")
    ap.add_argument("--append", action="store_true", help="add the table to --out instead of replacing it")
    ap.add_argument("--note", action="append", default=[], help="a line to add under the table, repeatable")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "v2c_real.md"),
                    help="markdown file to write ('' to skip)")
    args = ap.parse_args(argv)

    root = find_data(args.data)
    if root is None:
        print(f"{CLIP} not found (looked in ../shared/data and /work/shared/data); nothing to do")
        return 0
    files, c2w, K = load_clip(root)
    strides = [int(s) for s in args.strides.split(",")]
    starts = [int(s) for s in args.starts.split(",")]
    options = parse_options(args.option)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]

    rows = []  # (engine, start, stride, metrics, registered, seconds)
    for name in engines:
        engine = get_engine(name)
        for start in starts:
            for stride in strides:
                idx = list(range(start, start + args.window * stride, stride))
                if idx[-1] >= len(files):
                    print(f"skip start {start} stride {stride}: past the end of the clip")
                    continue
                m, reg, sec = run_window(engine, [files[i] for i in idx], c2w[idx],
                                         K if args.known_k else None, options)
                rows.append((name, start, stride, m, reg, sec))
                print(f"{name:>8} start {start:3d} stride {stride}: mAA@30 {m['mAA@30']:.3f}  RRA@5 {m['RRA@5']:.3f}  "
                      f"RTA@5 {m['RTA@5']:.3f}  registered {reg:2d}/{len(idx)}  {sec:.1f} s", flush=True)

    table = render(rows, args, root, options)
    print()
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if args.append and out.exists():
            table = out.read_text().rstrip("\n") + "\n\n" + table
        out.write_text(table)
        print(f"wrote {out}")
    return 0


def render(rows, args, root: Path, options: dict) -> str:
    def fmt(group, label):
        m = np.array([[r[3]["mAA@30"], r[3]["RRA@5"], r[3]["RTA@5"], r[4], r[5]] for r in group])
        mean = m.mean(axis=0)
        return (f"| {label} | {mean[0]:.3f} | {mean[1]:.3f} | {mean[2]:.3f} | {mean[3]:.1f}/{args.window} | "
                f"{mean[4]:.1f} |")

    import pycolmap  # only for the version line; the engines import it anyway

    lines = [
        "## V2C on real footage (hololens-000, 16-frame windows"
        + (", known intrinsics)" if args.known_k else ")"),
        "",
        f"Measured {dt.date.today().isoformat()} by `benchmarks/v2c_real.py` on {hardware()}, no GPU.",
        f"Windows of {args.window} frames at strides {args.strides}, starting at frames {args.starts}; "
        f"pairwise metrics over all {args.window * (args.window - 1) // 2} frame pairs, unregistered frames "
        "count as failures. Intrinsics " + ("given (the clip's K)." if args.known_k else "estimated by the engine."),
        f"Engine options: {options or 'defaults'}; pycolmap {pycolmap.__version__}.",
        "",
        "| engine / window | mAA@30 | RRA@5 | RTA@5 | registered | s / window |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == name]
        for r in mine:
            lines.append(fmt([r], f"{name} start {r[1]} stride {r[2]}"))
        for stride in dict.fromkeys(r[2] for r in mine):
            lines.append(fmt([r for r in mine if r[2] == stride], f"**{name} stride {stride} (mean)**"))
        lines.append(fmt(mine, f"**{name} all windows (mean)**"))
    if args.note:
        lines += [""] + [f"- {note}" for note in args.note]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
