"""The animated Blender camera of a bundle: pose, lens and shift keyed per frame."""

from __future__ import annotations

import bpy
import numpy as np

from .conventions import blender_intrinsics, camera_pose_blender, quaternions_continuous


# The camera object's keyed custom property that says, frame by frame, whether the engine
# solved that frame (1) or not (0): unsolved frames have no pose key, so the camera there only
# interpolates (or holds) its neighbours' poses, and this channel says so in the Dope Sheet.
SOLVED_PROPERTY = "parallax_solved"


def create_camera(name: str, bundle, T: np.ndarray, frame_start: int, collection) -> bpy.types.Object:
    """One camera object keyed at every solved frame; unsolved frames get no pose key.

    Every frame's solved state is keyed on the object's ``parallax_solved`` property (constant
    interpolation, a key where it changes). Pixel aspect is a render setting, not a camera one,
    so it comes from the first frame; the caller sets it on the scene (see
    :func:`render_settings`).
    """
    cam_data = bpy.data.cameras.new(name)
    cam = bpy.data.objects.new(name, cam_data)
    collection.objects.link(cam)
    cam.rotation_mode = "QUATERNION"
    cam_data.sensor_fit = "HORIZONTAL"
    cam_data.clip_start = 0.01
    cam_data.clip_end = 1000.0

    _key_solved_state(cam, bundle, frame_start)
    solved = [c for c in bundle.cameras if c.c2w is not None]
    if not solved:
        return cam
    poses = [camera_pose_blender(np.asarray(c.c2w), T) for c in solved]
    quats = quaternions_continuous(np.array([R for _, R in poses]))
    for c, (loc, _), q in zip(solved, poses, quats):
        frame = frame_start + c.index
        intr = blender_intrinsics(c.fx, c.fy, c.cx, c.cy, bundle.width, bundle.height)
        cam.location = loc
        cam.rotation_quaternion = q
        cam_data.sensor_width = intr["sensor_width"]
        cam_data.lens = intr["lens"]
        cam_data.shift_x = intr["shift_x"]
        cam_data.shift_y = intr["shift_y"]
        cam.keyframe_insert("location", frame=frame)
        cam.keyframe_insert("rotation_quaternion", frame=frame)
        for prop in ("lens", "shift_x", "shift_y", "sensor_width"):
            cam_data.keyframe_insert(prop, frame=frame)
    # Keys sit on whole frames; linear interpolation keeps sub-frame motion blur honest
    # instead of Bezier overshoot between solved poses.
    for anim_id in (cam, cam_data):
        for fc in _fcurves(anim_id):
            if fc.data_path != f'["{SOLVED_PROPERTY}"]':  # a state: it steps, never blends
                for kp in fc.keyframe_points:
                    kp.interpolation = "LINEAR"
    return cam


def _key_solved_state(cam: bpy.types.Object, bundle, frame_start: int) -> None:
    state = [0] * bundle.frame_count
    for c in bundle.cameras:
        state[c.index] = int(c.c2w is not None)
    changes = [i for i in range(bundle.frame_count) if i == 0 or state[i] != state[i - 1]]
    prop = SOLVED_PROPERTY
    for i in changes:
        cam[prop] = state[i]
        cam.keyframe_insert(f'["{prop}"]', frame=frame_start + i)
    for fc in _fcurves(cam):
        if fc.data_path == f'["{prop}"]':
            for kp in fc.keyframe_points:
                kp.interpolation = "CONSTANT"


def render_settings(scene: bpy.types.Scene, bundle) -> None:
    """Resolution and pixel aspect so the render frame matches the bundle's pixels."""
    first = next((c for c in bundle.cameras or [] if c.c2w is not None), None)
    scene.render.resolution_x = bundle.width
    scene.render.resolution_y = bundle.height
    scene.render.resolution_percentage = 100
    if first is not None:
        intr = blender_intrinsics(first.fx, first.fy, first.cx, first.cy, bundle.width, bundle.height)
        scene.render.pixel_aspect_x = intr["pixel_aspect_x"]
        scene.render.pixel_aspect_y = intr["pixel_aspect_y"]


def _fcurves(anim_id):
    """F-curves of an ID's action, for both Blender 4.2 and the 4.4+ slotted actions."""
    ad = anim_id.animation_data
    if ad is None or ad.action is None:
        return []
    action = ad.action
    if hasattr(action, "layers") and len(action.layers) and getattr(ad, "action_slot", None):
        from bpy_extras import anim_utils
        bag = anim_utils.action_get_channelbag_for_slot(action, ad.action_slot)
        return list(bag.fcurves) if bag else []
    return list(getattr(action, "fcurves", []))
