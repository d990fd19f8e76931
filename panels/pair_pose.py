"""The N-panel section "Pose from image pair" (InterPose): two photos in, two cameras out.

Drawn like the other task sections (``panels._TaskPanel``: shown while ``/v1/health`` lists
``pair_pose``, the backend's reason when it cannot run it, progress and cancel while it runs).
Below the Run button, the last imported pair result of the scene says how far to trust it: the
reliability grade, D_total and the agreement of the best videos, in plain words.
"""

import bpy

from ..operators.jobs import Job
from ..operators.pair_pose import TASK, offers_choice
from . import _TaskPanel


def latest_pair(scene):
    """The scene's pair result to show: the one the last job imported, else the last imported."""
    pairs = [c for c in scene.collection.children if c.get("parallax_task") == TASK]
    current = next((c for c in pairs if c.name == Job.collection), None)
    return current or (pairs[-1] if pairs else None)


class PARALLAX_PT_pair_pose(_TaskPanel, bpy.types.Panel):
    bl_label = "Pose from image pair"
    task, what, operator, icon = TASK, "Pose from an image pair", "parallax.pair_pose", "CAMERA_STEREO"

    def draw(self, context):
        _TaskPanel.draw(self, context)  # not super(): the panel tests draw with a stand-in ``self``
        self.draw_result(self.layout, context.scene)

    def draw_inputs(self, layout, s):
        col = layout.column(align=True)
        col.prop(s, "image_a")
        col.prop(s, "image_b")
        row = layout.row(align=True)
        row.prop(s, "pair_videos")
        row.prop(s, "pair_steps")
        row = layout.row(align=True)
        row.prop(s, "pair_frames")
        row.prop(s, "pair_subsets")
        # A role shows when the backend offers a choice for it; before it answers, the
        # estimator (the add-on knows two) but not the generator (a model id to type).
        if offers_choice("generator"):
            layout.prop(s, "pair_generator")
        if offers_choice("estimator") in (True, None):
            layout.prop(s, "pair_estimator")
        layout.prop(s, "pair_scale")

    def draw_result(self, layout, scene) -> None:
        coll = latest_pair(scene)
        if coll is None or coll.get("parallax_pair") is None:
            return
        if not (Job.task == TASK and Job.collection == coll.name and not Job.running() and not Job.error):
            box = layout.box()  # else the job's own "Imported" box shows these lines already
            box.label(text=coll.name, icon="CAMERA_STEREO")
            for line in coll.get("parallax_summary", []):  # grade, D_total, agreement, notes
                box.label(text=str(line))
        applied = float(coll["parallax_pair"].get("scale", 1.0))
        if abs(applied - scene.parallax.pair_scale * scene.parallax.scale) > 1e-9 * max(applied, 1.0):
            op = layout.operator("parallax.pair_apply_scale", icon="FILE_REFRESH")
            op.collection = coll.name


classes = (PARALLAX_PT_pair_pose,)
