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
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.engines import ENGINES, get_engine  # noqa: E402
from backend.eval.common import hardware, parse_options  # noqa: E402
from backend.eval.datasets import HOLOLENS as CLIP  # noqa: E402
from backend.eval.datasets import find_hololens as find_data  # noqa: E402
from backend.eval.datasets import load_hololens as load_clip  # noqa: E402
from backend.eval.datasets import window_indices  # noqa: E402
from backend.eval.v2c import solve_clip  # noqa: E402


def run_window(engine, files, gt, K, options):
    """(metrics dict, registered count, seconds) for one window (frames decoded once, in memory)."""
    from backend.io_video import read_frames

    frames = read_frames(files).frames
    m, registered, seconds, _, error = solve_clip(engine, frames, gt, K, options)
    if error:
        print(f"    engine failed: {error}", flush=True)
    return m, registered, seconds


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
        windows = window_indices(len(files), starts, strides, args.window)
        for start, stride, idx in windows:
            m, reg, sec = run_window(engine, [files[i] for i in idx], c2w[idx],
                                     K if args.known_k else None, options)
            rows.append((name, start, stride, m, reg, sec))
            print(f"{name:>8} start {start:3d} stride {stride}: mAA@30 {m['mAA@30']:.3f}  RRA@5 {m['RRA@5']:.3f}  "
                  f"RTA@5 {m['RTA@5']:.3f}  registered {reg:2d}/{len(idx)}  {sec:.1f} s", flush=True)
        if len(windows) < len(starts) * len(strides):
            print(f"skipped {len(starts) * len(strides) - len(windows)} window(s) past the end of the clip")

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
        f"Measured {dt.date.today().isoformat()} by `benchmarks/v2c_real.py` on {hardware()}.",
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
