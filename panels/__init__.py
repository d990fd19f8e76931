"""The "Parallax" tab of the 3D view's N-panel."""

import bpy

from ..operators import backend
from ..operators.jobs import Job
from ..props import addon_package


class _ParallaxPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Parallax"


def _task_panel(layout, task: str, what: str) -> None:
    """A task the add-on has no operator for yet: the backend's own word on it (/v1/health)."""
    available, reason = backend.task_status(task)
    col = layout.column(align=True)
    if available is None:
        col.label(text=f"Ask the backend whether it offers {what.lower()}:", icon="QUESTION")
        col.operator("parallax.check_backend", icon="FILE_REFRESH")
        return
    if available:
        col.label(text=f"The backend offers {what.lower()};", icon="INFO")
        col.label(text="this add-on has no button for it yet.")
    else:
        _not_offered(col, what, reason)
    col.label(text="Results made elsewhere import below.")


def _not_offered(layout, what: str, reason: str) -> None:
    """A task this backend does not offer (per /v1/health): say why, offer no button."""
    col = layout.column(align=True)
    col.label(text=f"{what} is not available:", icon="INFO")
    for line in _wrap(reason or "the backend does not offer it"):
        col.label(text=line)


def _wrap(text: str, width: int = 48) -> list:
    import textwrap
    return textwrap.wrap(text.splitlines()[0] if text else "", width)[:4]


def _job_status(layout, task: str) -> bool:
    """Progress bar and cancel button while ``task`` runs; its last error after. True if running."""
    if Job.running() and Job.task == task:
        snap = Job.snapshot
        text = f"{snap.stage or snap.phase} ({snap.progress:.0%})" if snap else "starting"
        if hasattr(layout, "progress"):  # Blender 4.0+
            layout.progress(factor=snap.progress if snap else 0.0, type="BAR", text=text)
        else:
            layout.label(text=text, icon="SORTTIME")
        layout.operator("parallax.cancel_job", icon="CANCEL")
        return True
    if Job.task == task and Job.error:
        box = layout.box()
        box.label(text="Last job:", icon="ERROR")
        for line in _wrap(Job.error):
            box.label(text=line)
    elif Job.task == task and Job.collection:
        layout.label(text=f"Imported {Job.collection}", icon="CHECKMARK")
    return False


def _configured(layout) -> bool:
    try:
        p = backend.prefs()
        if p.backend_mode == "LOCAL" and not backend.backend_python(p):
            raise backend.BackendNotConfigured("no backend Python is set")
        if p.backend_mode == "REMOTE":
            refusal = backend.online_refusal("A remote backend")
            if refusal:
                raise backend.BackendNotConfigured(refusal)
    except backend.BackendNotConfigured as e:
        _not_offered(layout, "Running jobs", f"{e}; see Backend Settings below.")
        return False
    return True


class PARALLAX_PT_generate(_ParallaxPanel, bpy.types.Panel):
    bl_label = "Generate shot with camera"

    def draw(self, context):
        layout = self.layout
        if not _configured(layout):
            return
        available, reason = backend.task_status("generate")
        if available is None:
            col = layout.column(align=True)
            col.label(text="Ask the backend whether it can generate:", icon="QUESTION")
            col.operator("parallax.check_backend", icon="FILE_REFRESH")
            return
        if not available:
            _not_offered(layout, "Generating a shot", reason)
            return
        s = context.scene.parallax
        layout.prop(s, "gen_prompt", text="")
        row = layout.row(align=True)
        row.prop(s, "gen_frames")
        row.prop(s, "gen_steps")
        row.prop(s, "gen_seed")
        if not _job_status(layout, "generate"):
            layout.operator("parallax.generate_shot", icon="RENDER_ANIMATION")


class PARALLAX_PT_solve(_ParallaxPanel, bpy.types.Panel):
    bl_label = "Solve camera from clip"

    def draw(self, context):
        layout = self.layout
        if not _configured(layout):
            return
        available, reason = backend.task_status("solve")
        if available is False:
            _not_offered(layout, "Solving a camera", reason)
            return
        s = context.scene.parallax
        layout.prop(s, "solve_source", text="")
        layout.prop(s, "solve_engine")
        row = layout.row(align=True)
        row.prop(s, "solve_stride")
        row.prop(s, "solve_max_frames")
        if not _job_status(layout, "solve"):
            layout.operator("parallax.solve_camera", icon="CAMERA_DATA")


class PARALLAX_PT_reconstruct(_ParallaxPanel, bpy.types.Panel):
    bl_label = "Reconstruct dynamic scene"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        _task_panel(self.layout, "reconstruct", "Dynamic reconstruction")


class PARALLAX_PT_pair_pose(_ParallaxPanel, bpy.types.Panel):
    bl_label = "Pose from image pair"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        _task_panel(self.layout, "pair_pose", "Pose from an image pair")


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
        for key in ("scale", "align_to_floor", "point_size", "size_in_pixels", "conf_threshold", "show_all_frames",
                    "point_color", "max_points_per_frame", "import_plate", "camera_background", "import_points"):
            setattr(op, key, getattr(s, key))
        box = layout.box()
        box.label(text="Points display")
        row = box.row(align=True)
        row.prop(s, "point_size")
        row.prop(s, "size_in_pixels", text="px", toggle=True)
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
        proc = backend.local_backend() if prefs.backend_mode == "LOCAL" else None
        if proc is not None and proc.state == "crashed":
            col = layout.column(align=True)
            col.label(text=f"The backend crashed (exit code {proc.exit_code}).", icon="ERROR")
            col.label(text="The next job restarts it.")
        elif proc is not None:
            layout.label(text=f"Local backend: {proc.state}", icon="CHECKMARK" if proc.state == "ready" else "INFO")
        if backend.Health.checking:
            layout.label(text="Checking the backend...", icon="SORTTIME")
        elif backend.Health.data:
            h = backend.Health.data
            layout.label(text=f"Backend {h.get('version', '?')} on {h.get('device', '?')}")
        elif backend.Health.error:
            for line in _wrap(backend.Health.error):
                layout.label(text=line)
        row = layout.row(align=True)
        row.operator("parallax.check_backend", icon="FILE_REFRESH")
        row.operator("parallax.release_memory", text="Release Memory", icon="TRASH")
        layout.operator("preferences.addon_show", text="Backend Settings", icon="PREFERENCES").module = addon_package()


classes = (PARALLAX_PT_generate, PARALLAX_PT_solve, PARALLAX_PT_reconstruct, PARALLAX_PT_pair_pose,
           PARALLAX_PT_import, PARALLAX_PT_backend)
register, unregister = bpy.utils.register_classes_factory(classes)
