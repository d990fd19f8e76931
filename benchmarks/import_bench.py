"""Import benchmark: a big result bundle into real Blender.

Run in the Blender environment:  .venv-blender/bin/python benchmarks/import_bench.py [--case 4d]
Cases: ``solve`` (default), 120 frames x 50k points; ``4d``, a dynamic-scene reconstruction of
300 frames x 20k points, a fifth of them flagged dynamic. Prints the wall time of
bpy.ops.parallax.import_bundle (reading and validating the bundle included) and of a frame
change with the points' Geometry Nodes evaluated (for 4d also with Accumulate Static on, which
shows every frame's static points). Target: <= 3 s import.
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from backend.bundle import Bundle, CameraFrame, PointFrame, encode_png, write_bundle  # noqa: E402

CASES = {"solve": dict(frames=120, points=50_000, dynamic_share=0.0),
         "4d": dict(frames=300, points=20_000, dynamic_share=0.2)}


def make_bundle(path: Path, frames: int, points: int, width: int = 960, height: int = 540,
                dynamic_share: float = 0.0) -> Path:
    """Random points before an orbiting camera; with ``dynamic_share`` > 0 a "reconstruct"
    bundle whose first points of each frame are flagged dynamic."""
    rng = np.random.default_rng(0)
    # One encoded plate frame, copied per frame: the importer reads frames lazily, and encoding
    # hundreds of 960x540 PNGs would only slow the set-up.
    plate = path.parent / "plate.png"
    plate.write_bytes(encode_png(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)))
    n_dynamic = int(round(points * dynamic_share))
    cams, pts = [], []
    for f in range(frames):
        c2w = np.eye(4)
        a = 0.01 * f
        c2w[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        c2w[:3, 3] = [0.02 * f, 0, 0]
        cams.append(CameraFrame(f, c2w, 800.0, 800.0, width / 2 - 0.5, height / 2 - 0.5))
        dynamic = (np.arange(points) < n_dynamic) if dynamic_share else None
        pts.append(PointFrame(rng.normal(size=(points, 3)).astype(np.float32) + [0, 0, 5],
                              rng.integers(0, 256, (points, 3), dtype=np.uint8),
                              rng.random(points).astype(np.float16), dynamic))
    task = "reconstruct" if dynamic_share else "solve"
    return write_bundle(Bundle(task, width, height, frames, fps=24.0, engine="bench", frames=[plate] * frames,
                               cameras=cams, points=pts), path)


def frame_change_seconds(frame: int) -> float:
    import bpy
    t = time.perf_counter()
    bpy.context.scene.frame_set(frame)
    bpy.context.evaluated_depsgraph_get()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), default="solve")
    parser.add_argument("--frames", type=int, help="override the case's frame count")
    parser.add_argument("--points", type=int, help="override the case's points per frame")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    case = dict(CASES[args.case])
    case.update({k: v for k, v in (("frames", args.frames), ("points", args.points)) if v})

    import bpy  # first: it puts Blender's own modules (addon_utils) on the path
    import addon_utils
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "addons").mkdir()
        (tmp / "addons" / "parallax").symlink_to(ROOT, target_is_directory=True)
        sys.path.insert(0, str(tmp / "addons"))
        addon_utils.enable("parallax", default_set=True)
        t = time.perf_counter()
        path = make_bundle(tmp / "bench_bundle", case["frames"], case["points"],
                           dynamic_share=case["dynamic_share"])
        print(f"wrote bundle: {time.perf_counter() - t:.2f} s ({args.case}: {case['frames']} frames x "
              f"{case['points']} points, {case['dynamic_share']:.0%} dynamic)")
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            assert bpy.ops.parallax.import_bundle(filepath=str(path)) == {"FINISHED"}
            times.append(time.perf_counter() - t)
        n_points = sum(len(o.data.vertices) for o in bpy.data.objects if o.type == "MESH")
        middle = case["frames"] // 2
        frame_change = frame_change_seconds(middle)
        accumulated = None
        if case["dynamic_share"]:
            from parallax.importers import points as points_importer
            obj = next(o for o in bpy.data.objects if points_importer.MODIFIER in o.modifiers)
            has_flags = "dynamic" in obj.data.attributes
            points_importer.set_inputs(obj, accumulate_static=True)
            accumulated = frame_change_seconds(middle + 1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Blender {bpy.app.version_string}")
    print(f"import: best {min(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s "
          f"over {args.repeats} runs (re-import replaces the previous one), {n_points:,} vertices imported")
    print(f"frame change with points evaluated: {frame_change:.3f} s")
    if accumulated is not None:
        print(f"frame change with Accumulate Static (every frame's static points): {accumulated:.3f} s"
              + ("" if has_flags else "  [the importer did not pass the dynamic flags]"))


if __name__ == "__main__":
    main()
