"""The generate workflow end to end in headless Blender, and Cycles renders of what it imports.

    .venv-blender/bin/python scripts/workflow_renders.py [--out docs/img] [--frames 16] [--steps 25]

What a user does in the N-panel (Parallax > Generate shot with camera), done through the same
operator: the add-on starts the backend (.venv, the shipped tiny model), ``parallax.generate_shot``
runs without blocking while this script pumps the add-on's own progress timer (printing what the
panel's progress bar shows), and the bundle is imported. Then three PNGs:

- ``generate_frames.png``: the generated frames (the plate's image sequence), enlarged;
- ``generate_camera_view.png``: a Cycles render through the imported camera (plate + points);
- ``generate_scene_view.png``: a Cycles render from outside: points, plate and the camera's
  keyed positions (one small pyramid per frame, joined by its path).

Why renders and not screenshots of the panel: the PyPI ``bpy`` module cannot open a window, and
the Blender packaged by Debian (3.4) is older than the add-on's minimum (4.2), so there is no
Blender here that can draw the UI. The job's panel states are printed instead.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import bpy  # first: it puts Blender's own modules (addon_utils) on the path
import addon_utils
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a camera orbits a red box on a wooden table"


def enable_addon():
    addons = Path(tempfile.mkdtemp(prefix="parallax_addons_"))
    (addons / "parallax").symlink_to(ROOT, target_is_directory=True)
    sys.path.insert(0, str(addons))
    mod = addon_utils.enable("parallax", default_set=True, handle_error=None)
    if mod is None:
        raise SystemExit("could not enable the Parallax add-on")
    import importlib
    return (importlib.import_module("parallax.operators.jobs"), importlib.import_module("parallax.backend_link"),
            importlib.import_module("parallax.backend.bundle"))


def run_job(jobs, backend, args) -> float:
    """The panel's Generate button, then the add-on's timer callback pumped by hand."""
    prefs = backend.prefs()
    prefs.backend_mode, prefs.python_path, prefs.device = "LOCAL", args.backend_python, args.device
    s = bpy.context.scene.parallax
    s.gen_prompt, s.gen_frames, s.gen_steps, s.gen_seed = args.prompt, args.frames, args.steps, args.seed
    s.point_size = 3.0  # pixels: visible in a render several times the frames' size
    backend.refresh_health(wait=True)
    ok, reason = backend.task_status("generate")
    if not ok:
        raise SystemExit(f"the backend cannot generate: {reason}")
    t0 = time.perf_counter()
    if bpy.ops.parallax.generate_shot(wait=False) != {"FINISHED"}:
        raise SystemExit(f"generate_shot refused: {jobs.Job.error}")
    shown = None
    while jobs.Job.handle is not None:
        jobs.poll()  # what bpy.app.timers runs every 0.2 s in the UI
        snap = jobs.Job.snapshot
        text = f"{snap.stage or snap.phase} ({snap.progress:.0%})" if snap else "starting"
        if text != shown:  # the panel's progress bar text
            print(f"  panel: [{'#' * int(20 * (snap.progress if snap else 0)):20s}] {text}", flush=True)
            shown = text
        time.sleep(0.1)
    if jobs.Job.error:
        raise SystemExit(f"the job failed: {jobs.Job.error}")
    print(f"  panel: Imported {jobs.Job.collection}  ({time.perf_counter() - t0:.0f} s)")
    return time.perf_counter() - t0


def save_sheet(bundle, path: Path, scale: int = 3, cols: int = 8) -> None:
    """The generated frames in a grid, each enlarged ``scale`` times (nearest), via Blender images."""
    frames = [bpy.data.images.load(str(p)) for p in bundle.frames]
    w, h = frames[0].size
    rows = -(-len(frames) // cols)
    gap = 2
    W, H = cols * (w * scale + gap) - gap, rows * (h * scale + gap) - gap
    sheet = np.ones((H, W, 4), np.float32)
    for i, im in enumerate(frames):
        px = np.empty(w * h * 4, np.float32)
        im.pixels.foreach_get(px)
        tile = np.repeat(np.repeat(px.reshape(h, w, 4), scale, 0), scale, 1)
        r, c = divmod(i, cols)
        y0 = H - (r + 1) * (h * scale + gap) + gap  # Blender images start at the bottom row
        x0 = c * (w * scale + gap)
        sheet[y0:y0 + h * scale, x0:x0 + w * scale] = tile
    out = bpy.data.images.new("parallax_sheet", W, H, alpha=True)
    out.pixels.foreach_set(sheet.ravel())
    out.filepath_raw, out.file_format = str(path), "PNG"
    out.save()
    for im in frames:
        bpy.data.images.remove(im)


def cycles(scene, samples: int) -> None:
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.film_transparent = False


def render(scene, path: Path) -> None:
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    print(f"  wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


def camera_markers(cam, scene, coll, size: float):
    """One small wire pyramid per keyed frame (apex at the camera, opening along its view) and
    a polyline through the camera centres: the animation as geometry Cycles can render."""
    mat = bpy.data.materials.new("parallax_path")
    if not mat.node_tree:  # Blender < 5 makes material node trees on request
        mat.use_nodes = True
    nodes = mat.node_tree.nodes
    nodes.clear()
    emit = nodes.new("ShaderNodeEmission")
    emit.inputs["Color"].default_value = (1.0, 0.55, 0.05, 1.0)
    emit.inputs["Strength"].default_value = 3.0
    out = nodes.new("ShaderNodeOutputMaterial")
    mat.node_tree.links.new(emit.outputs[0], out.inputs[0])
    centres = []
    for f in range(scene.frame_start, scene.frame_end + 1):
        scene.frame_set(f)
        M = np.array(cam.matrix_world)
        centres.append(M[:3, 3].copy())
        # Blender camera: looks down -Z, +Y up.
        corners = [M[:3, :3] @ np.array([x * size, y * size * 0.75, -size * 1.2]) + M[:3, 3]
                   for x, y in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
        mesh = bpy.data.meshes.new(f"frustum_{f}")
        mesh.from_pydata([M[:3, 3], *corners], [(0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (2, 3), (3, 4), (4, 1)], [])
        obj = bpy.data.objects.new(f"frustum_{f}", mesh)
        coll.objects.link(obj)
        obj.modifiers.new("wire", "SKIN")  # edges -> thin tubes Cycles can render
        for v in mesh.skin_vertices[0].data:
            v.radius = (size * 0.03, size * 0.03)
        obj.data.materials.append(mat)
    curve = bpy.data.curves.new("camera_path", "CURVE")
    curve.dimensions, curve.bevel_depth = "3D", size * 0.04
    spline = curve.splines.new("POLY")
    spline.points.add(len(centres) - 1)
    for p, c in zip(spline.points, centres):
        p.co = (*c, 1.0)
    obj = bpy.data.objects.new("camera_path", curve)
    obj.data.materials.append(mat)
    coll.objects.link(obj)
    return np.array(centres)


def main() -> int:
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--samples", type=int, default=16, help="Cycles samples")
    ap.add_argument("--size", type=int, default=480, help="render width and height in pixels")
    ap.add_argument("--device", default="cpu", help="backend device: cpu, cuda or auto")
    ap.add_argument("--backend-python", default=str(ROOT / ".venv" / "bin" / "python"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    jobs, backend, bundle_mod = enable_addon()
    try:
        print(f"generating {args.frames} frames, {args.steps} steps: {args.prompt!r}")
        run_job(jobs, backend, args)
    finally:
        backend.stop()
    scene = bpy.context.scene
    coll = bpy.data.collections[jobs.Job.collection]
    bundle = bundle_mod.read_bundle(jobs.Job.snapshot.bundle_dir)
    cam = scene.camera

    save_sheet(bundle, args.out / "generate_frames.png")

    cycles(scene, args.samples)
    scene.render.resolution_percentage = max(1, round(100 * args.size / scene.render.resolution_x))
    mid = (scene.frame_start + scene.frame_end) // 2
    scene.frame_set(mid)
    render(scene, args.out / "generate_camera_view.png")

    # From outside: a second camera behind, above and to the side of the shot's cameras.
    pts = np.concatenate([np.array([v.co for v in o.data.vertices]) @ np.array(o.matrix_world)[:3, :3].T
                          + np.array(o.matrix_world)[:3, 3] for o in coll.all_objects
                          if o.type == "MESH" and o.parent is None and len(o.data.vertices)] or [np.zeros((1, 3))])
    extent = float(np.linalg.norm(np.percentile(pts, 95, 0) - np.percentile(pts, 5, 0))) or 1.0
    scene.frame_set(scene.frame_start)
    first = np.array(cam.matrix_world)
    centres = camera_markers(cam, scene, coll, size=0.08 * extent)
    target = np.median(pts, 0)
    back, up, side = first[:3, 2], first[:3, 1], first[:3, 0]  # camera +Z points backwards
    eye = centres.mean(0) + extent * (1.1 * back + 0.6 * up + 0.9 * side)
    view = bpy.data.objects.new("outside_view", bpy.data.cameras.new("outside_view"))
    scene.collection.objects.link(view)
    view.location = eye
    view.rotation_mode = "QUATERNION"
    from mathutils import Vector
    view.rotation_quaternion = (Vector(target) - Vector(eye)).to_track_quat("-Z", "Y")
    view.data.lens = 30
    cam.data.show_background_images = False
    scene.camera = view
    scene.frame_set(mid)
    world = bpy.data.worlds.new("parallax_world")
    world.color = (0.02, 0.02, 0.025)
    scene.world = world
    render(scene, args.out / "generate_scene_view.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
