"""Build Blender scene content from a result bundle (bpy side; never imports torch).

``import_bundle`` reads and validates the whole bundle before creating anything, so a bad
bundle raises :class:`BundleError` and leaves the scene untouched. Everything it creates goes
into one collection named after the bundle; importing the same bundle again replaces it.
"""

from __future__ import annotations

import time
from pathlib import Path

import bpy
import numpy as np

from ..backend.bundle import Bundle, BundleError, read_bundle
from . import camera as camera_importer
from . import plate as plate_importer
from . import points as points_importer
from .conventions import camera_pose_blender, floor_alignment, transform_points, world_transform
from .options import ImportOptions

__all__ = ["ImportOptions", "import_bundle", "BundleError", "collection_name"]

FRAME_START = 1


def collection_name(bundle_path: str | Path) -> str:
    return f"Parallax {Path(bundle_path).resolve().name}"


def import_bundle(context, path: str | Path, options: ImportOptions | None = None) -> bpy.types.Collection:
    """Import a bundle directory (or zip) into ``context.scene``; returns its collection."""
    options = options or ImportOptions()
    t0 = time.perf_counter()
    bundle = read_bundle(path, load_depth=False)
    scene = context.scene
    name = collection_name(bundle.path)
    _remove_collection(name)
    before = _snapshot()
    coll = bpy.data.collections.new(name)
    coll["parallax_bundle"] = str(bundle.path)
    scene.collection.children.link(coll)

    xyz = rgb = conf = frame = None
    if options.import_points and bundle.points:
        xyz, rgb, conf, frame = _gather_points(bundle, options.max_points_per_frame)
        footprint = _pixel_footprint(bundle, xyz, frame) * options.scale
    T = world_transform(options.scale)
    if options.align_to_floor and xyz is not None:
        floor = floor_alignment(transform_points(T, xyz))
        if floor is not None:
            T = world_transform(options.scale, floor)
    if xyz is not None:
        xyz = transform_points(T, xyz)

    if options.set_scene:
        _scene_settings(scene, bundle)

    cam = None
    if bundle.cameras:
        cam = camera_importer.create_camera(f"{name} Camera", bundle, T, FRAME_START, coll)
        if options.set_scene:
            camera_importer.render_settings(scene, bundle)
            scene.camera = cam

    cam_locations = np.array([camera_pose_blender(np.asarray(c.c2w), T)[0]
                              for c in bundle.cameras or [] if c.c2w is not None]).reshape(-1, 3)
    if bundle.frames and cam is not None:
        image = plate_importer.load_sequence(f"{name} Plate", str(bundle.frames[0]))
        if options.import_plate:
            distance = options.plate_distance or plate_importer.auto_distance(xyz, cam_locations)
            plate_importer.create_plate(f"{name} Plate", bundle, image, cam, FRAME_START, distance, coll)
        if options.camera_background:
            plate_importer.add_camera_background(cam, image, bundle.frame_count, FRAME_START)

    if xyz is not None and len(xyz):
        size = options.point_size or (1.5 if options.size_in_pixels else _auto_point_size(xyz, cam_locations))
        points_importer.create_points(f"{name} Points", xyz, rgb, conf, frame, footprint, coll, size,
                                      options.size_in_pixels, options.conf_threshold, options.show_all_frames,
                                      options.point_color)
    _tag_new(before, name)
    coll["parallax_warnings"] = _warnings(bundle)
    coll["parallax_import_seconds"] = time.perf_counter() - t0
    return coll


def _warnings(bundle: Bundle) -> list[str]:
    out = []
    cams = [c for c in bundle.cameras or [] if c.c2w is not None]
    if bundle.cameras and len(cams) < len(bundle.cameras):
        out.append(f"{len(bundle.cameras) - len(cams)} of {len(bundle.cameras)} frames have no solved camera "
                   "(no keys there)")
    ratios = [c.fx / c.fy for c in cams]
    if ratios and max(ratios) - min(ratios) > 1e-4 * max(ratios):
        # Pixel aspect is one render setting for the whole shot.
        out.append("fx/fy changes over the shot; Blender's pixel aspect follows the first solved frame")
    return out


def _gather_points(bundle: Bundle, max_per_frame: int = 0):
    """All frames' points in frame order, with the Blender frame each belongs to."""
    picks = [slice(None) if not max_per_frame or len(p.xyz) <= max_per_frame
             else np.linspace(0, len(p.xyz) - 1, max_per_frame).astype(np.int64) for p in bundle.points]
    counts = [len(p.xyz[k]) for p, k in zip(bundle.points, picks)]
    xyz = np.concatenate([p.xyz[k] for p, k in zip(bundle.points, picks)])
    rgb = np.concatenate([p.rgb[k] for p, k in zip(bundle.points, picks)])
    conf = np.concatenate([p.conf[k] for p, k in zip(bundle.points, picks)]).astype(np.float32)
    frame = np.repeat(np.arange(len(counts), dtype=np.int32) + FRAME_START, counts)
    return xyz, rgb, conf, frame


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
    # Non-integer rates (23.976) are fps / fps_base in Blender.
    fps = bundle.fps
    scene.render.fps = max(1, round(fps))
    scene.render.fps_base = scene.render.fps / fps
    scene.frame_start = FRAME_START
    scene.frame_end = FRAME_START + bundle.frame_count - 1
    scene.render.resolution_x = bundle.width
    scene.render.resolution_y = bundle.height
    scene.render.resolution_percentage = 100
    # The plate must come out as the footage: no filmic tone mapping of its pixels.
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"


# Every data-block an import creates carries this tag, so re-importing or removing the result
# finds all of them (materials referenced only from node sockets, actions, images) by one rule.
TAG = "parallax_import"
_ID_COLLECTIONS = ("objects", "meshes", "cameras", "images", "materials", "node_groups", "actions", "collections")


def _snapshot() -> set:
    return {id_ for attr in _ID_COLLECTIONS for id_ in getattr(bpy.data, attr)}


def _tag_new(before: set, name: str) -> None:
    for attr in _ID_COLLECTIONS:
        for id_ in getattr(bpy.data, attr):
            if id_ not in before:
                id_[TAG] = name


def _remove_collection(name: str) -> None:
    """Remove a previous import of the same bundle and every data-block it created."""
    doomed = [id_ for attr in _ID_COLLECTIONS for id_ in getattr(bpy.data, attr) if id_.get(TAG) == name]
    if doomed:
        bpy.data.batch_remove(doomed)
