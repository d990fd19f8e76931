"""Import of a ``pair_pose`` result (InterPose): two photos' cameras and the generated fly-through.

A pair bundle holds two frames, photo A and photo B, with their cameras: A at the origin and B
relative to it at baseline 1 (two images carry no scale). Its ``generated/`` folder, when the
backend generated in-between videos, holds the selected video as a bundle of its own: frames
the generator made up between A and B, and the cameras the estimator found on them (A at the
origin, the same baseline 1). What the import makes, in one collection:

- ``Camera A`` and ``Camera B``: still cameras with their photo as camera background and on an
  image plane in front of them. B stands ``baseline`` scene units from A, where ``baseline`` is
  the scene's pair Scale (the user's known distance, ``scene.parallax.pair_scale``) times the
  import option ``scale`` (1 unless set; it multiplies every result's lengths);
- ``Fly-through (generated)``: a camera keyed along the selected video's cameras with its frames
  as background and image plane, so the artist sees the imagined walk from A to B, and a thin
  curve along that path. Named "generated" throughout: none of it is footage;
- the scores on the collection (``parallax_pair``: reliability grade, D_total, agreement...) and
  the lines the panel shows (``parallax_summary``).

Like every import it is all or nothing (the transaction of :func:`importers.import_bundle`):
both bundles are read and every value checked against what Blender holds before the scene
changes, and a failure midway removes what was made.
"""

from __future__ import annotations

import dataclasses
import math
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import bpy
import numpy as np

from ..backend.bundle import Bundle, BundleError, CameraFrame, read_bundle
from . import camera as camera_importer
from . import plate as plate_importer
from .conventions import blender_intrinsics, camera_pose_blender, quaternions_continuous, world_transform
from .materials import emission_material
from .options import ImportOptions

TASK = "pair_pose"
FRAME_START = 1
# Image planes stand this fraction of the baseline in front of their camera: close enough that
# the two photos do not cross each other at wide angles, far enough to read as each camera's view.
PLANE_DISTANCE = 0.4
PATH_RADIUS = 0.006  # of the baseline: the fly-through curve's thickness
PATH_COLOR = (1.0, 0.45, 0.05)  # orange: made up, not solved


@dataclass
class _PairPlan:
    """Everything the pair import puts into the scene, computed and checked up front."""

    T: np.ndarray  # bundle (OpenCV) world -> Blender world, lengths times the baseline
    baseline: float  # scene units between A and B at baseline 1
    plane_distance: float
    generated: Optional[Bundle] = None
    path: Optional[np.ndarray] = None  # (N, 3) fly-through camera centres, Blender world


def scene_baseline(scene) -> float:
    """The scene's pair Scale (the known baseline), 1 for a scene without Parallax settings."""
    settings = getattr(scene, "parallax", None)
    return float(getattr(settings, "pair_scale", 1.0)) if settings is not None else 1.0


def import_pair(context, source: Path, bundle: Bundle, options: ImportOptions) -> bpy.types.Collection:
    """Import a read ``pair_pose`` bundle into ``context.scene``; returns its collection."""
    from . import _check_blender_ranges, _Plan, all_or_nothing, collection_name

    t0 = time.perf_counter()
    plan = _plan(bundle, options, scene_baseline(context.scene))
    # Blender's limits, for the photos' cameras and the fly-through's (no points in either).
    checked = dataclasses.replace(options, scale=plan.baseline)
    _check_blender_ranges(bundle, checked, _Plan(T=plan.T, plate_distance=plan.plane_distance))
    if plan.generated is not None:
        _check_blender_ranges(plan.generated, checked, _Plan(T=plan.T, plate_distance=plan.plane_distance))
    scene = context.scene
    name = collection_name(source if source.is_file() else bundle.path)

    coll = all_or_nothing(scene, bundle, lambda: _build(scene, bundle, options, plan, name))
    facts = pair_facts(bundle, plan.baseline)
    coll["parallax_pair"] = facts
    coll["parallax_summary"] = summary_lines(facts)
    coll["parallax_warnings"] = _warnings(plan)
    coll["parallax_imported_at"] = time.time()  # the panel shows the latest import's readout
    coll["parallax_import_seconds"] = time.perf_counter() - t0
    return coll


# -- plan ------------------------------------------------------------------------------------

def _plan(bundle: Bundle, options: ImportOptions, pair_scale: float) -> _PairPlan:
    meta = bundle.path / "bundle.json"
    baseline = float(options.scale) * float(pair_scale)
    if not (math.isfinite(baseline) and baseline > 0):
        raise BundleError(meta, f"the baseline {baseline:g} (pair Scale {pair_scale:g} x import Scale "
                                f"{options.scale:g}) must be a positive number")
    if bundle.frame_count != 2 or not bundle.frames or not bundle.cameras:
        raise BundleError(meta, f"a pair_pose result holds two photos with their cameras; this one has "
                                f"{bundle.frame_count} frame(s), frames {'present' if bundle.frames else 'missing'}, "
                                f"cameras {'present' if bundle.cameras else 'missing'}")
    for cam in bundle.cameras:
        if cam.c2w is None:
            raise BundleError(bundle.path / "cameras.json", f"frames[{cam.index}] has no camera: a pair result "
                                                            "places both photos")
    plan = _PairPlan(T=world_transform(baseline), baseline=baseline,
                     plane_distance=options.plate_distance or PLANE_DISTANCE * baseline)
    plan.generated = _read_generated(bundle)
    if plan.generated is not None and plan.generated.cameras:
        with np.errstate(all="ignore"):  # overflow is looked for by the range checks, by value
            plan.path = np.array([camera_pose_blender(np.asarray(c.c2w), plan.T)[0]
                                  for c in plan.generated.cameras if c.c2w is not None]).reshape(-1, 3)
    return plan


def _read_generated(bundle: Bundle) -> Optional[Bundle]:
    """The selected generated video's bundle (``source.generated.bundle``), None when the
    backend generated none (pair-only, identical images). It must lie inside the pair's folder."""
    info = (bundle.source or {}).get("generated")
    if not info:
        return None
    meta = bundle.path / "bundle.json"
    rel = info.get("bundle") if isinstance(info, dict) else None
    if not isinstance(rel, str) or not rel:
        raise BundleError(meta, "field 'source.generated.bundle' must name the generated video's folder")
    folder = (bundle.path / rel).resolve()
    if folder == bundle.path or bundle.path not in folder.parents:
        raise BundleError(meta, f"field 'source.generated.bundle' {rel!r} points outside the bundle folder")
    generated = read_bundle(folder, load_points=False, load_depth=False)
    if not generated.frames:
        raise BundleError(folder / "bundle.json", "the generated video has no frames")
    return generated


# -- build -----------------------------------------------------------------------------------

def _build(scene, bundle: Bundle, options: ImportOptions, plan: _PairPlan, name: str) -> bpy.types.Collection:
    coll = bpy.data.collections.new(name)
    coll["parallax_bundle"] = str(bundle.path)
    coll["parallax_bundle_id"] = bundle.id
    coll["parallax_task"] = TASK
    scene.collection.children.link(coll)

    cams = []
    for label, cam, frame in zip("AB", bundle.cameras, bundle.frames):
        obj = _still_camera(f"{name} Camera {label}", cam, bundle.width, bundle.height, plan.T, coll)
        image = bpy.data.images.load(str(frame), check_existing=False)
        image.name = f"{name} Photo {label}"
        if options.import_plate:
            single = types.SimpleNamespace(width=bundle.width, height=bundle.height, frame_count=1,
                                           cameras=[dataclasses.replace(cam, index=0)])
            plate_importer.create_plate(f"{name} Photo {label} Plane", single, image, obj, FRAME_START,
                                        plan.plane_distance, coll)
        if options.camera_background:
            _still_background(obj, image)
        cams.append(obj)

    fly = None
    gen = plan.generated
    if gen is not None:
        label = f"{name} Fly-through (generated)"
        fly = camera_importer.create_camera(label, gen, plan.T, FRAME_START, coll)
        fly["parallax_generated"] = True  # made up by the generator: never footage
        if gen.cameras:
            frames = plate_importer.load_sequence(f"{label} Frames", str(gen.frames[0]))
            if options.import_plate:
                plate_importer.create_plate(f"{label} Plane", gen, frames, fly, FRAME_START, plan.plane_distance, coll)
            if options.camera_background:
                plate_importer.add_camera_background(fly, frames, gen.frame_count, FRAME_START)
        if plan.path is not None and len(plan.path) > 1:
            _path_curve(f"{name} Fly-through path (generated)", plan.path, PATH_RADIUS * plan.baseline, coll)

    if options.set_scene:
        _scene_settings(scene, bundle, gen)
        scene.camera = cams[0]
    return coll


def _still_camera(name: str, cam: CameraFrame, width: int, height: int, T: np.ndarray, coll) -> bpy.types.Object:
    """A camera object at one pose, no keys (the user may move it; nothing snaps it back)."""
    data = bpy.data.cameras.new(name)
    obj = bpy.data.objects.new(name, data)
    coll.objects.link(obj)
    loc, R = camera_pose_blender(np.asarray(cam.c2w), T)
    obj.rotation_mode = "QUATERNION"
    obj.location = loc
    obj.rotation_quaternion = quaternions_continuous(R[None])[0]
    intr = blender_intrinsics(cam.fx, cam.fy, cam.cx, cam.cy, width, height)
    data.sensor_fit = "HORIZONTAL"
    data.sensor_width, data.lens = intr["sensor_width"], intr["lens"]
    data.shift_x, data.shift_y = intr["shift_x"], intr["shift_y"]
    data.clip_start, data.clip_end = 0.01, 1000.0
    return obj


def _still_background(obj, image) -> None:
    bg = obj.data.background_images.new()
    bg.image = image
    bg.alpha = 1.0
    obj.data.show_background_images = True


def _path_curve(name: str, centres: np.ndarray, radius: float, coll) -> bpy.types.Object:
    """A thin tube through the fly-through's camera centres: the imagined path, renderable."""
    curve = bpy.data.curves.new(name, "CURVE")
    curve.dimensions, curve.bevel_depth, curve.bevel_resolution = "3D", radius, 2
    spline = curve.splines.new("POLY")
    spline.points.add(len(centres) - 1)
    for point, c in zip(spline.points, centres):
        point.co = (*c, 1.0)
    mat, emit = emission_material(name)
    emit.inputs["Color"].default_value = (*PATH_COLOR, 1.0)
    curve.materials.append(mat)
    obj = bpy.data.objects.new(name, curve)
    obj.hide_select = True
    coll.objects.link(obj)
    return obj


def _scene_settings(scene, bundle: Bundle, gen: Optional[Bundle]) -> None:
    """The photos' resolution and pixel aspect (camera A renders exactly photo A's framing); the
    frame range and rate of the fly-through, or frame 1 alone without one."""
    from . import _blender_fps

    camera_importer.render_settings(scene, bundle)
    scene.render.fps, scene.render.fps_base = _blender_fps(gen.fps if gen is not None else 24.0)
    scene.frame_start = FRAME_START
    scene.frame_end = FRAME_START + (gen.frame_count - 1 if gen is not None else 0)
    # The photos must come out as they are: no filmic tone mapping of their pixels.
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"


# -- what the panel shows --------------------------------------------------------------------

def _number(x) -> Optional[float]:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def pair_facts(bundle: Bundle, baseline: float) -> dict:
    """The result's scores as the panel shows them (plain numbers and words; None: not known)."""
    s, src = bundle.scores or {}, bundle.source or {}
    c2w = bundle.cameras[1].c2w
    distance = float(np.linalg.norm(np.asarray(c2w)[:3, 3])) * baseline
    facts = {"method": str(s.get("method", "")), "reliability": str(s.get("reliability", "unknown")),
             "d_total": _number(s.get("d_total")), "d_med": _number(s.get("d_med")),
             "agreement": _number(s.get("top_agreement")), "rotation_deg": _number(s.get("rotation_deg")),
             "videos": int(s["videos"]) if isinstance(s.get("videos"), int) else 0,
             "baseline": distance, "scale": baseline,
             "notes": [str(n) for n in src.get("notes") or []]}
    return {k: v for k, v in facts.items() if v is not None}  # ID properties hold no None


def summary_lines(facts: dict) -> list[str]:
    """The pair result in lines for a person: the grade first, then what it rests on."""
    lines = [f"Reliability: {facts.get('reliability', 'unknown')}"]
    if "d_total" in facts:
        lines.append(f"D_total {facts['d_total']:.1f} deg (D_med {facts.get('d_med', float('nan')):.1f})")
    elif facts.get("method") == "pair-only":
        lines.append("pair-only estimate: no generated video to check it")
    if "agreement" in facts:
        lines.append(f"top videos agree within {facts['agreement']:.1f} deg")
    elif facts.get("videos", 0) == 1:
        lines.append("agreement: one video only, nothing to compare")
    if "rotation_deg" in facts:
        lines.append(f"B turned {facts['rotation_deg']:.1f} deg from A, {facts['baseline']:.3g} units away")
    lines.extend(facts.get("notes", []))
    return lines


def _warnings(plan: _PairPlan) -> list[str]:
    gen = plan.generated
    if gen is None:
        return []
    solved = sum(c.c2w is not None for c in gen.cameras or [])
    if not gen.cameras or solved == 0:
        return ["the generated video's cameras could not be estimated: the fly-through camera has no keys"]
    if solved < gen.frame_count:
        return [f"{gen.frame_count - solved} of {gen.frame_count} generated frames have no camera (no keys there)"]
    return []
