"""Import benchmark: a 120-frame bundle with 50k points per frame into real Blender.

Run in the Blender environment:  .venv-blender/bin/python benchmarks/import_bench.py
Prints the wall time of bpy.ops.parallax.import_bundle (reading and validating the bundle
included) and of a frame change with the points' Geometry Nodes evaluated. Target: <= 3 s.
"""

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from backend.bundle import Bundle, CameraFrame, PointFrame, write_bundle  # noqa: E402


def make_bundle(path: Path, frames: int, points: int, width: int = 960, height: int = 540) -> Path:
    rng = np.random.default_rng(0)
    cams, pts, imgs = [], [], []
    frame_img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    for f in range(frames):
        c2w = np.eye(4)
        a = 0.01 * f
        c2w[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        c2w[:3, 3] = [0.02 * f, 0, 0]
        cams.append(CameraFrame(f, c2w, 800.0, 800.0, width / 2 - 0.5, height / 2 - 0.5))
        pts.append(PointFrame(rng.normal(size=(points, 3)).astype(np.float32) + [0, 0, 5],
                              rng.integers(0, 256, (points, 3), dtype=np.uint8),
                              rng.random(points).astype(np.float16)))
        imgs.append(frame_img)
    return write_bundle(Bundle("solve", width, height, frames, fps=24.0, engine="bench", frames=imgs,
                               cameras=cams, points=pts), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import bpy  # first: it puts Blender's own modules (addon_utils) on the path
    import addon_utils
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "addons").mkdir()
        (tmp / "addons" / "parallax").symlink_to(ROOT, target_is_directory=True)
        sys.path.insert(0, str(tmp / "addons"))
        addon_utils.enable("parallax", default_set=True)
        t = time.perf_counter()
        path = make_bundle(tmp / "bench_bundle", args.frames, args.points)
        print(f"wrote bundle: {time.perf_counter() - t:.2f} s ({args.frames} frames x {args.points} points)")
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            assert bpy.ops.parallax.import_bundle(filepath=str(path)) == {"FINISHED"}
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        bpy.context.scene.frame_set(60)
        bpy.context.evaluated_depsgraph_get()
        frame_change = time.perf_counter() - t
    print(f"machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores, "
          f"Blender {bpy.app.version_string}")
    print(f"import: best {min(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s "
          f"over {args.repeats} runs (re-import replaces the previous one)")
    print(f"frame change with points evaluated: {frame_change:.3f} s")


if __name__ == "__main__":
    main()
