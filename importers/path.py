"""The solved camera path in the viewport: a curve through the camera centres and small
frustum markers every N frames, in their own collection, never rendered.

Frames without a solved camera break the curve: each run of consecutive solved frames is one
spline, so a gap in the solve shows as a gap in the path instead of a straight line that was
never measured.
"""

from __future__ import annotations

import bpy
import numpy as np

from .conventions import camera_pose_blender

# Marker size as a fraction of the path's extent: visible from a view of the whole path,
# small enough not to hide the neighbouring markers.
MARKER_FRACTION = 0.04


def solved_runs(bundle) -> list[list]:
    """Runs of consecutive solved frames: ``[[CameraFrame, ...], ...]`` in frame order."""
    runs, last = [], None
    for cam in bundle.cameras or []:
        if cam.c2w is None:
            last = None
            continue
        if last is None or cam.index != last + 1:
            runs.append([])
        runs[-1].append(cam)
        last = cam.index
    return runs


def frustum_lines(cam, width: int, height: int, T: np.ndarray, size: float) -> tuple[np.ndarray, list]:
    """(vertices (8, 3), edges) of a wire frustum of ``cam`` in Blender's world.

    The apex is the camera centre and the far rectangle spans the frame's corner pixels at
    depth ``size`` (OpenCV camera space, so it has the camera's true field of view); a small
    triangle above the rectangle marks the frame's top.
    """
    u = np.array([-0.5, width - 0.5, width - 0.5, -0.5])
    v = np.array([-0.5, -0.5, height - 0.5, height - 0.5])
    corners = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones(4)], axis=1)
    corners *= size / np.abs(corners).max()  # the largest extent is `size`, whatever the lens
    top_y = corners[0, 1]
    span = corners[1, 0] - corners[0, 0]
    mid_x = 0.5 * (corners[0, 0] + corners[1, 0])
    z = corners[0, 2]
    # Image "up" is -y in OpenCV camera space.
    tick = np.array([[mid_x - 0.15 * span, top_y, z], [mid_x + 0.15 * span, top_y, z],
                     [mid_x, top_y - 0.2 * span, z]])
    local = np.concatenate([np.zeros((1, 3)), corners, tick])
    loc, R = camera_pose_blender(np.asarray(cam.c2w), T)
    # camera_pose_blender's R is for a Blender camera (looking down -Z); undo that axis flip.
    world = local @ (R @ np.diag([1.0, -1.0, -1.0])).T + loc
    edges = [(0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (2, 3), (3, 4), (4, 1), (5, 6), (6, 7), (7, 5)]
    return world, edges


def create_camera_path(name: str, bundle, T: np.ndarray, every: int, parent_collection) -> bpy.types.Collection | None:
    """A child collection ``<name>`` holding the path curve and, with ``every`` > 0, the
    frustum markers of every ``every``-th solved frame. None when no frame is solved."""
    runs = solved_runs(bundle)
    if not runs:
        return None
    coll = bpy.data.collections.new(name)
    parent_collection.children.link(coll)
    coll.hide_render = True  # a guide, never part of the shot

    centres = [np.array([camera_pose_blender(np.asarray(c.c2w), T)[0] for c in run]) for run in runs]
    curve = bpy.data.curves.new(name, "CURVE")
    curve.dimensions = "3D"
    for points in centres:
        spline = curve.splines.new("POLY")
        spline.points.add(len(points) - 1)
        co = np.concatenate([points, np.ones((len(points), 1))], axis=1)  # x, y, z, w
        spline.points.foreach_set("co", co.astype(np.float32).ravel())
    path = bpy.data.objects.new(name, curve)
    path.hide_render = True
    path.hide_select = True
    path["parallax_frames"] = [c.index for run in runs for c in run]  # bundle frame of each point
    coll.objects.link(path)

    if every > 0:
        all_centres = np.concatenate(centres)
        extent = float(np.linalg.norm(all_centres.max(axis=0) - all_centres.min(axis=0)))
        size = MARKER_FRACTION * extent if extent > 0 else 0.1
        marked = [c for run in runs for c in run if c.index % every == 0]
        verts, edges = [], []
        for cam in marked:
            v, e = frustum_lines(cam, bundle.width, bundle.height, T, size)
            base = sum(len(x) for x in verts)
            verts.append(v)
            edges += [(a + base, b + base) for a, b in e]
        if marked:
            mesh = bpy.data.meshes.new(f"{name} Markers")
            mesh.from_pydata(np.concatenate(verts).tolist(), edges, [])
            markers = bpy.data.objects.new(f"{name} Markers", mesh)
            markers.hide_render = True
            markers.hide_select = True
            markers["parallax_frames"] = [c.index for c in marked]
            coll.objects.link(markers)
    return coll
