"""Add-on preferences (backend settings) and per-scene settings (task inputs, import options)."""

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from ..backend_link import EnvBuild, env_dir
from ..importers.options import with_import_options
from ..package import addon_package


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
        items=[("auto", "Auto", "COLMAP with learned (ALIKED + LightGlue) and SIFT features, keeping the cameras "
                                "that explain both's matches best; measured best on real footage"),
               ("unified", "Unified model", "Parallax's own video model (JOG3R heads)"),
               ("colmap", "COLMAP / GLOMAP", "Classical structure from motion (pycolmap)")],
        default="auto")

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
        # operators/ registers after props/ (it imports it), so its drawing is imported at draw time.
        from ..operators.models import draw_model_manager

        draw_model_manager(layout)

    def draw_env(self, layout):
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


def _generator_suggestions(self, context, edit_text):
    """The Model field's suggestions, as (value, description)."""
    from ..operators.jobs import generator_choices  # operators/ imports props/: imported when used

    return generator_choices()


@with_import_options  # scale, align_to_floor, ...: one property per ImportOptions field
class ParallaxSceneSettings(bpy.types.PropertyGroup):
    bundle_path: StringProperty(name="Bundle", subtype="FILE_PATH",
                                description="Result bundle folder (bundle.json inside) or .zip")

    # Job inputs: they stay as they are whatever happens to the job.
    solve_source: StringProperty(name="Clip", subtype="FILE_PATH",
                                 description="Video file, or a folder of frames (PNG/JPEG, in name order)")
    solve_engine: EnumProperty(name="Engine", default="DEFAULT", items=[
        ("DEFAULT", "Default", "The camera engine chosen in the preferences"),
        ("auto", "Auto", "COLMAP with learned and SIFT features, the better per clip"),
        ("colmap", "COLMAP / GLOMAP", "Classical structure from motion (pycolmap)"),
        ("unified", "Unified model", "Parallax's own video model (JOG3R heads)")])
    solve_stride: IntProperty(name="Stride", default=1, min=1, max=100, description="Use every n-th frame")
    solve_max_frames: IntProperty(name="Max Frames", default=0, min=0, description="Cap on frames used; 0: all")
    # Reconstruct dynamic scene: a clip like Solve's, and Geo4D's sliding windows over it.
    recon_source: StringProperty(name="Clip", subtype="FILE_PATH",
                                 description="Video file, or a folder of frames (PNG/JPEG, in name order)")
    recon_start: IntProperty(name="Start", default=0, min=0, description="First frame used (0: the first)")
    recon_stride: IntProperty(name="Stride", default=1, min=1, max=100, description="Use every n-th frame")
    recon_max_frames: IntProperty(name="Max Frames", default=0, min=0,
                                  description="Cap on frames used; 0: all")
    # At most the model's window, 16, as the backend's reconstruct task validates it.
    recon_window_stride: IntProperty(name="Window Stride", default=0, min=0, max=16,
                                     description="Frames between the starts of the model's overlapping windows; "
                                                 "0: the backend's default (Geo4D's 4)")
    gen_prompt: StringProperty(name="Prompt", description="What the shot shows and how the camera moves")
    # Bounds as the backend's generate task validates them (backend/pipelines/generate.py).
    gen_frames: IntProperty(name="Frames", default=16, min=2, max=16,
                            description="Frames to generate (at most the model's window, 16)")
    gen_seed: IntProperty(name="Seed", default=0, min=0, max=2**31 - 1,
                          description="Random seed: the same seed and settings give the same shot")
    gen_steps: IntProperty(name="Steps", default=25, min=1, max=100,
                           description="Denoising steps: fewer is faster, more is cleaner")
    # Free text with suggestions: the built-in model, the backend's installed text-to-video
    # generators (the model manager's cached list), or any model folder typed in.
    gen_model: StringProperty(name="Model", default="parallax-tiny", search=_generator_suggestions,
                              search_options={"SUGGESTION"},
                              description="The video model that makes the frames: parallax-tiny (built in: frames "
                                          "and cameras in one pass), an installed catalogue generator (Preferences "
                                          "> Parallax: models; refresh to list them), or a model folder in the "
                                          "hub's layout. Another model's cameras come from parallax-tiny's V2C")
    # Pose from an image pair (InterPose). Bounds and defaults as the backend's pair_pose task
    # validates them (backend/server/tasks/pair_pose.py).
    image_a: StringProperty(name="Image A", subtype="FILE_PATH",
                            description="The first photo: its camera stands at the origin")
    image_b: StringProperty(name="Image B", subtype="FILE_PATH",
                            description="The second photo, of the same set from another viewpoint")
    pair_videos: IntProperty(name="Videos", default=4, min=0, max=32,
                             description="Generated in-between videos to check the pose against; "
                                         "0: the pose from the two photos alone (fast, least reliable)")
    pair_frames: IntProperty(name="Frames", default=16, min=3, max=16,
                             description="Frames per generated video (at most the model's window, 16)")
    pair_steps: IntProperty(name="Steps", default=25, min=1, max=100,
                            description="Denoising steps per generated video: fewer is faster")
    pair_subsets: IntProperty(name="Subsets", default=10, min=1, max=64,
                              description="Random frame subsets posed per video (plus one uniform)")
    pair_generator: StringProperty(name="Generator", default="unified",
                                   description="The video model that imagines the walk from A to B: unified "
                                               "(Parallax's own), or the catalogue id or folder of a "
                                               "first-last-frame model (Preferences > Parallax: models)")
    pair_estimator: EnumProperty(name="Estimator", default="unified", items=[
        ("unified", "Unified model", "Parallax's own video model (JOG3R heads) poses the frames"),
        ("colmap", "COLMAP / GLOMAP", "Classical structure from motion on the generated frames")])
    # A result's baseline is 1 (images carry no scale): the known distance makes it metric.
    pair_scale: FloatProperty(name="Scale", default=1.0, min=1e-6, soft_max=100.0, unit="LENGTH",
                              description="The known distance between the two cameras (the baseline); the "
                                          "result places B this far from A. Applies on import (Apply Scale "
                                          "re-imports a shown result)")


classes = (ParallaxPreferences, ParallaxSceneSettings)
_register, _unregister = bpy.utils.register_classes_factory(classes)


def register():
    _register()
    bpy.types.Scene.parallax = PointerProperty(type=ParallaxSceneSettings)


def unregister():
    del bpy.types.Scene.parallax
    _unregister()
