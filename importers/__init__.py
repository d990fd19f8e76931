"""Build Blender scene content from a result bundle (bpy side; never imports torch).

``import_bundle`` is all or nothing. It reads and validates the whole bundle, then computes
every value the scene will get (poses, lens, shifts, plate keys, point positions, frame rate
and range) and checks each against what Blender can hold, all before the scene changes: a bad
bundle raises :class:`BundleError` and leaves the scene untouched. Should Blender itself fail
midway, everything the import made is removed and the scene settings are put back.

Everything it creates goes into one collection, tagged with the bundle's identity (the id in
its bundle.json, which copies and extractions keep). Importing the same bundle again replaces
that import; a different bundle that happens to sit in a folder of the same name does not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import bpy
import numpy as np

from ..backend.bundle import ARRAY_NAME, FLOAT32_MAX, Bundle, BundleError, read_bundle
from . import camera as camera_importer
from . import lens as lens_importer
from . import path as path_importer
from . import plate as plate_importer
from . import points as points_importer
from . import quality
from .conventions import (blender_intrinsics, camera_pose_blender, floor_alignment, transform_points,
                          world_transform)
from .options import ImportOptions

__all__ = ["ImportOptions", "import_bundle", "BundleError", "collection_name"]

FRAME_START = 1
# Blender's own hard limits on what an import sets (RNA ranges in Blender 4.2 to 5.x).
MAX_BLENDER_FRAME = 1048574
MIN_RESOLUTION, MAX_RESOLUTION = 4, 65536
MAX_FPS_INT, FPS_BASE_RANGE = 32767, (1e-5, 1e6)
MIN_LENS_MM = 1.0
MAX_PIXEL_ASPECT = 200.0


def collection_name(bundle_path: str | Path) -> str:
    """The collection's label: ``Parallax <bundle folder>`` (or ``<zip name>``). A label
    only; an import is found by the bundle's identity (its TAG)."""
    p = Path(bundle_path)
    return f"Parallax {p.stem if p.suffix.lower() == '.zip' else p.resolve().name}"


def all_or_nothing(scene, bundle: Bundle, build: Callable[[], "bpy.types.Collection"]) -> "bpy.types.Collection":
    """Run ``build`` (which makes an import's data-blocks and returns its collection) so that the
    import is all or nothing. The earlier import of this bundle stays until the new one is
    complete, under other names so the new data-blocks get the proper ones; a failure removes
    what ``build`` made and puts the earlier import and the scene settings back as they were."""
    earlier = _earlier_import(bundle)
    old_names = _rename_aside(earlier)
    saved = _scene_state(scene)
    before = _snapshot()
    try:
        coll = build()
        _tag_new(before, bundle.id)
    except BaseException:
        _discard_new(before)
        _restore_scene(scene, saved)
        for id_, old_name in old_names:
            id_.name = old_name
        raise
    if earlier:
        bpy.data.batch_remove(earlier)
    return coll


def import_bundle(context, path: str | Path, options: ImportOptions | None = None) -> bpy.types.Collection:
    """Import a bundle directory (or zip) into ``context.scene``; returns its collection."""
    options = options or ImportOptions()
    t0 = time.perf_counter()
    source = Path(path)
    bundle = read_bundle(source, load_depth=False)
    if bundle.task == "pair_pose":  # two photos' cameras and the generated fly-through
        from .pair import import_pair
        return import_pair(context, source, bundle, options)
    plan = _plan(bundle, options)  # raises BundleError: nothing has changed yet
    scene = context.scene
    name = collection_name(source if source.is_file() else bundle.path)

    coll = all_or_nothing(scene, bundle, lambda: _build(scene, bundle, options, plan, name))
    coll["parallax_warnings"] = _warnings(bundle, options)
    # The panel shows the result's quality from these (see quality.py).
    coll["parallax_summary"] = quality.summary_lines(bundle, FRAME_START)
    coll["parallax_unsolved_frames"] = quality.unsolved_frames(bundle, FRAME_START)
    coll["parallax_imported_at"] = time.time()  # the panel shows the latest import's quality
    coll["parallax_import_seconds"] = time.perf_counter() - t0
    return coll


@dataclass
class _Plan:
    """Everything the import puts into the scene, computed (and checked) up front."""

    T: np.ndarray
    xyz: Optional[np.ndarray] = None  # Blender world, float32
    rgb: Optional[np.ndarray] = None
    conf: Optional[np.ndarray] = None
    frame: Optional[np.ndarray] = None
    footprint: Optional[np.ndarray] = None
    dynamic: Optional[np.ndarray] = None
    point_size: float = 0.0
    plate_distance: float = 0.0


def _plan(bundle: Bundle, options: ImportOptions) -> _Plan:
    xyz = None
    plan = _Plan(T=world_transform(options.scale))
    with np.errstate(all="ignore"):  # overflow is looked for below, by value
        if options.import_points and bundle.points:
            xyz, plan.rgb, plan.conf, plan.frame, plan.dynamic = _gather_points(bundle, options.max_points_per_frame)
            plan.footprint = _pixel_footprint(bundle, xyz, plan.frame) * np.float32(options.scale)
        if options.align_to_floor and xyz is not None and np.isfinite(xyz).all():
            floor = floor_alignment(transform_points(plan.T, xyz))
            if floor is not None:
                plan.T = world_transform(options.scale, floor)
        if xyz is not None:
            plan.xyz = transform_points(plan.T, xyz)
        cam_locations = np.array([camera_pose_blender(np.asarray(c.c2w), plan.T)[0]
                                  for c in bundle.cameras or [] if c.c2w is not None]).reshape(-1, 3)
        if bundle.frames and bundle.cameras and options.import_plate:
            plan.plate_distance = options.plate_distance or plate_importer.auto_distance(plan.xyz, cam_locations)
        if plan.xyz is not None and len(plan.xyz):
            plan.point_size = options.point_size or (1.5 if options.size_in_pixels
                                                     else _auto_point_size(plan.xyz, cam_locations))
        _check_blender_ranges(bundle, options, plan)
    return plan


def _check_blender_ranges(bundle: Bundle, options: ImportOptions, plan: _Plan) -> None:
    """Refuse, naming file and field, any value Blender would clamp, overflow to infinity
    (it stores float32) or refuse halfway through the import."""
    meta = bundle.path / "bundle.json"
    cams_file = bundle.path / "cameras.json"
    scaled = f" (with Scale {options.scale:g})" if options.scale != 1.0 else ""
    if not _finite32(plan.T):
        raise BundleError(meta, f"the scene transform is not finite{scaled}")
    if bundle.frame_count > MAX_BLENDER_FRAME - FRAME_START:
        raise BundleError(meta, f"frame_count {bundle.frame_count} goes past Blender's last frame {MAX_BLENDER_FRAME}")
    if options.set_scene:
        if min(bundle.width, bundle.height) < MIN_RESOLUTION or max(bundle.width, bundle.height) > MAX_RESOLUTION:
            raise BundleError(meta, f"{bundle.width}x{bundle.height} is outside Blender's render sizes "
                                    f"({MIN_RESOLUTION} to {MAX_RESOLUTION} pixels a side)")
        fps_int, fps_base = _blender_fps(bundle.fps)
        if not (1 <= fps_int <= MAX_FPS_INT and FPS_BASE_RANGE[0] <= fps_base <= FPS_BASE_RANGE[1]):
            raise BundleError(meta, f"fps {bundle.fps:g} cannot be set in Blender")
    first = True
    for cam in bundle.cameras or []:
        if cam.c2w is None:
            continue
        where = f"frames[{cam.index}]"
        loc, R = camera_pose_blender(np.asarray(cam.c2w), plan.T)
        if not (_finite32(loc) and _finite32(R)):
            raise BundleError(cams_file, f"{where}.c2w puts the camera at an infinite position in Blender{scaled}")
        intr = blender_intrinsics(cam.fx, cam.fy, cam.cx, cam.cy, bundle.width, bundle.height)
        if not _finite32([intr[k] for k in ("lens", "shift_x", "shift_y", "pixel_aspect_x", "pixel_aspect_y")]):
            raise BundleError(cams_file, f"{where} intrinsics overflow Blender's camera settings")
        if intr["lens"] < MIN_LENS_MM:
            raise BundleError(cams_file, f"{where}.fx {cam.fx:g} needs a {intr['lens']:.3g} mm lens for a "
                                         f"{intr['sensor_width']:g} mm sensor; Blender's shortest is {MIN_LENS_MM:g} mm "
                                         f"(a field of view over 174 degrees)")
        if first and options.set_scene and max(intr["pixel_aspect_x"], intr["pixel_aspect_y"]) > MAX_PIXEL_ASPECT:
            raise BundleError(cams_file, f"{where} fx/fy = {cam.fx / cam.fy:.3g}: Blender's pixel aspect "
                                         f"goes up to {MAX_PIXEL_ASPECT:g}")
        first = False
        if plan.plate_distance:
            d = plan.plate_distance
            keys = (d / cam.fx, d / cam.fy, cam.cx * d / cam.fx, cam.cy * d / cam.fy)
            if not _finite32(keys):
                raise BundleError(cams_file, f"{where}: the image plane's keys overflow (plane distance {d:g})")
    if plan.plate_distance and not (_finite32(plan.plate_distance) and plan.plate_distance > 0):
        raise BundleError(meta, f"the image plane distance {plan.plate_distance:g} is not usable{scaled}")
    if plan.xyz is not None and len(plan.xyz):
        for values, what in ((plan.xyz, "points"), (plan.footprint, "point sizes")):
            bad = ~np.isfinite(values).reshape(len(values), -1).all(axis=1)
            if bad.any():
                index = int(plan.frame[np.argmax(bad)]) - FRAME_START
                raise BundleError(bundle.path / "points" / ARRAY_NAME.format(index),
                                  f"field 'xyz': {what} overflow float32 in Blender's world{scaled}")
        if not _finite32(plan.point_size):
            raise BundleError(meta, f"the automatic point size is not finite{scaled}")


def _finite32(values) -> bool:
    a = np.asarray(values, dtype=np.float64)
    return bool(np.isfinite(a).all() and (np.abs(a) <= FLOAT32_MAX).all())


def _blender_fps(fps: float) -> tuple[int, float]:
    # Non-integer rates (23.976) are fps / fps_base in Blender.
    fps_int = max(1, round(fps))
    return fps_int, fps_int / fps


def _build(scene, bundle: Bundle, options: ImportOptions, plan: _Plan, name: str) -> bpy.types.Collection:
    coll = bpy.data.collections.new(name)
    coll["parallax_bundle"] = str(bundle.path)
    coll["parallax_bundle_id"] = bundle.id
    scene.collection.children.link(coll)

    if options.set_scene:
        _scene_settings(scene, bundle)

    cam = None
    if bundle.cameras:
        cam = camera_importer.create_camera(f"{name} Camera", bundle, plan.T, FRAME_START, coll)
        if options.set_scene:
            camera_importer.render_settings(scene, bundle)
            scene.camera = cam

    if bundle.frames and cam is not None:
        # With a lens distortion, the pinhole camera matches the undistorted frames only.
        plate_frames = bundle.undistorted or bundle.frames
        image = plate_importer.load_sequence(f"{name} Plate", str(plate_frames[0]))
        if options.import_plate:
            plate_importer.create_plate(f"{name} Plate", bundle, image, cam, FRAME_START, plan.plate_distance, coll)
        if options.camera_background:
            plate_importer.add_camera_background(cam, image, bundle.frame_count, FRAME_START)

    lens_cam = _lens_camera(bundle)
    if options.movie_clip and bundle.frames and lens_cam is not None:
        lens = lens_importer.clip_lens(lens_cam.fx, lens_cam.fy, lens_cam.cx, lens_cam.cy, lens_cam.dist,
                                       bundle.width, bundle.height)
        clip = lens_importer.load_movie_clip(f"{name} Footage", str(bundle.frames[0]), lens, FRAME_START)
        coll["parallax_movie_clip"] = clip.name
        coll["parallax_redistort_group"] = lens_importer.redistort_node_group(f"{name} Redistort", clip).name
        if options.set_scene:
            scene.active_clip = clip  # what the Clip Editor and new Movie Distortion nodes pick up

    if options.camera_path and bundle.cameras:
        path_importer.create_camera_path(f"{name} Camera Path", bundle, plan.T, options.path_marker_every, coll)

    plot = (bundle.plots or {}).get(quality.PLOT)
    if plot is not None:
        coll["parallax_quality_plot"] = quality.load_plot(f"{name} Quality", plot).name

    if plan.xyz is not None and len(plan.xyz):
        points_importer.create_points(f"{name} Points", plan.xyz, plan.rgb, plan.conf, plan.frame, plan.footprint,
                                      coll, plan.point_size, options.size_in_pixels, options.conf_threshold,
                                      options.show_all_frames, options.point_color, dynamic=plan.dynamic,
                                      show_static=options.show_static, show_dynamic=options.show_dynamic,
                                      accumulate_static=options.accumulate_static)
    return coll


def _lens_camera(bundle: Bundle):
    """The camera whose lens distortion the Movie Clip carries: the first solved one with a
    distortion (one clip has one lens), else the first with one; None without distortion."""
    with_dist = [c for c in bundle.cameras or [] if c.dist is not None]
    return next((c for c in with_dist if c.c2w is not None), with_dist[0] if with_dist else None)


def _warnings(bundle: Bundle, options: ImportOptions) -> list[str]:
    out = []
    cams = [c for c in bundle.cameras or [] if c.c2w is not None]
    if bundle.cameras and len(cams) < len(bundle.cameras):
        out.append(f"{len(bundle.cameras) - len(cams)} of {len(bundle.cameras)} frames have no solved camera "
                   f"(no pose keys there; the camera's '{camera_importer.SOLVED_PROPERTY}' channel is 0 there)")
    lens_cam = _lens_camera(bundle)
    if lens_cam is not None:
        if bundle.frames and not bundle.undistorted and (options.import_plate or options.camera_background):
            out.append("the bundle has a lens distortion but no undistorted frames: the plate shows the footage "
                       "as shot, which the pinhole camera matches only near the centre")
        if options.movie_clip and abs(lens_cam.fx / lens_cam.fy - 1.0) > lens_importer.FOCAL_ASPECT_TOLERANCE:
            out.append(f"fx/fy = {lens_cam.fx / lens_cam.fy:.4f}: the Movie Clip's lens has one focal length (fx), "
                       "so its distortion is approximate in y")
        if len({tuple(c.dist) for c in bundle.cameras if c.dist is not None}) > 1 and options.movie_clip:
            out.append(f"the lens distortion changes over the shot; the Movie Clip carries frame "
                       f"{lens_cam.index}'s")
    ratios = [c.fx / c.fy for c in cams]
    if ratios and max(ratios) - min(ratios) > 1e-4 * max(ratios):
        # Pixel aspect is one render setting for the whole shot.
        out.append("fx/fy changes over the shot; Blender's pixel aspect follows the first solved frame")
    return out


def _gather_points(bundle: Bundle, max_per_frame: int = 0):
    """All frames' points in frame order, with the Blender frame each belongs to, and the
    dynamic flags (None when no frame has any; a frame without flags counts as static)."""
    picks = [slice(None) if not max_per_frame or len(p.xyz) <= max_per_frame
             else np.linspace(0, len(p.xyz) - 1, max_per_frame).astype(np.int64) for p in bundle.points]
    counts = [len(p.xyz[k]) for p, k in zip(bundle.points, picks)]
    xyz = np.concatenate([p.xyz[k] for p, k in zip(bundle.points, picks)])
    rgb = np.concatenate([p.rgb[k] for p, k in zip(bundle.points, picks)])
    conf = np.concatenate([p.conf[k] for p, k in zip(bundle.points, picks)]).astype(np.float32)
    frame = np.repeat(np.arange(len(counts), dtype=np.int32) + FRAME_START, counts)
    dynamic = None
    if any(p.dynamic is not None for p in bundle.points):
        dynamic = np.concatenate([np.zeros(c, bool) if p.dynamic is None else p.dynamic[k]
                                  for p, k, c in zip(bundle.points, picks, counts)])
    return xyz, rgb, conf, frame, dynamic


def _pixel_footprint(bundle: Bundle, xyz: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """World size of one pixel at each point, seen from its own frame's camera (bundle units).

    Points of frames without a solved camera get the median footprint of the others.
    """
    out = np.full(len(xyz), np.nan, np.float32)
    bounds = np.searchsorted(frame, np.arange(bundle.frame_count + 1) + FRAME_START)
    for cam in bundle.cameras or []:
        lo, hi = bounds[cam.index], bounds[cam.index + 1]
        if cam.c2w is not None and hi > lo:
            centre = np.asarray(cam.c2w, np.float32)[:3, 3]
            out[lo:hi] = np.linalg.norm(xyz[lo:hi] - centre, axis=1) / np.sqrt(cam.fx * cam.fy)
    missing = np.isnan(out)
    out[missing] = np.nanmedian(out) if (~missing).any() else 0.01
    return out


def _auto_point_size(xyz: np.ndarray, cam_locations: np.ndarray) -> float:
    # About 1/300 of the typical viewing distance: a few pixels wide at usual focal lengths.
    ref = cam_locations[0] if len(cam_locations) else xyz.mean(axis=0)
    sample = xyz[:: max(1, len(xyz) // 20000)]
    return float(max(np.median(np.linalg.norm(sample - ref, axis=1)) / 300.0, 1e-4))


def _scene_settings(scene, bundle: Bundle) -> None:
    scene.render.fps, scene.render.fps_base = _blender_fps(bundle.fps)
    scene.frame_start = FRAME_START
    scene.frame_end = FRAME_START + bundle.frame_count - 1
    scene.render.resolution_x = bundle.width
    scene.render.resolution_y = bundle.height
    scene.render.resolution_percentage = 100
    # The plate must come out as the footage: no filmic tone mapping of its pixels.
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"


# What an import may change on the scene, put back when it fails. Order matters: Blender
# pushes frame_end along when frame_start passes it.
_SCENE_FIELDS = (("render", "fps"), ("render", "fps_base"), (None, "frame_start"), (None, "frame_end"),
                 ("render", "resolution_x"), ("render", "resolution_y"), ("render", "resolution_percentage"),
                 ("render", "pixel_aspect_x"), ("render", "pixel_aspect_y"),
                 ("view_settings", "view_transform"), ("view_settings", "look"), (None, "camera"),
                 (None, "active_clip"))


def _scene_state(scene) -> list:
    return [(owner, attr, getattr(getattr(scene, owner) if owner else scene, attr)) for owner, attr in _SCENE_FIELDS]


def _restore_scene(scene, saved: list) -> None:
    for owner, attr, value in saved:
        try:
            setattr(getattr(scene, owner) if owner else scene, attr, value)
        except (ReferenceError, TypeError, ValueError, AttributeError):
            pass  # e.g. a camera that is gone: the rest still goes back


# Every data-block an import creates carries this tag (the bundle's identity), so re-importing
# or removing the result finds all of them (materials referenced only from node sockets,
# actions, images) by one rule.
TAG = "parallax_import"
_ID_COLLECTIONS = ("objects", "meshes", "cameras", "images", "materials", "node_groups", "actions", "collections",
                   "movieclips", "curves")


def _all_ids() -> list:
    return [id_ for attr in _ID_COLLECTIONS for id_ in getattr(bpy.data, attr)]


def _snapshot() -> set:
    return set(_all_ids())


def _tag_new(before: set, bundle_id: str) -> None:
    for id_ in _all_ids():
        if id_ not in before:
            id_[TAG] = bundle_id


def _discard_new(before: set) -> None:
    new = [id_ for id_ in _all_ids() if id_ not in before]
    if new:
        bpy.data.batch_remove(new)


def _earlier_import(bundle: Bundle) -> list:
    """Every data-block of an earlier import of this bundle. Imports made before bundles had
    an identity were tagged with their collection's name; they count when that collection
    was imported from this very folder."""
    legacy = {c.name for c in bpy.data.collections
              if c.get(TAG) == c.name and "parallax_bundle_id" not in c
              and _same_path(c.get("parallax_bundle"), bundle.path)}
    return [id_ for id_ in _all_ids() if id_.get(TAG) == bundle.id or (legacy and id_.get(TAG) in legacy)]


def _same_path(stored, path: Path) -> bool:
    try:
        return isinstance(stored, str) and Path(stored).resolve() == path
    except (OSError, RuntimeError):
        return False


def _rename_aside(ids: list) -> list:
    """Give ``ids`` temporary names; returns [(id, old name)] to undo it."""
    renamed = []
    for id_ in ids:
        renamed.append((id_, id_.name))
        id_.name = f"{id_.name[:40]} (replaced)"
    return renamed
