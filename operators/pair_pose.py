"""Pose from an image pair (InterPose) as a backend job: two photos in, two cameras out.

The job runs like every other (``operators.jobs``: the backend subprocess, progress in the
panel, cancel); the bundle it brings back is imported by ``importers.pair``. Inputs are checked
here first, so a missing or non-image file is named before any backend starts.
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import StringProperty

from .. import backend_link
from ..client.files import IMAGE_EXTS
from .jobs import Job, _JobOperator

TASK = "pair_pose"


def pair_inputs(image_a: str, image_b: str) -> list:
    """The two image files, A then B, each checked: chosen, present, a file, an image by its
    extension (the backend then checks what is inside). Raises ValueError naming the image."""
    paths = []
    for label, value in (("A", image_a), ("B", image_b)):
        if not value or not str(value).strip():
            raise ValueError(f"choose image {label} first: pose from a pair needs two images, A and B")
        path = Path(bpy.path.abspath(str(value)))
        if not path.exists():
            raise ValueError(f"image {label}: no such file: {str(path)!r}")
        if path.is_dir():
            raise ValueError(f"image {label}: {str(path)!r} is a folder; choose one image file")
        if path.suffix.lower() not in IMAGE_EXTS:
            raise ValueError(f"image {label}: {path.name!r} is not an image file (expected "
                             f"{', '.join(IMAGE_EXTS)})")
        paths.append(path)
    return paths


def pair_params(videos: int = 4, frames: int = 16, steps: int = 25, subsets: int = 10, estimator: str = "unified",
                generator: str = "unified", **extra) -> dict:
    """The pair_pose task's parameters (``extra``: any further one, e.g. ``intrinsics``, ``seed``)."""
    return {"videos": int(videos), "frames": int(frames), "steps": int(steps), "subsets": int(subsets),
            "estimator": str(estimator), "generator": str(generator).strip() or "unified", **extra}


def offers_choice(param: str) -> bool | None:
    """Whether the backend's pair_pose task takes more than one value for ``param`` (from the
    params schema in its /v1/health: an enum of several, or free text such as a model id), or
    None before the backend has answered."""
    data = backend_link.Health.data
    if data is None:
        return None
    schema = data.get("tasks", {}).get(TASK, {}).get("params_schema") or {}
    prop = schema.get("properties", {}).get(param)
    if not prop or "const" in prop:
        return False
    if "enum" in prop:
        return len(prop["enum"]) > 1
    return prop.get("type") == "string"


class PARALLAX_OT_pair_pose(_JobOperator, bpy.types.Operator):
    """Find where photo B was taken from relative to photo A (InterPose: generated in-between
    videos, the most self-consistent answer) on the backend and import both cameras"""

    bl_idname = "parallax.pair_pose"
    bl_label = "Estimate Pose"

    image_a: StringProperty(name="Image A", subtype="FILE_PATH", description="Photo A; empty: the panel's")
    image_b: StringProperty(name="Image B", subtype="FILE_PATH", description="Photo B; empty: the panel's")

    @classmethod
    def poll(cls, context):
        # Unknown (not asked yet) counts as offered: the click starts the backend and asks it.
        return not Job.running() and backend_link.task_status(TASK)[0] is not False

    def execute(self, context):
        s = context.scene.parallax
        try:
            inputs = pair_inputs(self.image_a or s.image_a, self.image_b or s.image_b)
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        params = pair_params(s.pair_videos, s.pair_frames, s.pair_steps, s.pair_subsets, s.pair_estimator,
                             s.pair_generator)
        result = self.launch(context, TASK, inputs, params)
        if result == {"FINISHED"} and not Job.running():
            self.report_notes()
        return result

    def report_notes(self) -> None:
        """The result's notes (identical images, images of different sizes...) as warnings: the
        pose came back, but not quite the one asked for."""
        coll = bpy.data.collections.get(Job.collection)
        facts = coll.get("parallax_pair") if coll is not None else None
        for note in (facts.get("notes", []) if facts is not None else []):
            self.report({"WARNING"}, str(note))


class PARALLAX_OT_pair_apply_scale(bpy.types.Operator):
    """Import the pair result again with the panel's Scale as the distance between the cameras"""

    bl_idname = "parallax.pair_apply_scale"
    bl_label = "Apply Scale"
    bl_options = {"REGISTER", "UNDO"}

    collection: StringProperty(name="Collection", description="The pair result's collection")

    @classmethod
    def poll(cls, context):
        return not Job.running()

    def execute(self, context):
        from ..importers import BundleError, import_bundle
        from ..importers.options import options_from

        coll = bpy.data.collections.get(self.collection)
        if coll is None or coll.get("parallax_task") != TASK:  # (a name typed in, or a stale button)
            self.report({"ERROR"}, f"no imported pair result named {self.collection!r}")
            return {"CANCELLED"}
        try:
            new = import_bundle(context, coll["parallax_bundle"], options_from(context.scene.parallax))
        except (BundleError, OSError) as e:
            self.report({"ERROR"}, f"the pair result could not be imported again: {e}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"{new.name}: B is {new['parallax_pair']['baseline']:.4g} units from A")
        return {"FINISHED"}


classes = (PARALLAX_OT_pair_pose, PARALLAX_OT_pair_apply_scale)
