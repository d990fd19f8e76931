"""Import a result bundle: ``bpy.ops.parallax.import_bundle(filepath=...)``."""

import bpy
from bpy.props import StringProperty

from ..importers import BundleError, import_bundle
from ..importers import points as points_importer
from ..importers.options import options_from, with_import_options


@with_import_options  # scale, align_to_floor, ...: one property per ImportOptions field
class PARALLAX_OT_import_bundle(bpy.types.Operator):
    """Import a Parallax result bundle: footage, animated camera and per-frame points"""

    bl_idname = "parallax.import_bundle"
    bl_label = "Import Result Bundle"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="Bundle", subtype="FILE_PATH",
                             description="Bundle folder, its bundle.json, or a bundle .zip")
    filter_glob: StringProperty(default="*.json;*.zip", options={"HIDDEN"})

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        path = bpy.path.abspath(self.filepath)
        if path.endswith("bundle.json"):
            path = path[: -len("bundle.json")]
        try:
            coll = import_bundle(context, path, options_from(self))
        except (BundleError, OSError) as e:
            self.report({"ERROR"}, f"Parallax: could not import bundle: {e}")
            return {"CANCELLED"}
        for warning in coll["parallax_warnings"]:
            self.report({"WARNING"}, f"Parallax: {warning}")
        self.report({"INFO"}, f"Parallax: imported {coll.name} "
                              f"in {coll['parallax_import_seconds']:.2f} s")
        return {"FINISHED"}


class PARALLAX_OT_set_point_display(bpy.types.Operator):
    """Apply point size, confidence threshold and all-frames display to the selected Parallax points"""

    bl_idname = "parallax.set_point_display"
    bl_label = "Update Points"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return any("Parallax Points" in o.modifiers for o in context.selected_objects)

    def execute(self, context):
        # Every live input the scene settings hold (the static/dynamic toggles too); Point
        # Size 0 keeps each object's own.
        values = points_importer.display_values(context.scene.parallax)
        for obj in context.selected_objects:
            if "Parallax Points" in obj.modifiers:
                points_importer.set_inputs(obj, **values)
        return {"FINISHED"}
