"""A pose-from-pair result imported in headless Blender and rendered from outside.

    .venv-blender/bin/python scripts/pair_render.py [--bundle RESULT] [--out docs/img/pair_pose.png]

Without ``--bundle`` it makes one first: a held-out synthetic wide-baseline pair
(``python -m backend synth --pairs 1``) goes through ``python -m backend pair-pose`` in the
backend's environment (.venv, the shipped tiny model, CPU), with the pair's true intrinsics.
The result is imported by the add-on's own importer with the pair Scale set to the pair's true
baseline in metres (what a user who measured it would type), and rendered with Cycles (few
samples) from behind and above both cameras: camera A and camera B as wire frusta ending at
their photo planes, and the generated fly-through camera on its orange path, shown at the
middle of the imagined walk with that generated frame on its plane.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bpy  # first: it puts Blender's own modules (addon_utils) on the path
import addon_utils
import numpy as np
from mathutils import Vector

ROOT = Path(__file__).resolve().parents[1]
FRUSTUM_COLOR = {"A": (0.15, 0.6, 1.0), "B": (0.2, 1.0, 0.35), "fly": (1.0, 0.45, 0.05)}


def enable_addon():
    addons = Path(tempfile.mkdtemp(prefix="parallax_addons_"))
    (addons / "parallax").symlink_to(ROOT, target_is_directory=True)
    sys.path.insert(0, str(addons))
    if addon_utils.enable("parallax", default_set=True, handle_error=None) is None:
        raise SystemExit("could not enable the Parallax add-on")


def make_result(args, work: Path) -> tuple[Path, float]:
    """A synthetic pair and its pair-pose result; returns (result folder, true baseline in m)."""
    py = args.backend_python
    subprocess.run([py, "-m", "backend", "synth", "--pairs", "1", "--seed", str(args.seed), "--width",
                    str(args.width), "--height", str(args.height), "--out", str(work / "pairs"), "--device", "cpu"],
                   cwd=ROOT, check=True)
    pair = next((work / "pairs").rglob("bundle.json")).parent
    truth = json.loads((pair / "gt" / "pair.json").read_text())
    cam = json.loads((pair / "cameras.json").read_text())["frames"][0]
    K = ",".join(str(cam[k]) for k in ("fx", "fy", "cx", "cy"))
    t0 = time.perf_counter()
    subprocess.run([py, "-m", "backend", "pair-pose", str(pair / "frames" / "000000.png"),
                    str(pair / "frames" / "000001.png"), "--out", str(work / "result"), "--videos", str(args.videos),
                    "--steps", str(args.steps), "--subsets", str(args.subsets), "--intrinsics", K, "--device", "cpu"],
                   cwd=ROOT, check=True)
    print(f"pair-pose: {time.perf_counter() - t0:.0f} s; true rotation {truth['rotation_deg']:.1f} deg, "
          f"baseline {truth['baseline_m']:.2f} m")
    return work / "result", float(truth["baseline_m"])


def emission(name: str, color) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    nodes = mat.node_tree.nodes
    nodes.clear()
    emit = nodes.new("ShaderNodeEmission")
    emit.inputs["Color"].default_value = (*color, 1.0)
    emit.inputs["Strength"].default_value = 2.0
    out = nodes.new("ShaderNodeOutputMaterial")
    mat.node_tree.links.new(emit.outputs[0], out.inputs[0])
    return mat


def look_from(scene, name: str, centre: np.ndarray, direction: np.ndarray, pts: np.ndarray, size,
              margin: float = 1.05, clip_end: float = 20.0, clip_start: float | None = 0.01) -> bpy.types.Object:
    """A 30 mm camera on the line ``centre + t * direction`` looking at ``centre``, at the
    nearest distance that holds every one of ``pts`` in a ``size`` (w, h) frame, times
    ``margin``; its far clip ``clip_end`` times that distance (``clip_start`` None: Blender's)."""
    view = bpy.data.objects.new(name, bpy.data.cameras.new(name))
    scene.collection.objects.link(view)
    view.data.lens, view.data.sensor_fit = 30, "HORIZONTAL"
    direction = direction / np.linalg.norm(direction)
    tan_x = np.tan(0.5 * view.data.angle_x)
    tan_y = tan_x * size[1] / size[0]
    right = np.cross(-direction, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, -direction)
    rel = pts - centre
    need = np.maximum(np.abs(rel @ right) / tan_x, np.abs(rel @ up) / tan_y) + rel @ direction
    eye = centre + direction * float(need.max()) * margin
    view.location = eye
    view.rotation_mode = "QUATERNION"
    view.rotation_quaternion = (Vector(centre) - Vector(eye)).to_track_quat("-Z", "Y")
    if clip_start is not None:
        view.data.clip_start = clip_start
    view.data.clip_end = clip_end * float(np.linalg.norm(eye - centre))
    return view


def frustum(cam, scene, depth: float, radius: float, color, coll) -> None:
    """The camera's view pyramid as thin tubes, apex at the camera, base at ``depth`` (where
    its image plane stands): a camera as geometry Cycles can render."""
    corners = [Vector(c) * (depth / -c.z) for c in cam.data.view_frame(scene=scene)]
    M = cam.matrix_world.normalized()
    verts = [M.translation] + [M @ c for c in corners]
    mesh = bpy.data.meshes.new(f"{cam.name} frustum")
    mesh.from_pydata(verts, [(0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (2, 3), (3, 4), (4, 1)], [])
    obj = bpy.data.objects.new(mesh.name, mesh)
    coll.objects.link(obj)
    obj.modifiers.new("wire", "SKIN")  # edges -> tubes
    for v in mesh.skin_vertices[0].data:
        v.radius = (radius, radius)
    mesh.materials.append(emission(f"{cam.name} frustum", color))


def main() -> int:
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, help="a pair_pose result folder; default: make one")
    ap.add_argument("--baseline", type=float, default=None, help="the pair Scale (default: the true baseline "
                                                                 "of the synthetic pair, else 1)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "pair_pose.png")
    ap.add_argument("--seed", type=int, default=2, help="synthetic pair scene offset")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--videos", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--subsets", type=int, default=4, help="random frame subsets per video")
    ap.add_argument("--samples", type=int, default=12, help="Cycles samples")
    ap.add_argument("--size", type=int, nargs=2, default=(720, 405), help="render width and height")
    ap.add_argument("--backend-python", default=str(ROOT / ".venv" / "bin" / "python"))
    args = ap.parse_args(argv)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    enable_addon()
    work = Path(tempfile.mkdtemp(prefix="parallax_pair_"))
    bundle, baseline = (args.bundle, 1.0) if args.bundle else make_result(args, work)
    scene = bpy.context.scene
    scene.parallax.pair_scale = args.baseline or baseline
    if bpy.ops.parallax.import_bundle(filepath=str(bundle)) != {"FINISHED"}:
        raise SystemExit(f"could not import {bundle}")
    coll = next(c for c in bpy.data.collections if c.get("parallax_task") == "pair_pose")
    print("\n".join(f"  panel: {line}" for line in coll["parallax_summary"]))

    objs = {o.name.removeprefix(coll.name + " "): o for o in coll.objects}
    cams = {"A": objs["Camera A"], "B": objs["Camera B"], "fly": objs.get("Fly-through (generated)")}
    mid = (scene.frame_start + scene.frame_end) // 2
    scene.frame_set(mid)
    bpy.context.view_layer.update()
    unit = scene.parallax.pair_scale
    depth = {name: -child.location.z for name, cam in cams.items() if cam for child in cam.children}
    for name, cam in cams.items():
        if cam is not None:
            frustum(cam, scene, depth.get(name, 0.4 * unit), 0.006 * unit, FRUSTUM_COLOR[name], coll)

    # From the side of the baseline and above, far enough back to hold every camera, frustum
    # and the whole path (the generated cameras may stray: they are shown as estimated).
    pts = [np.array(v.co) for o in coll.all_objects if o.type == "MESH" and not o.parent for v in o.data.vertices]
    pts += [np.array(p.co[:3]) for o in coll.all_objects if o.type == "CURVE" for p in o.data.splines[0].points]
    pts += [np.array(o.matrix_world @ v.co) for o in coll.all_objects if o.type == "MESH" and o.parent
            for v in o.data.vertices]
    pts = np.array(pts)
    lo, hi = pts.min(0), pts.max(0)
    centre = (lo + hi) / 2
    a, b = (np.array(cams[k].matrix_world.translation) for k in "AB")
    look = np.array(cams["A"].matrix_world.to_3x3() @ Vector((0, 0, -1)))
    base = b - a if np.linalg.norm(b - a) > 1e-9 else look
    side = np.cross(base, [0.0, 0.0, 1.0])
    side = side / np.linalg.norm(side) if np.linalg.norm(side) > 1e-9 else np.array([1.0, 0.0, 0.0])
    if np.dot(side, look) > 0:  # stand behind the cameras, looking the way they look
        side = -side
    direction = side + np.array([0.0, 0.0, 0.8]) - 0.4 * look
    direction /= np.linalg.norm(direction)
    # The nearest eye on that line that holds every point in frame (a 6 % margin).
    scene.camera = look_from(scene, "outside view", centre, direction, pts, args.size, margin=1.06, clip_end=10.0,
                             clip_start=None)

    world = bpy.data.worlds.new("dark")
    world.color = (0.03, 0.03, 0.035)
    scene.world = world
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples, scene.cycles.use_denoising = "CPU", args.samples, False
    scene.render.resolution_x, scene.render.resolution_y = args.size
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    scene.render.image_settings.file_format, scene.render.image_settings.color_mode = "PNG", "RGB"
    scene.render.image_settings.compression = 100
    args.out.parent.mkdir(parents=True, exist_ok=True)
    scene.render.filepath = str(args.out)
    t0 = time.perf_counter()
    bpy.ops.render.render(write_still=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB) in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
