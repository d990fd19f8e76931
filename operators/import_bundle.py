"""Import a result bundle: ``bpy.ops.parallax.import_bundle(filepath=...)``."""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from ..importers import BundleError, ImportOptions, import_bundle
from ..importers import points as points_importer
from ..importers.points import COLOR_MODE_ITEMS


class PARALLAX_OT_import_bundle(bpy.types.Operator):
    """Import a Parallax result bundle: footage, animated camera and per-frame points"""

    bl_idname = "parallax.import_bundle"
    bl_label = "Import Result Bundle"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="Bundle", subtype="FILE_PATH",
                             description="Bundle folder, its bundle.json, or a bundle .zip")
    filter_glob: StringProperty(default="*.json;*.zip", options={"HIDDEN"})
    scale: FloatProperty(name="Scale", default=1.0, min=1e-6)
    align_to_floor: BoolProperty(name="Align to Floor", default=False)
    point_size: FloatProperty(name="Point Size", default=0.0, min=0.0, soft_max=20.0,
                              description="Point diameter, in pixels or in scene units; 0 picks one")
    size_in_pixels: BoolProperty(name="Size in Pixels", default=True,
                                 description="Point Size in pixels of each point's own frame (dense maps); "
                                             "off: in scene units (sparse points)")
    conf_threshold: FloatProperty(name="Min Confidence", default=0.0, min=0.0)
    show_all_frames: BoolProperty(name="Show All Frames", default=False)
    point_color: EnumProperty(name="Point Colour", default="IMAGE", items=COLOR_MODE_ITEMS)
    max_points_per_frame: IntProperty(name="Max Points per Frame", default=0, min=0,
                                      description="Keep an even subsample of each frame's points; 0 keeps all")
    import_plate: BoolProperty(name="Image Plane", default=True)
    camera_background: BoolProperty(name="Camera Background", default=True)
    import_points: BoolProperty(name="Points", default=True)

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        path = bpy.path.abspath(self.filepath)
        if path.endswith("bundle.json"):
            path = path[: -len("bundle.json")]
        options = ImportOptions(
            scale=self.scale, align_to_floor=self.align_to_floor, point_size=self.point_size,
            size_in_pixels=self.size_in_pixels,
            conf_threshold=self.conf_threshold, show_all_frames=self.show_all_frames,
            point_color=self.point_color, max_points_per_frame=self.max_points_per_frame,
            import_plate=self.import_plate, camera_background=self.camera_background,
            import_points=self.import_points)
        try:
            coll = import_bundle(context, path, options)
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
        s = context.scene.parallax
        values = {"conf_threshold": s.conf_threshold, "show_all_frames": s.show_all_frames,
                  "size_in_pixels": s.size_in_pixels}
        if s.point_size > 0:
            values["point_size"] = s.point_size
        for obj in context.selected_objects:
            if "Parallax Points" in obj.modifiers:
                points_importer.set_inputs(obj, **values)
        return {"FINISHED"}
