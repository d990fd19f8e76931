"""This tree against an earlier commit, in one run: bundle import into Blender and the CPU V2C
solve of the README's demo clip, interleaved so that machine load hits both alike.

    python benchmarks/compare_commits.py --base d43777c [--this COMMIT] [--repeats 3]

Checks the base out as a git worktree in a temporary folder (sharing this tree's .venv and
.venv-blender), renders the demo's held-out clip once, then alternates base and this tree:
``benchmarks/import_bench.py`` (median import seconds) and ``python -m backend solve FRAMES
--engine unified`` (wall seconds, ``OMP_NUM_THREADS=1`` as the demo runs it). Prints the
medians, the ratio this/base, and each tree's V2C figures against the ground truth, which
must be equal for a structure-only change.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCORE = """
import sys
from backend.bundle import read_bundle
from backend.geometry.metrics import pairwise_metrics
m = pairwise_metrics(read_bundle(sys.argv[2]).c2w_array(), read_bundle(sys.argv[1]).c2w_array())
print({k: round(float(m[k]), 6) for k in ("rot_err", "transl_err", "RRA@5", "mAA@30")})
"""


def _run(cmd, cwd: Path, env=None) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"failed in {cwd}: {' '.join(map(str, cmd))}\n{out.stdout}\n{out.stderr}")
    return time.perf_counter() - t0, out.stdout


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="the commit to compare with")
    p.add_argument("--this", default=None, help="a commit to measure instead of the working tree (which "
                                                  "others may be editing while this runs)")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    py, bpy_py = ROOT / ".venv" / "bin" / "python", ROOT / ".venv-blender" / "bin" / "python"
    with tempfile.TemporaryDirectory(prefix="parallax-base-") as tmp:
        tmp = Path(tmp)
        trees = {"base": tmp / "base", "this": tmp / "this" if a.this else ROOT}
        for name, commit in (("base", a.base), ("this", a.this)):
            if commit:
                subprocess.run(["git", "worktree", "add", "--detach", str(trees[name]), commit], cwd=ROOT, check=True,
                               capture_output=True)
                for venv in (".venv", ".venv-blender"):
                    (trees[name] / venv).symlink_to(ROOT / venv, target_is_directory=True)
        try:
            _run([py, "-m", "backend", "synth", "--split", "heldout", "--count", "1", "--seed", "7", "--frames", "24",
                  "--width", "320", "--height", "240", "--out", str(tmp / "synth")], trees["base"])
            truth = next((tmp / "synth").rglob("bundle.json")).parent
            imports = {k: [] for k in trees}
            solves = {k: [] for k in trees}
            figures = {}
            for _ in range(a.repeats):
                for name, tree in trees.items():
                    _, out = _run([bpy_py, "benchmarks/import_bench.py", "--repeats", "3"], tree)
                    imports[name].append(float(re.search(r"median ([0-9.]+) s", out).group(1)))
                    solved = tmp / f"solved-{name}"
                    secs, _ = _run([py, "-m", "backend", "solve", str(truth / "frames"), "--engine", "unified",
                                    "--out", str(solved), "--quiet"], tree, env={"OMP_NUM_THREADS": "1"})
                    solves[name].append(secs)
                    figures[name] = _run([py, "-c", SCORE, str(truth), str(solved)], tree)[1].strip()
                    subprocess.run(["rm", "-rf", str(solved)])
        finally:
            for tree in trees.values():
                if tree != ROOT:
                    subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    med = {k: {"import_s": statistics.median(imports[k]), "v2c_solve_s": statistics.median(solves[k])} for k in trees}
    print(json.dumps({"base": a.base, "this": a.this or "working tree", "repeats": a.repeats, "median": med,
                      "ratio_this_over_base": {m: round(med["this"][m] / med["base"][m], 3) for m in med["this"]},
                      "runs": {"import_s": imports, "v2c_solve_s": solves}}, indent=1))
    print(f"V2C figures, base: {figures['base']}")
    print(f"V2C figures, this: {figures['this']}")
    print("same figures" if figures["base"] == figures["this"] else "FIGURES DIFFER")
    return 0


if __name__ == "__main__":
    sys.exit(main())
