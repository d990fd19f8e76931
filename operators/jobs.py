"""Backend jobs from Blender: solve a camera, generate a shot, reconstruct a dynamic scene, cancel.

One job runs at a time. The operator hands the work to ``client.start_job`` (a thread that
starts the backend if needed, uploads, submits, polls and downloads) and returns at once; a
``bpy.app.timers`` callback polls the handle (``poll()`` never blocks), updates the panel's
progress bar and the status bar, and imports the bundle when the job is done. In background
mode timers do not run, so the operator waits for the job instead.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Optional

import bpy
from bpy.props import BoolProperty, StringProperty

from .. import backend_link, client
from ..importers import import_bundle
from ..importers.options import options_from

TASK_LABELS = {"solve": "Solving camera", "generate": "Generating shot", "reconstruct": "Reconstructing scene",
               "pair_pose": "Estimating pose from pair"}
POLL_S = 0.2


class Job:
    """The current (or last) job, as the panel shows it."""

    handle: Optional[client.JobHandle] = None
    task: str = ""
    scene: str = ""
    snapshot: Optional[client.JobSnapshot] = None
    error: str = ""  # last failure / cancellation, shown until the next job
    collection: str = ""  # what the last successful job imported

    @classmethod
    def running(cls) -> bool:
        return cls.handle is not None


def clip_inputs(source: str, doing: str = "solving") -> list:
    """A clip file, or the image files of a frame folder in name order (what ``solve`` and
    ``reconstruct`` take); ``doing`` names the task in the message for too few frames."""
    path = Path(bpy.path.abspath(source)) if source else None
    if path is None or not str(source).strip():
        raise ValueError("choose a clip or a frame folder first")
    if path.is_dir():
        frames = client.list_frames(path)  # natural order, no hidden or macOS ._* files
        if len(frames) < 2:
            raise ValueError(f"the folder {str(path)!r} has {len(frames)} image(s); {doing} needs 2 or more")
        return frames
    if not path.is_file():
        raise ValueError(f"no such file or folder: {str(path)!r}")
    return [path]


def reconstruct_params(start: int = 0, stride: int = 1, max_frames: Optional[int] = None,
                       window_stride: Optional[int] = None, **extra) -> dict:
    """The reconstruct task's parameters; 0 / None for ``max_frames`` (all frames) and
    ``window_stride`` (the backend's default) leave them to the backend."""
    params = {"start": int(start), "stride": int(stride), **extra}
    if max_frames:
        params["max_frames"] = int(max_frames)
    if window_stride:
        params["window_stride"] = int(window_stride)
    return params


# -- generate: which model makes the frames ------------------------------------------------

BUILTIN_GENERATOR = "parallax-tiny"  # the unified model: frames and cameras in one pass


def _listed_models() -> dict:
    """{id: entry} of the backend's model catalogue as the model manager last fetched it
    (``GET /v1/models``, cached in ``operators.models.Models``); empty before a fetch."""
    from .models import Models

    return {m.get("id"): m for m in (Models.data or {}).get("models", []) if isinstance(m, dict)}


def _makes_shots(entry: dict) -> bool:
    return entry.get("role") == "generator" and "t2v" in (entry.get("tasks") or [])


def generator_choices() -> list[tuple[str, str]]:
    """What the Model field offers, as (value, description): the built-in model first, then each
    installed catalogue generator that makes video from text, as the backend last listed them."""
    choices = [(BUILTIN_GENERATOR, "built in: frames and cameras in one pass")]
    for model_id, entry in _listed_models().items():
        if model_id != BUILTIN_GENERATOR and _makes_shots(entry) and entry.get("installed"):
            choices.append((model_id, str(entry.get("title") or model_id)))
    return choices


def model_title(value: str) -> str:
    """A model's name for the panel: its catalogue title, else the id or the folder's name."""
    entry = _listed_models().get(value)
    if entry is not None and entry.get("title"):
        return str(entry["title"])
    return (Path(value).name or value) if _is_path(value) else value


def _is_path(value: str) -> bool:
    # catalogue ids are lower-case words without separators (backend/hub/catalogue.py)
    return any(sep in value for sep in ("/", "\\")) or value.startswith(("~", "."))


def generator_param(value: str, local: bool = True) -> Optional[str]:
    """The generate job's ``model`` for the Model field's ``value``: None for the built-in model
    (the backend's default; naming it would make the backend run the cameras as a second pass),
    a catalogue id as given, a folder as an absolute path. ``local``: the backend runs on this
    machine, so a folder must exist here. Raises ValueError saying what to choose instead."""
    value = str(value or "").strip()
    if not value or value == BUILTIN_GENERATOR:
        return None
    entry = _listed_models().get(value)
    if entry is not None:
        if not _makes_shots(entry):
            raise ValueError(f"{value} is a {entry.get('role')} model ({', '.join(entry.get('tasks') or [])}); a shot "
                             "needs a text-to-video generator: " + ", ".join(v for v, _ in generator_choices()))
        if not entry.get("installed"):
            raise ValueError(f"{value} is not downloaded yet: download it in Preferences > Add-ons > Parallax "
                             "(Models), then generate again")
        return value
    return model_folder(value, local)


def model_folder(value: str, local: bool = True) -> str:
    """A model named by the user as the backend reads it: a folder given here becomes absolute
    (``//`` is the .blend's folder, ``~`` the home) and must exist when the backend is ``local``;
    anything else (a catalogue id, a folder on a remote backend) goes as it is, for the backend
    to check. Raises ValueError for a local folder that is not there."""
    value = str(value).strip()
    if not _is_path(value) or not local:
        return value
    path = Path(bpy.path.abspath(value)).expanduser().resolve()
    if not path.is_dir():
        raise ValueError(f"no model folder at {str(path)!r}: choose an installed model, or a folder in the "
                         "hub's layout (model_index.json inside)")
    return str(path)


def generate_params(prompt: str, frames: int = 16, seed: int = 0, steps: int = 25, guidance: Optional[float] = None,
                    camera: bool = True, model: Optional[str] = None, geometry: Optional[str] = None) -> dict:
    """The generate task's parameters; ``model`` / ``geometry`` None leave them to the backend
    (the built-in model, and for another generator the built-in model's cameras)."""
    params = {"prompt": prompt, "frames": int(frames), "seed": int(seed), "steps": int(steps), "camera": bool(camera)}
    if guidance is not None:
        params["guidance"] = float(guidance)
    if model:
        params["model"] = model
    if geometry:
        params["geometry"] = geometry
    return params


def results_dir() -> Path:
    """Bundles stay on disk (the plate reads their frames): beside the .blend once saved."""
    if bpy.data.filepath:
        return Path(bpy.path.abspath("//parallax_results"))
    return client.default_out_dir()  # per user, private: never a folder another user planted


def start(context, task: str, inputs, params: dict, wait: bool = False) -> client.JobSnapshot | None:
    """Start ``task``; block until it ends when ``wait`` (returns the final snapshot).
    Raises ValueError / client.ParallaxError with a message for the user."""
    if Job.running():
        raise ValueError("a Parallax job is already running; cancel it first")
    kw = backend_link.target(context)
    Job.handle = client.start_job(task, inputs, params, out_dir=results_dir(), **kw)
    Job.task, Job.scene, Job.error, Job.snapshot = task, context.scene.name, "", Job.handle.poll()
    if wait:
        _wait_printing(Job.handle)
        return finish()
    if not bpy.app.timers.is_registered(poll):
        bpy.app.timers.register(poll, first_interval=POLL_S)
    return None


def _wait_printing(handle) -> None:
    """Block until the job ends. In background mode (``blender -b``), where no panel shows
    progress, print a line per stage and per 5 %: a CPU ``generate`` was otherwise silent for
    minutes."""
    last = (None, -5)
    while True:
        try:
            handle.wait(timeout=1.0)
            return
        except TimeoutError:
            pass
        except client.ParallaxError:
            return  # the snapshot carries it
        snap = handle.poll()
        pct = int(snap.progress * 100)
        if bpy.app.background and (snap.stage != last[0] or pct >= last[1] + 5):
            print(f"Parallax: {TASK_LABELS.get(Job.task, Job.task)}: [{pct:3d}%] {snap.stage or snap.phase}",
                  flush=True)
            last = (snap.stage, pct)


def cancel() -> bool:
    if Job.handle is None:
        return False
    Job.handle.cancel()
    return True


def poll() -> Optional[float]:
    """The timer: refresh progress; at the end import the result. Returns the next interval."""
    if Job.handle is None:
        return None
    Job.snapshot = snap = Job.handle.poll()
    if snap.finished:
        finish()
        return None
    _status_text(f"Parallax: {TASK_LABELS.get(Job.task, Job.task)}: {snap.stage or snap.phase} "
                 f"({snap.progress:.0%})")
    _redraw()
    return POLL_S


def finish() -> client.JobSnapshot:
    """End of a job: import its bundle, or keep its error for the panel."""
    snap = Job.snapshot = Job.handle.poll()
    Job.handle = None
    if snap.phase == "done":
        scene = bpy.data.scenes.get(Job.scene) or bpy.context.scene
        try:
            coll = import_bundle(types.SimpleNamespace(scene=scene), snap.bundle_dir, options_from(scene.parallax))
            Job.collection = coll.name
        except Exception as e:  # a bad bundle: say so, keep the files for inspection
            Job.error = f"the result could not be imported: {e} (bundle kept at {snap.bundle_dir})"
    else:
        Job.error = snap.message or snap.phase
    _status_text(None)
    _redraw()
    if Job.error and not bpy.app.background:
        _popup(Job.error)
    if Job.task == "solve" or Job.error or backend_link.Health.data is None:
        backend_link.refresh_health()  # the backend is up (or restarted next job): refresh what it offers
    return snap


def _status_text(text: Optional[str]) -> None:
    for window in getattr(bpy.context.window_manager, "windows", ()):
        if window.workspace is not None:
            window.workspace.status_text_set(text)


def _redraw() -> None:
    for window in getattr(bpy.context.window_manager, "windows", ()):
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES"):
                area.tag_redraw()


def _popup(message: str) -> None:
    def draw(self, _context):
        for line in message.splitlines()[:12]:
            self.layout.label(text=line)
    bpy.context.window_manager.popup_menu(draw, title="Parallax job", icon="ERROR")


def redraw_timer() -> Optional[float]:
    """While a health check or an environment build runs, keep the UI showing its progress."""
    _redraw()
    return 0.5 if (backend_link.Health.checking or backend_link.EnvBuild.state == "running") else None


def _watch():
    if not bpy.app.background and not bpy.app.timers.is_registered(redraw_timer):
        bpy.app.timers.register(redraw_timer, first_interval=0.5)


# -- operators ---------------------------------------------------------------------------

class _JobOperator:
    bl_options = {"REGISTER"}
    wait: BoolProperty(name="Wait", default=True, options={"HIDDEN", "SKIP_SAVE"},
                       description="In background mode, block until the job ends (timers do not run there)")

    def launch(self, context, task, inputs, params):
        try:
            snap = start(context, task, inputs, params, wait=bpy.app.background and self.wait)
        except (ValueError, client.ParallaxError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        if snap is None:
            self.report({"INFO"}, f"{TASK_LABELS[task]}... (progress in the Parallax panel)")
            return {"FINISHED"}
        if Job.error:
            self.report({"ERROR"}, Job.error)
            return {"CANCELLED"}
        self.report({"INFO"}, f"Imported {Job.collection}")
        return {"FINISHED"}


class PARALLAX_OT_solve_camera(_JobOperator, bpy.types.Operator):
    """Solve the camera of a clip or a frame folder on the backend and import the result"""

    bl_idname = "parallax.solve_camera"
    bl_label = "Solve Camera"

    source: StringProperty(name="Clip or Frames", subtype="FILE_PATH",
                           description="Video file or folder of frames; empty: the panel's")
    engine: StringProperty(name="Engine", description="Camera engine; empty: the panel's / preferences' choice")

    @classmethod
    def poll(cls, context):
        return not Job.running()

    def execute(self, context):
        s = context.scene.parallax
        try:
            inputs = clip_inputs(self.source or s.solve_source)
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        default = backend_link.prefs(context).default_engine
        engine = self.engine or (s.solve_engine if s.solve_engine != "DEFAULT" else default)
        params = {"engine": engine, "stride": s.solve_stride}
        if s.solve_max_frames:
            params["max_frames"] = s.solve_max_frames
        return self.launch(context, "solve", inputs, params)


class PARALLAX_OT_generate_shot(_JobOperator, bpy.types.Operator):
    """Generate a shot and its camera from a prompt on the backend and import the result"""

    bl_idname = "parallax.generate_shot"
    bl_label = "Generate Shot"

    @classmethod
    def poll(cls, context):
        # Unknown (not asked yet) counts as offered: the click starts the backend and asks it.
        return not Job.running() and backend_link.task_status("generate")[0] is not False

    def execute(self, context):
        s = context.scene.parallax
        if not s.gen_prompt.strip():
            self.report({"ERROR"}, "write a prompt first")
            return {"CANCELLED"}
        try:
            model = generator_param(s.gen_model, local=backend_link.prefs(context).backend_mode == "LOCAL")
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        return self.launch(context, "generate", [], generate_params(s.gen_prompt, s.gen_frames, s.gen_seed,
                                                                    s.gen_steps, model=model))


class PARALLAX_OT_reconstruct_scene(_JobOperator, bpy.types.Operator):
    """Reconstruct a dynamic scene (cameras, depth, per-frame points with the moving ones
    flagged) from a clip or a frame folder on the backend and import the result"""

    bl_idname = "parallax.reconstruct_scene"
    bl_label = "Reconstruct Scene"

    source: StringProperty(name="Clip or Frames", subtype="FILE_PATH",
                           description="Video file or folder of frames; empty: the panel's")

    @classmethod
    def poll(cls, context):
        # Unknown (not asked yet) counts as offered: the click starts the backend and asks it.
        return not Job.running() and backend_link.task_status("reconstruct")[0] is not False

    def execute(self, context):
        s = context.scene.parallax
        try:
            inputs = clip_inputs(self.source or s.recon_source, doing="reconstructing")
        except ValueError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        params = reconstruct_params(s.recon_start, s.recon_stride, s.recon_max_frames, s.recon_window_stride)
        return self.launch(context, "reconstruct", inputs, params)


class PARALLAX_OT_cancel_job(bpy.types.Operator):
    """Cancel the running Parallax job (the backend stops within a step)"""

    bl_idname = "parallax.cancel_job"
    bl_label = "Cancel Job"

    @classmethod
    def poll(cls, context):
        return Job.running()

    def execute(self, context):
        cancel()
        self.report({"INFO"}, "Cancelling the Parallax job...")
        return {"FINISHED"}


class PARALLAX_OT_check_backend(bpy.types.Operator):
    """Start the backend if needed and ask it which tasks and engines it offers"""

    bl_idname = "parallax.check_backend"
    bl_label = "Check Backend"

    def execute(self, context):
        backend_link.refresh_health(context, wait=bpy.app.background)
        if backend_link.Health.error and not backend_link.Health.checking:
            self.report({"ERROR"}, backend_link.Health.error)
            return {"CANCELLED"}
        _watch()
        return {"FINISHED"}


class PARALLAX_OT_release_memory(bpy.types.Operator):
    """Free the backend's loaded models and cached GPU memory (they reload on the next job)"""

    bl_idname = "parallax.release_memory"
    bl_label = "Release GPU Memory"

    @classmethod
    def poll(cls, context):
        return not Job.running()

    def execute(self, context):
        try:
            backend_link.release_memory(context)
        except client.ParallaxError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, "Backend memory released")
        return {"FINISHED"}


class PARALLAX_OT_create_backend_env(bpy.types.Operator):
    """Create the backend's Python environment (venv + pip: torch, pycolmap, diffusers...) in
    Parallax's user directory. Downloads several GB"""

    bl_idname = "parallax.create_backend_env"
    bl_label = "Create Backend Environment"

    @classmethod
    def poll(cls, context):
        return backend_link.EnvBuild.state != "running"

    def execute(self, context):
        refusal = backend_link.online_refusal("Creating the backend environment (pip)")
        if refusal:
            self.report({"ERROR"}, refusal)
            return {"CANCELLED"}
        backend_link.EnvBuild.start(backend_link.env_dir(create=True), wait=bpy.app.background)
        _watch()
        return {"FINISHED"}


classes = (PARALLAX_OT_solve_camera, PARALLAX_OT_generate_shot, PARALLAX_OT_reconstruct_scene, PARALLAX_OT_cancel_job,
           PARALLAX_OT_check_backend, PARALLAX_OT_release_memory, PARALLAX_OT_create_backend_env)


def unregister_timers() -> None:
    for fn in (poll, redraw_timer):
        if bpy.app.timers.is_registered(fn):
            bpy.app.timers.unregister(fn)
    if Job.handle is not None:
        Job.handle.cancel()
        Job.handle = None
