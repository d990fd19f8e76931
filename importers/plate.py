"""The footage plate: an image plane in front of the camera and the camera background."""

from __future__ import annotations

import bpy
import numpy as np

from .materials import emission_material


def load_sequence(name: str, first_frame_path: str) -> bpy.types.Image:
    image = bpy.data.images.load(first_frame_path, check_existing=False)
    image.name = name
    image.source = "SEQUENCE"
    return image


def _configure_user(user, frame_count: int, frame_start: int) -> None:
    # Files are numbered from 000000 while the scene starts at frame_start: Blender shows
    # file number (scene_frame - frame_start + 1 + offset), so an offset of -1 maps scene
    # frame `frame_start` to file 000000.
    user.frame_duration = frame_count
    user.frame_start = frame_start
    user.frame_offset = -1
    user.use_auto_refresh = True
    user.use_cyclic = False


def create_plate(name: str, bundle, image: bpy.types.Image, camera: bpy.types.Object, frame_start: int,
                 distance: float, collection) -> bpy.types.Object:
    """A quad parented to the camera that exactly fills its frustum at ``distance``.

    The mesh is laid out in pixel units (corner pixels' outer edges), and the object's keyed
    scale and location map pixels to camera space per frame, so the plate follows focal and
    principal-point changes exactly.
    """
    w, h = bundle.width, bundle.height
    mesh = bpy.data.meshes.new(name)
    verts = [(-0.5, -(h - 0.5), 0.0), (w - 0.5, -(h - 0.5), 0.0), (w - 0.5, 0.5, 0.0), (-0.5, 0.5, 0.0)]
    mesh.from_pydata(verts, [], [(0, 1, 2, 3)])
    uv = mesh.uv_layers.new(name="UVMap")
    for loop, co in zip(uv.data, [(0, 0), (1, 0), (1, 1), (0, 1)]):
        loop.uv = co
    plate = bpy.data.objects.new(name, mesh)
    collection.objects.link(plate)
    plate.parent = camera
    plate.hide_select = True
    # Not a shadow caster or receiver: the plate is a backdrop, not scene geometry.
    plate.visible_shadow = False
    mesh.materials.append(_plate_material(name, image, bundle.frame_count, frame_start))

    for cam in bundle.cameras or []:
        if cam.c2w is None:
            continue
        frame = frame_start + cam.index
        # pixel (u, -v) -> camera space (x, y_up, -z) at depth `distance`
        plate.scale = (distance / cam.fx, distance / cam.fy, 1.0)
        plate.location = (-cam.cx * distance / cam.fx, cam.cy * distance / cam.fy, -distance)
        plate.keyframe_insert("scale", frame=frame)
        plate.keyframe_insert("location", frame=frame)
    return plate


def _plate_material(name: str, image: bpy.types.Image, frame_count: int, frame_start: int) -> bpy.types.Material:
    mat, emit = emission_material(name)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.interpolation = "Closest"  # one texel per footage pixel: no resampling blur
    _configure_user(tex.image_user, frame_count, frame_start)
    links.new(tex.outputs["Color"], emit.inputs["Color"])
    return mat


def add_camera_background(camera: bpy.types.Object, image: bpy.types.Image, frame_count: int, frame_start: int) -> None:
    cam_data = camera.data
    bg = cam_data.background_images.new()
    bg.image = image
    bg.alpha = 1.0
    _configure_user(bg.image_user, frame_count, frame_start)
    cam_data.show_background_images = True


def auto_distance(points_xyz_blender: np.ndarray | None, camera_locations: np.ndarray, default: float = 10.0) -> float:
    """A plate distance behind (almost) all points, so points draw over the footage."""
    if points_xyz_blender is None or len(points_xyz_blender) == 0 or len(camera_locations) == 0:
        return default
    sample = points_xyz_blender[:: max(1, len(points_xyz_blender) // 20000)]
    cams = camera_locations[:: max(1, len(camera_locations) // 16)]
    d = np.linalg.norm(sample[:, None, :] - cams[None, :, :], axis=-1)
    return float(max(np.percentile(d, 99, axis=0).max() * 1.5, 1e-3))
