"""Add-on preferences (backend settings) and per-scene settings (task inputs, import options)."""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from ..importers.points import COLOR_MODE_ITEMS


def addon_package() -> str:
    # The add-on's package: "parallax" as a legacy add-on, "bl_ext.<repo>.parallax" as an
    # extension. AddonPreferences.bl_idname must be exactly this.
    return __package__.rsplit(".", 1)[0]


class ParallaxPreferences(bpy.types.AddonPreferences):
    bl_idname = addon_package()

    backend_mode: EnumProperty(
        name="Backend",
        items=[("LOCAL", "Local subprocess", "Start the backend on this machine when a job needs it"),
               ("REMOTE", "Remote host", "Use a backend already running on another machine")],
        default="LOCAL")
    python_path: StringProperty(
        name="Backend Python", subtype="FILE_PATH",
        description="Interpreter of the backend's environment (torch, diffusers, pycolmap...). "
                    "Empty: the environment created by Parallax in its user directory")
    remote_url: StringProperty(name="URL", default="http://127.0.0.1:8765",
                               description="Base URL of a remote Parallax backend")
    remote_token: StringProperty(name="Token", subtype="PASSWORD",
                                 description="Bearer token the remote backend was started with")
    device: EnumProperty(name="Device", items=[("auto", "Auto", "CUDA when present, else CPU"),
                                               ("cuda", "CUDA", ""), ("cpu", "CPU", "")], default="auto")
    default_engine: EnumProperty(
        name="Camera engine",
        items=[("unified", "Unified model", "Parallax's own video model (JOG3R heads)"),
               ("colmap", "COLMAP / GLOMAP", "Classical structure from motion (pycolmap)")],
        default="colmap")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "backend_mode", expand=True)
        if self.backend_mode == "LOCAL":
            layout.prop(self, "python_path")
        else:
            layout.prop(self, "remote_url")
            layout.prop(self, "remote_token")
        row = layout.row()
        row.prop(self, "device")
        row.prop(self, "default_engine")
        if self.backend_mode == "LOCAL":
            self.draw_env(layout)
        layout.operator("parallax.release_memory", icon="TRASH")

    def draw_env(self, layout):
        from ..operators.backend import EnvBuild, env_dir

        box = layout.box()
        row = box.row()
        row.label(text=f"Backend environment: {env_dir()}")
        row.operator("parallax.create_backend_env", icon="CONSOLE")
        if EnvBuild.state == "running":
            box.label(text=f"Creating: {EnvBuild.stage}", icon="SORTTIME")
        elif EnvBuild.state == "failed":
            box.label(text=EnvBuild.message, icon="ERROR")
        elif EnvBuild.state == "done":
            box.label(text=EnvBuild.message, icon="CHECKMARK")
        if EnvBuild.log:
            col = box.column(align=True)
            col.scale_y = 0.7
            for line in EnvBuild.log[-8:]:
                col.label(text=line[-160:])


class ParallaxSceneSettings(bpy.types.PropertyGroup):
    bundle_path: StringProperty(name="Bundle", subtype="FILE_PATH",
                                description="Result bundle folder (bundle.json inside) or .zip")
    scale: FloatProperty(name="Scale", default=1.0, min=1e-6, soft_max=100.0,
                         description="Multiply reconstructed lengths (results have arbitrary scale)")
    align_to_floor: BoolProperty(name="Align to Floor", default=False,
                                 description="Rotate and move the result so its dominant ground plane is Z = 0")
    point_size: FloatProperty(name="Point Size", default=0.0, min=0.0, soft_max=20.0,
                              description="Point diameter, in pixels or in scene units; 0 picks one")
    size_in_pixels: BoolProperty(name="Size in Pixels", default=True,
                                 description="Point Size in pixels of each point's own frame (dense maps); "
                                             "off: in scene units (sparse points)")
    conf_threshold: FloatProperty(name="Min Confidence", default=0.0, min=0.0,
                                  description="Hide points below this confidence")
    show_all_frames: BoolProperty(name="Show All Frames", default=False,
                                  description="Show every frame's points at once (static scenes)")
    point_color: EnumProperty(name="Point Colour", default="IMAGE", items=COLOR_MODE_ITEMS)
    max_points_per_frame: IntProperty(name="Max Points per Frame", default=0, min=0,
                                      description="Keep an even subsample of each frame's points; 0 keeps all")
    import_plate: BoolProperty(name="Image Plane", default=True,
                               description="Footage on a plane parented to the camera")
    camera_background: BoolProperty(name="Camera Background", default=True,
                                     description="Footage as the camera's background image")
    import_points: BoolProperty(name="Points", default=True)

    # Job inputs: they stay as they are whatever happens to the job.
    solve_source: StringProperty(name="Clip", subtype="FILE_PATH",
                                 description="Video file, or a folder of frames (PNG/JPEG, in name order)")
    solve_engine: EnumProperty(name="Engine", default="DEFAULT", items=[
        ("DEFAULT", "Default", "The camera engine chosen in the preferences"),
        ("colmap", "COLMAP / GLOMAP", "Classical structure from motion (pycolmap)"),
        ("unified", "Unified model", "Parallax's own video model (JOG3R heads)")])
    solve_stride: IntProperty(name="Stride", default=1, min=1, max=100, description="Use every n-th frame")
    solve_max_frames: IntProperty(name="Max Frames", default=0, min=0, description="Cap on frames used; 0: all")
    gen_prompt: StringProperty(name="Prompt", description="What the shot shows and how the camera moves")
    # Bounds as the backend's generate task validates them (backend/pipelines/generate.py).
    gen_frames: IntProperty(name="Frames", default=16, min=2, max=16,
                            description="Frames to generate (at most the model's window, 16)")
    gen_seed: IntProperty(name="Seed", default=0, min=0, max=2**31 - 1,
                          description="Random seed: the same seed and settings give the same shot")
    gen_steps: IntProperty(name="Steps", default=25, min=1, max=100,
                           description="Denoising steps: fewer is faster, more is cleaner")


classes = (ParallaxPreferences, ParallaxSceneSettings)
_register, _unregister = bpy.utils.register_classes_factory(classes)


def register():
    _register()
    bpy.types.Scene.parallax = PointerProperty(type=ParallaxSceneSettings)


def unregister():
    del bpy.types.Scene.parallax
    _unregister()
