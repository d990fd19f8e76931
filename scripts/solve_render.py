"""A real-footage camera solve imported in headless Blender: two renders and the panel's readout.

    .venv-blender/bin/python scripts/solve_render.py [--bundle /tmp/holo_solve] [--out docs/img/solve_hololens.png]

The bundle is a colmap (SIFT) solve of 48 frames of the HoloLens clip in ../shared/data; without
one at ``--bundle`` it is made first in the backend's environment (.venv)::

    python -m backend solve /work/shared/data/hololens-000/images --engine colmap --stride 2 \\
        --max-frames 48 --out /tmp/holo_solve

The add-on, enabled from this repository, imports it with its own operator
(``parallax.import_bundle``: footage plate, animated camera, per-frame points, camera path with
frustum markers), and Cycles (few samples, CPU; every sample at its pixel's centre, at twice
the size, averaged down, so the footage's pixels come out exact and the points smooth) renders
at the footage's size:

1. through the imported camera at one frame (default: the frame with the most points), the
   footage plate with that frame's points as bright "Marker" points over it: where the points
   sit on the footage is how well the solve fits it;
2. from behind and above the whole shot: every frame's points in their image colours, the
   camera path and its frustum markers (guides the importer never renders: this script
   renders emissive copies of them), and the camera at that frame as a wire frustum with its
   frame on the plate.

Under the two renders, a caption strip holds, on the left, what the N-panel's Import section
shows for this result, as text (the lines come from the panel's own ``draw_result``, drawn into
a recording layout), and on the right what this script measured: how far the imported camera
projects the frame's points from the features the solve observed in the footage. Text is drawn
with Blender's ``blf`` into an image buffer, so nothing outside Blender's Python is needed. The
PNG keeps 6 bits a channel (``--bits``), which keeps it under the README's 400 KB.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bpy  # first: it puts Blender's own modules (addon_utils, blf, imbuf) on the path
import blf
import imbuf
import numpy as np
from mathutils import Vector

from pair_render import emission, enable_addon, frustum, look_from  # scripts/ is on sys.path as the script's folder

ROOT = Path(__file__).resolve().parents[1]
FOOTAGE = Path("/work/shared/data/hololens-000/images")
SOLVE_ARGS = ["--engine", "colmap", "--stride", "2", "--max-frames", "48"]
PATH_COLOR = (1.0, 0.45, 0.05)  # pair_render's path colour (at emission strength 2 it renders yellow)
MARKER_COLOR = (0.2, 0.75, 1.0)
CAMERA_COLOR = (1.0, 0.2, 0.6)
BACKGROUND = (0.03, 0.03, 0.035)
# Caption strip: panel-like grey, text in Blender's UI light grey, the heading in the accent.
STRIP_RGB = (0.16, 0.16, 0.17)
TEXT_RGB = (0.9, 0.9, 0.9)
HEADING_RGB = (1.0, 0.62, 0.25)
FONT_PX = 15
LINE_PX = 21
SUPERSAMPLE = 2  # render at this many times the size, then average down


def ensure_bundle(bundle: Path, backend_python: str) -> Path:
    """The solve at ``bundle``; made with ``python -m backend solve`` when it is not there."""
    if (bundle / "bundle.json").is_file():
        return bundle
    if bundle.exists() and (not bundle.is_dir() or any(bundle.iterdir())):  # not Parallax's: left alone
        raise SystemExit(f"{bundle} exists but is no bundle folder (no bundle.json in it); give --bundle a "
                         "solve result folder, or a path that does not exist yet to solve into")
    if not FOOTAGE.is_dir():
        raise SystemExit(f"no bundle at {bundle} and no footage at {FOOTAGE} to solve")
    print(f"no bundle at {bundle}: solving {FOOTAGE} (colmap, SIFT, 48 frames)")
    subprocess.run([backend_python, "-m", "backend", "solve", str(FOOTAGE), *SOLVE_ARGS, "--out", str(bundle)],
                   cwd=ROOT, check=True)
    return bundle


def import_solve(bundle: Path, **options) -> bpy.types.Collection:
    """Import with the add-on's operator (the import options as keywords); its collection."""
    if bpy.ops.parallax.import_bundle(filepath=str(bundle), **options) != {"FINISHED"}:
        raise SystemExit(f"could not import {bundle}")
    return latest_import()


def latest_import() -> bpy.types.Collection:
    """The collection of the newest Parallax import (what the panel shows by default)."""
    imports = [c for c in bpy.data.collections if "parallax_bundle_id" in c]
    return max(imports, key=lambda c: c.get("parallax_imported_at", 0.0))


class RecordingLayout:
    """Stands in for a panel's ``UILayout``: keeps the text the panel would draw, in order."""

    def __init__(self, lines: list, indent: str = ""):
        self.lines, self.indent = lines, indent

    def label(self, text: str = "", icon: str = "NONE", **_):
        self.lines.append(self.indent + ("(!) " if icon == "ERROR" else "") + text)

    def column(self, **_):
        return self

    row = box = column

    def template_icon(self, **_):
        self.lines.append(self.indent + "[the per-frame quality plot, as an image]")


def panel_readout(coll) -> list[str]:
    """What the Import section's result box shows for ``coll``: its name, then the panel's
    own ``draw_result`` lines (frames solved, points, reprojection error, lens, worst frame...)."""
    from parallax.panels import draw_result  # the add-on's package, importable once enabled

    lines = [coll.name]
    draw_result(RecordingLayout(lines, "  "), coll)
    return lines


def parts(coll) -> dict:
    """The import's objects by role (its names are '<collection> Camera', '... Points'...)."""
    objs = {o.name.removeprefix(coll.name + " "): o for o in coll.all_objects}
    if "Camera" not in objs or "Points" not in objs:
        raise SystemExit(f"{coll.name} has no camera or no points: this script renders camera solves "
                         f"(task {coll.get('parallax_task', 'solve')!r} was imported)")
    return {"camera": objs["Camera"], "points": objs["Points"], "plate": objs.get("Plate"),
            "path": objs.get("Camera Path"), "markers": objs.get("Camera Path Markers")}


def evaluated_points(obj) -> np.ndarray:
    """World positions of the points the point object shows now: the point cloud its Geometry
    Nodes make (an instance on the mesh object, in the evaluated depsgraph)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    for inst in depsgraph.object_instances:
        if inst.object.type == "POINTCLOUD" and inst.object.original == obj:
            cloud = inst.object.data
            co = np.empty(len(cloud.points) * 3, np.float32)
            cloud.attributes["position"].data.foreach_get("vector", co)
            M = np.array(inst.matrix_world)
            return co.reshape(-1, 3) @ M[:3, :3].T + M[:3, 3]
    return np.zeros((0, 3), np.float32)


def frame_points(obj, frame: int | None = None) -> np.ndarray:
    """The import's points of one scene frame (None: of all frames), in the importer's order
    (world positions)."""
    n = len(obj.data.vertices)
    co, frames = np.empty(n * 3, np.float32), np.empty(n, np.int32)
    obj.data.attributes["position"].data.foreach_get("vector", co)
    obj.data.attributes["frame"].data.foreach_get("value", frames)
    M = np.array(obj.matrix_world)
    keep = frames == frame if frame is not None else slice(None)
    return co.reshape(-1, 3)[keep] @ M[:3, :3].T + M[:3, 3]


def footage_residual(scene, camera, world: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Pixel distance between where the Blender camera projects each point and where the
    solve observed it in the footage (``uv``, pixel centres at integers): how well the
    imported camera (pose, lens, shift) fits the footage at this frame."""
    from bpy_extras.object_utils import world_to_camera_view

    w, h = scene.render.resolution_x, scene.render.resolution_y
    ndc = np.array([world_to_camera_view(scene, camera, Vector(p))[:2] for p in world])
    pixels = np.stack([ndc[:, 0] * w - 0.5, (1.0 - ndc[:, 1]) * h - 0.5], axis=1)
    return np.linalg.norm(pixels - uv, axis=1)


def fit_to_footage(scene, got: dict, bundle, frame: int) -> str:
    """How far the imported camera projects ``frame``'s points from where the solve observed
    them (the bundle's ``uv``), next to the solve's own error at that frame, as a sentence."""
    observed = bundle.points[frame - 1] if bundle.points else None  # bundle index = scene frame - 1
    world = frame_points(got["points"], frame)
    if observed is None or observed.uv is None or len(observed.uv) != len(world):
        return "the bundle has no observed pixel (uv) for each of its points; no fit measured"
    err = footage_residual(scene, got["camera"], world, observed.uv)
    own = (bundle.scores.get("frame_reprojection_error_px") or [None] * frame)[frame - 1]
    own = f"; the solve's own error there: {own:.2f} px" if isinstance(own, (int, float)) else ""
    return (f"the imported camera projects its {len(err)} points {np.mean(err):.2f} px (mean; median "
            f"{np.median(err):.2f}, max {np.max(err):.2f} px) from where the solve saw them in the footage{own}")


def busiest_frame(points_obj) -> int:
    """The scene frame holding the most points (the point mesh's ``frame`` attribute)."""
    frames = np.empty(len(points_obj.data.vertices), np.int32)
    points_obj.data.attributes["frame"].data.foreach_get("value", frames)
    return int(np.bincount(frames).argmax())


def edges_as_curve(name: str, verts: np.ndarray, edges, radius: float, color, collection) -> bpy.types.Object:
    """Line segments as a bevelled curve (one poly spline per edge): tubes Cycles renders,
    for meshes of many separate wire pieces, which the Skin modifier does not take well."""
    curve = bpy.data.curves.new(name, "CURVE")
    curve.dimensions, curve.bevel_depth, curve.bevel_resolution = "3D", radius, 2
    for a, b in edges:
        spline = curve.splines.new("POLY")
        spline.points.add(1)
        spline.points.foreach_set("co", np.array([[*verts[a], 1.0], [*verts[b], 1.0]], np.float32).ravel())
    obj = bpy.data.objects.new(name, curve)
    curve.materials.append(emission(name, color))
    collection.objects.link(obj)
    return obj


def guide_copies(parts_: dict, radius: float, collection) -> None:
    """Render-visible copies of the camera path and its frustum markers, which the importer
    keeps out of renders by design: emissive tubes of ``radius``, in ``collection`` (outside
    the import's never-rendered path collection; the originals stay as imported)."""
    path = parts_["path"]
    if path is not None:
        copy = path.copy()
        copy.data = path.data.copy()
        copy.name = f"render copy: {path.name}"
        copy.hide_render = False
        copy.data.bevel_depth, copy.data.bevel_resolution = radius, 2
        copy.data.materials.clear()
        copy.data.materials.append(emission(copy.name, PATH_COLOR))
        collection.objects.link(copy)
    markers = parts_["markers"]
    if markers is not None:
        mesh, M = markers.data, np.array(markers.matrix_world)
        co, edges = np.empty(len(mesh.vertices) * 3), np.empty(len(mesh.edges) * 2, np.int32)
        mesh.vertices.foreach_get("co", co)
        mesh.edges.foreach_get("vertices", edges)
        verts = co.reshape(-1, 3) @ M[:3, :3].T + M[:3, 3]
        edges = edges.reshape(-1, 2).tolist()
        edges_as_curve(f"render copy: {markers.name}", verts, edges, 0.6 * radius, MARKER_COLOR, collection)


def render_settings(scene, samples: int) -> None:
    world = bpy.data.worlds.new("dark")
    world.color = BACKGROUND
    scene.world = world
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples, scene.cycles.use_denoising = "CPU", samples, False
    scene.cycles.seed = 0
    # Every sample at its pixel's centre, and (see render) at twice the footage's size: each
    # footage texel covers exactly 2x2 render pixels, so averaging them down gives the footage
    # back unchanged (sharp, noise-free, a smaller PNG), while points and lines still get 4
    # samples along their edges.
    scene.cycles.filter_width = 0.01
    scene.render.image_settings.file_format, scene.render.image_settings.color_mode = "PNG", "RGB"


def render(scene, path: Path) -> np.ndarray:
    """Render the scene's camera to ``path``; its pixels at the scene's resolution (the
    supersampled render averaged down) as (H, W, 3) floats, top row first."""
    scene.render.filepath = str(path)
    scene.render.resolution_percentage = 100 * SUPERSAMPLE  # here: an import sets it back to 100
    t0 = time.perf_counter()
    bpy.ops.render.render(write_still=True)
    print(f"rendered {path.name} in {time.perf_counter() - t0:.1f} s")
    big = read_png(path)[..., :3]
    h, w = big.shape[0] // SUPERSAMPLE, big.shape[1] // SUPERSAMPLE
    return big[:h * SUPERSAMPLE, :w * SUPERSAMPLE].reshape(h, SUPERSAMPLE, w, SUPERSAMPLE, 3).mean(axis=(1, 3))


def read_png(path: Path) -> np.ndarray:
    """(H, W, 4) float pixels of a PNG as stored (display values), top row first."""
    image = bpy.data.images.load(str(path), check_existing=False)
    w, h = image.size
    px = np.empty(w * h * 4, np.float32)
    image.pixels.foreach_get(px)
    bpy.data.images.remove(image)
    return px.reshape(h, w, 4)[::-1]


def text_layer(lines: list[tuple[str, tuple]], width: int, height: int, work: Path) -> np.ndarray:
    """(H, W, 4) text of ``[(line, rgb), ...]`` drawn by blf (Blender's UI font) on a
    transparent buffer, one line every LINE_PX from the top; alpha is the glyph coverage."""
    buf = imbuf.new((width, height))
    font = 0
    with blf.bind_imbuf(font, buf):
        blf.size(font, FONT_PX)
        for i, (text, rgb) in enumerate(lines):
            blf.color(font, *rgb, 1.0)
            blf.position(font, 10, height - (i + 1) * LINE_PX, 0)  # blf's y goes up from the bottom
            blf.draw_buffer(font, text)
    path = work / "text.png"
    imbuf.write(buf, filepath=str(path))
    return read_png(path)


def wrap(text: str, width: int, indent: str = "    ") -> list[str]:
    """``text`` broken at spaces into lines blf draws within ``width`` pixels (the first
    line's leading spaces, plus ``indent``, start the others)."""
    blf.size(0, FONT_PX)
    lead = text[:len(text) - len(text.lstrip())] + indent
    lines, words = [], text.split(" ")
    line = words[0]
    for word in words[1:]:
        if blf.dimensions(0, f"{line} {word}")[0] > width - 20:
            lines.append(line)
            line = lead + word
        else:
            line = f"{line} {word}"
    return lines + [line]


def over(base: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """``layer`` (RGBA) composited over ``base`` (RGB)."""
    alpha = layer[..., 3:]
    return base * (1 - alpha) + layer[..., :3] * alpha


def compose(views: list[tuple[np.ndarray, str]], columns: list[tuple[str, list[str]]], work: Path) -> np.ndarray:
    """The renders side by side, each titled on a darkened band, over a strip of text
    columns (one per render, ``(heading, lines)`` each)."""
    title_h = LINE_PX + 8
    titled = []
    for view, title in views:
        view = view.copy()
        view[:title_h] *= 0.45
        view[:title_h] = over(view[:title_h], text_layer([(title, TEXT_RGB)], view.shape[1], title_h, work))
        titled.append(view)
    blocks = [[(heading, HEADING_RGB)] + [(w, TEXT_RGB) for line in lines for w in wrap(line, view.shape[1])]
              for (heading, lines), (view, _) in zip(columns, views)]
    strip_h = (max(len(b) for b in blocks) + 1) * LINE_PX - 6
    strips = []
    for block, (view, _) in zip(blocks, views):
        strip = np.empty((strip_h, view.shape[1], 3), np.float32)
        strip[:] = STRIP_RGB
        strips.append(over(strip, text_layer(block, view.shape[1], strip_h, work)))
    return np.concatenate([np.concatenate(titled, axis=1), np.concatenate(strips, axis=1)], axis=0)


def write_png(rgb: np.ndarray, path: Path, scene, bits: int) -> None:
    """Save (H, W, 3) display values as an 8-bit PNG at the highest compression, each channel
    rounded to ``bits`` bits first: footage is noisy in its low bits, and dropping them is
    what brings the image under the README's size budget (at 6 bits a step is 1/63, below
    what the eye tells apart on footage)."""
    h, w = rgb.shape[:2]
    levels = 2 ** bits - 1
    rgba = np.concatenate([np.round(np.clip(rgb, 0, 1) * levels) / levels, np.ones((h, w, 1))], axis=2)
    image = bpy.data.images.new("solve_render", w, h, alpha=False)
    image.pixels.foreach_set(np.ascontiguousarray(rgba[::-1], np.float32).ravel())
    settings = scene.render.image_settings
    settings.file_format, settings.color_mode, settings.color_depth, settings.compression = "PNG", "RGB", "8", 100
    # save_render writes with the scene's file settings; with the Standard view (which the
    # import sets) a byte image's values go out as they are.
    image.save_render(str(path), scene=scene)


def camera_view(scene, bundle: Path, args, work: Path) -> tuple[np.ndarray, str, int, list[str], list[str]]:
    """Render 1, through the solved camera: the footage with one frame's points as markers on
    it. Returns (pixels, title, scene frame, panel readout, measured lines)."""
    coll = import_solve(bundle, point_color="MARKER", point_size=args.marker_size, align_to_floor=args.floor,
                        path_marker_every=args.marker_every)
    got = parts(coll)
    readout = panel_readout(coll)
    print("\n".join(f"  panel: {line}" for line in readout))
    if got["path"] is None:
        raise SystemExit(f"{bundle} has no solved frame: there is no camera to render through")
    frame = args.frame or busiest_frame(got["points"])
    if not scene.frame_start <= frame <= scene.frame_end:
        raise SystemExit(f"--frame {frame} is outside the import's frames {scene.frame_start}-{scene.frame_end}")
    scene.frame_set(frame)
    shown = len(evaluated_points(got["points"]))
    from parallax.backend.bundle import read_bundle  # the seam, as the add-on reads it

    measured = [f"frame {frame}: {fit_to_footage(scene, got, read_bundle(bundle, load_depth=False), frame)}"]
    print(measured[0])
    pixels = render(scene, work / "camera_view.png")
    return pixels, f"through the solved camera, frame {frame}: footage + its {shown} points", frame, readout, measured


def outside_view(scene, bundle: Path, frame: int, args, work: Path) -> tuple[np.ndarray, str, str]:
    """Render 2, from behind the cameras and above: every frame's points in their colours, the
    path and its markers, and the camera at ``frame`` with its footage at the end of its
    frustum (the plate brought close). Returns (pixels, title, measured line)."""
    # Sizes and framing follow the bulk of the cloud: structure from motion leaves a few far
    # points, which the view may leave out. The first import's points are in the same world.
    cloud = frame_points(parts(latest_import())["points"])
    lo, hi = np.percentile(cloud, 5, axis=0), np.percentile(cloud, 95, axis=0)
    bulk = cloud[((cloud >= lo) & (cloud <= hi)).all(axis=1)]
    extent = float(np.linalg.norm(hi - lo))
    plate_distance = args.camera_size * extent
    coll = import_solve(bundle, point_color="IMAGE", show_all_frames=True, size_in_pixels=False,
                        point_size=args.cloud_point_size * extent, plate_distance=plate_distance,
                        align_to_floor=args.floor, path_marker_every=args.marker_every)  # replaces the first
    got = parts(coll)
    scene.frame_set(frame)
    shown = len(evaluated_points(got["points"]))
    guide_copies(got, 0.003 * extent, scene.collection)
    frustum(got["camera"], scene, plate_distance, 0.002 * extent, CAMERA_COLOR, scene.collection)
    centres = np.array([p.co[:3] for s in got["path"].data.splines for p in s.points])
    # Levelled, from the path's middle towards the cloud's: the way the cameras look.
    look = bulk.mean(0) - centres.mean(0)
    look[2] = 0.0
    look = look / np.linalg.norm(look) if np.linalg.norm(look) > 1e-9 else np.array([0.0, 1.0, 0.0])
    framed = np.concatenate([bulk, centres])
    scene.camera = look_from(scene, "outside view", framed.mean(0), -look + np.array([0.0, 0.0, args.elevation]),
                             framed, (scene.render.resolution_x, scene.render.resolution_y))
    pixels = render(scene, work / "outside_view.png")
    markers = got["markers"]["parallax_frames"] if got["markers"] else []
    measured = (f"outside view: {shown} point rows of {scene.frame_end - scene.frame_start + 1} frames (a 3D "
                f"point shows once per frame that saw it), the path through {len(centres)} camera centres, "
                f"{len(markers)} frustum markers (every {args.marker_every} frames), the camera at frame "
                f"{frame} with its footage")
    return pixels, f"outside: {shown} points of all frames, camera path, markers", measured


def main() -> int:
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=Path("/tmp/holo_solve"), help="a solve result folder; "
                    "made with the command above when it does not exist")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "solve_hololens.png")
    ap.add_argument("--frame", type=int, default=0, help="scene frame of the camera view; 0: the one with "
                                                         "the most points")
    ap.add_argument("--samples", type=int, default=16, help="Cycles samples")
    ap.add_argument("--marker-size", type=float, default=4.0, help="point size in footage pixels, camera view")
    ap.add_argument("--cloud-point-size", type=float, default=0.007, help="point size in the outside view, "
                                                                          "as a fraction of the cloud's extent")
    ap.add_argument("--camera-size", type=float, default=0.1, help="outside view: the camera's frustum depth "
                                                                   "(where its frame shows), a fraction of the extent")
    ap.add_argument("--marker-every", type=int, default=10, help="the import's Path Markers Every")
    ap.add_argument("--elevation", type=float, default=0.6, help="outside view: height over distance behind")
    ap.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                    help="the import's Align to Floor (only the outside view changes with it)")
    ap.add_argument("--bits", type=int, default=6, choices=range(4, 9), metavar="4..8",
                    help="bits per channel kept in the PNG (8: lossless)")
    ap.add_argument("--backend-python", default=str(ROOT / ".venv" / "bin" / "python"))
    args = ap.parse_args(argv)
    if args.out.suffix.lower() != ".png":
        raise SystemExit(f"--out {args.out} must be a .png")

    bundle = ensure_bundle(args.bundle.resolve(), args.backend_python)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    enable_addon()
    scene = bpy.context.scene
    render_settings(scene, args.samples)
    with tempfile.TemporaryDirectory(prefix="parallax_solve_render_") as tmp:
        work = Path(tmp)
        view1, title1, frame, readout, measured = camera_view(scene, bundle, args, work)
        view2, title2, line = outside_view(scene, bundle, frame, args, work)
        measured += [line, f"rendered by scripts/solve_render.py: Cycles, {args.samples} samples, "
                           f"{SUPERSAMPLE}x{SUPERSAMPLE} supersampled, {args.bits} bits a channel"]
        print("\n".join(measured[1:]))
        image = compose([(view1, title1), (view2, title2)],
                        [("panel readout (text): the N-panel's Import section", readout),
                         ("measured by this script", measured)], work)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_png(image, args.out, scene, args.bits)
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]}, {args.out.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
