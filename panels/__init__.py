"""The "Parallax" tab of the 3D view's N-panel.

A task's section shows only while the backend lists that task in ``/v1/health`` (a backend
lists only the tasks whose pipeline is in its build). Before any answer, the sections of
the tasks this add-on can run show as usual, so their first click starts the backend.
"""

import bpy

from .. import backend_link
from ..importers.options import copy_options
from ..backend.bundle import frame_ranges
from ..operators.jobs import BUILTIN_GENERATOR, Job, model_title
from ..operators.models import Models
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
        if coll is not None:
            draw_result(box, coll)
    return False


# How large the quality plot shows (template_icon's scale: about 20 px per unit at 1x UI).
PLOT_SCALE = 12.0


def draw_result(layout, coll) -> None:
    """What an imported result says of itself (stored on its collection at import): the
    summary lines (frames solved, points, reprojection error, the auto engine's choice), the
    frames it could not solve, and the engine's per-frame quality plot."""
    for line in coll.get("parallax_summary", []):
        layout.label(text=str(line))
    unsolved = list(coll.get("parallax_unsolved_frames", []))
    if unsolved:
        col = layout.column(align=True)
        col.label(text=f"Not solved: {len(unsolved)} frames (no camera key there)", icon="ERROR")
        for line in _wrap(frame_ranges(unsolved, most=None)):
            col.label(text=f"  {line}")
    group = coll.get("parallax_redistort_group")
    if group:  # the VFX step the import cannot do for the artist: where the lens goes next
        col = layout.column(align=True)
        col.label(text=f"Lens: Movie Clip {coll.get('parallax_movie_clip', '')}", icon="TRACKER")
        col.label(text=f"Redistort renders: node group {group}")
    image = bpy.data.images.get(coll.get("parallax_quality_plot", ""))
    if image is not None:
        # The image's preview is drawn as a large icon: it needs no image editor and is made
        # lazily by Blender (icon_id 0 until then, e.g. in background mode).
        layout.template_icon(icon_value=image.preview_ensure().icon_id, scale=PLOT_SCALE)
        layout.label(text=f"Per-frame quality: {image.name}", icon="IMAGE_DATA")


def shown_result(context):
    """The import whose quality the Import section shows: the active object's, else the
    scene's latest."""
    obj = context.active_object
    for coll in (obj.users_collection if obj is not None else ()):
        for c in (coll, *(p for p in bpy.data.collections if coll.name in p.children)):
            if "parallax_bundle_id" in c:
                return c
    imports = [c for c in context.scene.collection.children if "parallax_bundle_id" in c]
    return max(imports, key=lambda c: c.get("parallax_imported_at", 0.0), default=None)


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
        row.prop(s, "gen_model")
        row.operator("parallax.refresh_models", text="", icon="FILE_REFRESH")
        self.draw_roles(layout, s.gen_model)
        row = layout.row(align=True)
        row.prop(s, "gen_frames")
        row.prop(s, "gen_steps")
        row.prop(s, "gen_seed")

    def draw_roles(self, layout, value) -> None:
        """Which model will make the frames and which the cameras (the result's own readout,
        from its bundle, shows under it after the import), and the state of the model list."""
        col = layout.column(align=True)
        ours = model_title(BUILTIN_GENERATOR)
        value = value.strip()
        if not value or value == BUILTIN_GENERATOR:
            col.label(text=f"Frames and cameras: {ours}, in one pass", icon="INFO")
        else:
            col.label(text=f"Frames: {model_title(value)}", icon="INFO")
            col.label(text=f"Cameras: {ours}, from the generated frames")
        if Models.checking:
            col.label(text="Asking the backend for its models...", icon="SORTTIME")
        elif Models.error:
            for line in _wrap(f"Models: {Models.error}"):
                col.label(text=line)
        elif Models.data is None:
            col.label(text="Refresh to list the installed generators")


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
        col.prop(s, "movie_clip")
        row = col.row(align=True)
        row.prop(s, "camera_path")
        row.prop(s, "path_marker_every", text="Every")
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
        coll = shown_result(context)
        if coll is not None:
            box = layout.box()
            box.label(text=coll.name, icon="OUTLINER_COLLECTION")
            draw_result(box, coll)


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


from .pair_pose import PARALLAX_PT_pair_pose  # noqa: E402 - it subclasses _TaskPanel, defined above

classes = (PARALLAX_PT_generate, PARALLAX_PT_solve, PARALLAX_PT_reconstruct, PARALLAX_PT_pair_pose, PARALLAX_PT_import,
           PARALLAX_PT_backend)
register, unregister = bpy.utils.register_classes_factory(classes)
