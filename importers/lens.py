"""A solved lens distortion in Blender: a Movie Clip of the footage as shot whose tracking
camera carries the lens, and a compositor node group that redistorts CG renders with it.

The VFX way: the image plane and the camera background show the *undistorted* frames (the
pinhole Blender camera matches them), and renders are distorted back with the compositor's
Movie Distortion node before they go over the original plate.

OpenCV's model (the bundle's ``dist``) maps to Blender's (libmv's) like this, measured on
Blender 5.0.1's compositor against OpenCV's equations (``tests/blender/test_distortion.py``,
agreement to 1e-4 px):

- coordinates: both normalise by the focal length in pixels around the principal point, but
  Blender's tracking space has its origin at the bottom-left *corner* of the frame with y up,
  so ``principal_point_pixels = (cx + 0.5, H - (cy + 0.5))`` for OpenCV's centre-of-pixel,
  y-down coordinates;
- radial: ``k1, k2, k3`` are the same numbers (POLYNOMIAL's k1..k3, or BROWN's k1..k3, k4 = 0);
- tangential: libmv pairs its ``p1`` with x where OpenCV pairs ``p2`` with x, and the y flip
  turns the sign of the y-paired term, so ``brown_p1 = p2`` and ``brown_p2 = -p1``.

Blender's distortion uses one focal length for both axes (its pixel aspect scales the
principal point but not the coordinates in the compositor), so ``fx != fy`` cannot be
carried exactly: the clip gets ``fx`` and the import warns when ``fy`` differs.
"""

from __future__ import annotations

import bpy

from .conventions import SENSOR_WIDTH_MM

# |fx / fy - 1| beyond which the clip's single focal length misplaces the frame's corners by
# a visible amount (0.1 % of a 2K half-width is 1 px).
FOCAL_ASPECT_TOLERANCE = 1e-3


def clip_lens(fx: float, fy: float, cx: float, cy: float, dist, width: int, height: int,
              sensor_width: float = SENSOR_WIDTH_MM) -> dict:
    """The ``MovieTrackingCamera`` settings of an OpenCV camera (numpy-free, bpy-free).

    Args:
        fx, fy, cx, cy: the pinhole intrinsics in pixels, pixel centres at integers.
        dist: OpenCV ``(k1, k2, p1, p2[, k3])``.
        width, height: the frames' size in pixels (the clip's, which is Blender's calibration
            size).
        sensor_width: millimetres; the imported camera's, so focal lengths in mm agree.

    Returns:
        ``{attribute: value}`` to set on ``clip.tracking.camera``: POLYNOMIAL when the lens has
        no tangential part (the model Blender's own solver refines), else BROWN.
    """
    k1, k2, p1, p2 = (float(v) for v in dist[:4])
    k3 = float(dist[4]) if len(dist) > 4 else 0.0
    out = {
        "sensor_width": float(sensor_width),
        "units": "MILLIMETERS",
        "focal_length": float(fx) * sensor_width / width,
        "pixel_aspect": 1.0,
        "principal_point_pixels": (float(cx) + 0.5, height - (float(cy) + 0.5)),
    }
    if p1 == 0.0 and p2 == 0.0:
        out.update(distortion_model="POLYNOMIAL", k1=k1, k2=k2, k3=k3)
    else:
        out.update(distortion_model="BROWN", brown_k1=k1, brown_k2=k2, brown_k3=k3, brown_k4=0.0,
                   brown_p1=p2, brown_p2=-p1)
    return out


def load_movie_clip(name: str, first_frame_path: str, lens: dict, frame_start: int) -> bpy.types.MovieClip:
    """The footage as shot, as a Movie Clip whose tracking camera is ``lens`` (see :func:`clip_lens`)."""
    clip = bpy.data.movieclips.load(first_frame_path, check_existing=False)
    clip.name = name
    # The sequence's first file (000000) plays at the scene's first frame, like the plate.
    clip.frame_start = frame_start
    camera = clip.tracking.camera
    # Sensor before focal: Blender converts the mm focal with the sensor width it has then.
    camera.sensor_width = lens["sensor_width"]
    for key, value in lens.items():
        if key != "sensor_width":
            setattr(camera, key, value)
    return clip


def redistort_node_group(name: str, clip: bpy.types.MovieClip) -> bpy.types.NodeTree:
    """A compositor node group, Image in and out, that distorts its input with ``clip``'s lens.

    Put it after a render's Image output to lay CG over the original (distorted) footage. A
    fake user keeps it in the saved file while no compositor uses it yet.
    """
    group = bpy.data.node_groups.new(name, "CompositorNodeTree")
    group.interface.new_socket("Image", in_out="INPUT", socket_type="NodeSocketColor")
    group.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    nodes = group.nodes
    group_in, group_out = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")
    distort = nodes.new("CompositorNodeMovieDistortion")
    distort.clip = clip
    _set_distort(distort)
    group_in.location, distort.location, group_out.location = (-300, 0), (0, 0), (300, 0)
    group.links.new(group_in.outputs["Image"], distort.inputs["Image"])
    group.links.new(distort.outputs["Image"], group_out.inputs["Image"])
    group.use_fake_user = True
    return group


def _set_distort(node) -> None:
    # Blender 5.0 made the method a menu input socket; 4.x has it as the node's property.
    if "Type" in node.inputs:
        node.inputs["Type"].default_value = "Distort"
    else:
        node.distortion_type = "DISTORT"
