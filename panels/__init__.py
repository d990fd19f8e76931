"""The "Parallax" tab of the 3D view's N-panel.

A task's section shows only while the backend lists that task in ``/v1/health`` (a backend
lists only the tasks whose pipeline is in its build). Before any answer, the sections of
the tasks this add-on can run show as usual, so their first click starts the backend.
"""

import bpy

from .. import backend_link
from ..importers.options import copy_options
from ..operators.jobs import Job
from ..package import addon_package


class _ParallaxPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Parallax"


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
        box = layout.box()
        box.label(text=f"Imported {Job.collection}", icon="CHECKMARK")
        coll = bpy.data.collections.get(Job.collection)
        for line in (coll.get("parallax_summary", []) if coll is not None else []):
            box.label(text=str(line))  # frames solved, points, quality, source, what failed
    return False


def _configured(layout) -> bool:
    try:
        p = backend_link.prefs()
        if p.backend_mode == "LOCAL" and not backend_link.backend_python(p):
            raise backend_link.BackendNotConfigured("no backend Python is set")
        if p.backend_mode == "REMOTE":
            refusal = backend_link.online_refusal("A remote backend")
            if refusal:
                raise backend_link.BackendNotConfigured(refusal)
    except backend_link.BackendNotConfigured as e:
        _not_offered(layout, "Running jobs", f"{e}; see Backend Settings below.")
        return False
    return True


class _TaskPanel(_ParallaxPanel):
    """A task's section. A new task's section is a subclass: its ``task`` (the backend's
    name), ``what`` (for "... is not available"), ``operator``, ``icon`` and ``draw_inputs``."""

    task = ""
    what = ""
    operator = ""
    icon = "NONE"

    @classmethod
    def poll(cls, context):
        return backend_link.lists_task(cls.task) is not False

    def draw(self, context):
        layout = self.layout
        if not _configured(layout):
            return
        available, reason = backend_link.task_status(self.task)
        if available is False:
            _not_offered(layout, self.what, reason)
            return
        self.draw_inputs(layout, context.scene.parallax)
        if not _job_status(layout, self.task):
            layout.operator(self.operator, icon=self.icon)

    def draw_inputs(self, layout, settings) -> None:
        raise NotImplementedError


class PARALLAX_PT_generate(_TaskPanel, bpy.types.Panel):
    bl_label = "Generate shot with camera"
    task, what, operator, icon = "generate", "Generating a shot", "parallax.generate_shot", "RENDER_ANIMATION"

    def draw_inputs(self, layout, s):
        layout.prop(s, "gen_prompt", text="")
        row = layout.row(align=True)
        row.prop(s, "gen_frames")
        row.prop(s, "gen_steps")
        row.prop(s, "gen_seed")


class PARALLAX_PT_solve(_TaskPanel, bpy.types.Panel):
    bl_label = "Solve camera from clip"
    task, what, operator, icon = "solve", "Solving a camera", "parallax.solve_camera", "CAMERA_DATA"

    def draw_inputs(self, layout, s):
        layout.prop(s, "solve_source", text="")
        layout.prop(s, "solve_engine")
        row = layout.row(align=True)
        row.prop(s, "solve_stride")
        row.prop(s, "solve_max_frames")


class PARALLAX_PT_reconstruct(_TaskPanel, bpy.types.Panel):
    bl_label = "Reconstruct dynamic scene"
    task, what, operator, icon = ("reconstruct", "Reconstructing a dynamic scene", "parallax.reconstruct_scene",
                                  "OUTLINER_OB_POINTCLOUD")

    def draw_inputs(self, layout, s):
        layout.prop(s, "recon_source", text="")
        row = layout.row(align=True)
        row.prop(s, "recon_start")
        row.prop(s, "recon_stride")
        row = layout.row(align=True)
        row.prop(s, "recon_max_frames")
        row.prop(s, "recon_window_stride")


class PARALLAX_PT_import(_ParallaxPanel, bpy.types.Panel):
    bl_label = "Import result"

    def draw(self, context):
        s = context.scene.parallax
        layout = self.layout
        layout.prop(s, "bundle_path", text="")
        col = layout.column(heading="Import")
        col.prop(s, "import_plate")
        col.prop(s, "plate_distance")
        col.prop(s, "camera_background")
        col.prop(s, "import_points")
        col.prop(s, "point_color")
        col.prop(s, "max_points_per_frame")
        layout.prop(s, "scale")
        layout.prop(s, "align_to_floor")
        layout.prop(s, "set_scene")
        op = layout.operator("parallax.import_bundle", icon="IMPORT")
        op.filepath = s.bundle_path
        copy_options(s, op)
        box = layout.box()
        box.label(text="Points display")
        row = box.row(align=True)
        row.prop(s, "point_size")
        row.prop(s, "size_in_pixels", text="px", toggle=True)
        box.prop(s, "conf_threshold")
        box.prop(s, "show_all_frames")
        # Dynamic-scene results: which kind of point shows, and the static background at once.
        row = box.row(align=True)
        row.prop(s, "show_static", toggle=True)
        row.prop(s, "show_dynamic", toggle=True)
        box.prop(s, "accumulate_static")
        box.operator("parallax.set_point_display", icon="POINTCLOUD_DATA")


class PARALLAX_PT_backend(_ParallaxPanel, bpy.types.Panel):
    bl_label = "Backend"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        prefs = context.preferences.addons[addon_package()].preferences
        layout.label(text=f"Mode: {prefs.backend_mode.title()}, device: {prefs.device}")
        proc = backend_link.local_backend() if prefs.backend_mode == "LOCAL" else None
        if proc is not None and proc.state == "crashed":
            col = layout.column(align=True)
            col.label(text=f"The backend crashed (exit code {proc.exit_code}).", icon="ERROR")
            col.label(text="The next job restarts it.")
        elif proc is not None:
            layout.label(text=f"Local backend: {proc.state}", icon="CHECKMARK" if proc.state == "ready" else "INFO")
        if backend_link.Health.checking:
            layout.label(text="Checking the backend...", icon="SORTTIME")
        elif backend_link.Health.data:
            h = backend_link.Health.data
            layout.label(text=f"Backend {h.get('version', '?')} on {h.get('device', '?')}")
        elif backend_link.Health.error:
            for line in _wrap(backend_link.Health.error):
                layout.label(text=line)
        row = layout.row(align=True)
        row.operator("parallax.check_backend", icon="FILE_REFRESH")
        row.operator("parallax.release_memory", text="Release Memory", icon="TRASH")
        layout.operator("preferences.addon_show", text="Backend Settings", icon="PREFERENCES").module = addon_package()


classes = (PARALLAX_PT_generate, PARALLAX_PT_solve, PARALLAX_PT_reconstruct, PARALLAX_PT_import, PARALLAX_PT_backend)
register, unregister = bpy.utils.register_classes_factory(classes)
