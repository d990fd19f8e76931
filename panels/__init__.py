"""The "Parallax" tab of the 3D view's N-panel."""

import bpy

from ..props import addon_package


class _ParallaxPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Parallax"


def _unavailable(layout, what: str) -> None:
    """A task whose backend job does not exist in this build: say so, offer no button."""
    col = layout.column(align=True)
    col.label(text=f"{what} is not available yet:", icon="INFO")
    col.label(text="it needs the backend job service,")
    col.label(text="which this build does not include.")
    col.label(text="Import bundles made on the command line below.")


class PARALLAX_PT_generate(_ParallaxPanel, bpy.types.Panel):
    bl_label = "Generate shot with camera"

    def draw(self, context):
        _unavailable(self.layout, "Generating a shot")


class PARALLAX_PT_solve(_ParallaxPanel, bpy.types.Panel):
    bl_label = "Solve camera from clip"

    def draw(self, context):
        _unavailable(self.layout, "Solving a camera")


class PARALLAX_PT_reconstruct(_ParallaxPanel, bpy.types.Panel):
    bl_label = "Reconstruct dynamic scene"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        _unavailable(self.layout, "Dynamic reconstruction")


class PARALLAX_PT_pair_pose(_ParallaxPanel, bpy.types.Panel):
    bl_label = "Pose from image pair"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        _unavailable(self.layout, "Pose from an image pair")


class PARALLAX_PT_import(_ParallaxPanel, bpy.types.Panel):
    bl_label = "Import result"

    def draw(self, context):
        s = context.scene.parallax
        layout = self.layout
        layout.prop(s, "bundle_path", text="")
        col = layout.column(heading="Import")
        col.prop(s, "import_plate")
        col.prop(s, "camera_background")
        col.prop(s, "import_points")
        col.prop(s, "point_color")
        col.prop(s, "max_points_per_frame")
        layout.prop(s, "scale")
        layout.prop(s, "align_to_floor")
        op = layout.operator("parallax.import_bundle", icon="IMPORT")
        op.filepath = s.bundle_path
        for key in ("scale", "align_to_floor", "point_size", "conf_threshold", "show_all_frames",
                    "point_color", "max_points_per_frame", "import_plate", "camera_background", "import_points"):
            setattr(op, key, getattr(s, key))
        box = layout.box()
        box.label(text="Points display")
        box.prop(s, "point_size")
        box.prop(s, "conf_threshold")
        box.prop(s, "show_all_frames")
        box.operator("parallax.set_point_display", icon="POINTCLOUD_DATA")


class PARALLAX_PT_backend(_ParallaxPanel, bpy.types.Panel):
    bl_label = "Backend"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        prefs = context.preferences.addons[addon_package()].preferences
        layout.label(text=f"Mode: {prefs.backend_mode.title()}, device: {prefs.device}")
        layout.label(text="Job service: not in this build", icon="INFO")
        layout.operator("preferences.addon_show", text="Backend Settings", icon="PREFERENCES").module = addon_package()


classes = (PARALLAX_PT_generate, PARALLAX_PT_solve, PARALLAX_PT_reconstruct, PARALLAX_PT_pair_pose,
           PARALLAX_PT_import, PARALLAX_PT_backend)
register, unregister = bpy.utils.register_classes_factory(classes)
