"""The model manager in the add-on's preferences: the backend's model catalogue (installed or
not, size, VRAM, licence), download with a progress bar and cancel, remove.

The backend downloads into its own huggingface_hub cache (a local backend: this machine's; a
remote one: that host's). A download is network access, so it is refused while Blender's
online access is off (Preferences > System > Network > Allow Online Access). A gated or
non-commercial licence is accepted explicitly: the download operator asks in a dialog with an
"Accept licence" checkbox. One download runs at a time; a timer follows it (in background mode,
where timers do not run, ``wait=True`` blocks instead).
"""

from __future__ import annotations

import threading
from typing import Optional

import bpy
from bpy.props import BoolProperty, StringProperty

from .. import backend_link, client
from ..client.models import ModelDownload

POLL_S = 0.25
GB = 1e9


class Models:
    """The last ``GET /v1/models`` answer and the current download, as the preferences show them."""

    data: Optional[dict] = None
    error: str = ""
    checking: bool = False
    download: Optional[ModelDownload] = None
    snapshot = None  # the download's last DownloadSnapshot (kept after it ends, for its message)


def entry(model_id: str) -> Optional[dict]:
    for m in (Models.data or {}).get("models", []):
        if m.get("id") == model_id:
            return m
    return None


def refresh(context=None, wait: bool = False) -> None:
    """Fetch the catalogue from the backend (starting a local one if needed) in a thread."""
    try:
        kw = backend_link.target(context)
    except client.ParallaxError as e:
        Models.data, Models.error = None, str(e)
        return

    def work():
        try:
            Models.data, Models.error = backend_link.connection.client_for(kw).models(), ""
        except client.ParallaxError as e:
            Models.error = str(e)
        finally:
            Models.checking = False
            _redraw()

    Models.checking = True
    if wait:
        work()
    else:
        threading.Thread(target=work, name="parallax-models", daemon=True).start()
        _watch()


def start_download(context, model_id: str, accept_licence: bool = False, wait: bool = False):
    """Start downloading ``model_id`` on the backend; ValueError / ParallaxError with a message
    for the user when it cannot start. Returns the final snapshot when ``wait``."""
    refusal = backend_link.online_refusal(f"Downloading the model {model_id}")
    if refusal:
        raise ValueError(refusal)
    if Models.download is not None and not Models.download.poll().finished:
        raise ValueError(f"{Models.download.model} is downloading; cancel it first")
    info = entry(model_id)
    if info is not None and info.get("needs_acceptance") and not accept_licence:
        raise ValueError(f"{model_id} is under {info.get('licence')} ({', '.join(info.get('licence_flags', []))}): "
                         f"read {info.get('licence_url')} and tick 'Accept licence' to download it")
    Models.download = ModelDownload(model_id, accept_licence, **backend_link.target(context)).start()
    Models.snapshot = Models.download.poll()
    if wait:
        Models.download.wait()
        return finish()
    if not bpy.app.timers.is_registered(poll):
        bpy.app.timers.register(poll, first_interval=POLL_S)
    return None


def poll() -> Optional[float]:
    """The timer: refresh the progress bar; at the end refresh the list. Returns the next interval."""
    if Models.download is None:
        return None
    Models.snapshot = snap = Models.download.poll()
    if snap.finished:
        finish()
        return None
    _redraw()
    return POLL_S


def finish():
    snap = Models.snapshot = Models.download.poll()
    Models.download = None
    refresh(wait=bpy.app.background)
    _redraw()
    return snap


def cancel_download() -> bool:
    if Models.download is None:
        return False
    Models.download.cancel()
    return True


def remove(context, model_id: str) -> dict:
    if Models.download is not None and Models.download.model == model_id:
        raise ValueError(f"{model_id} is downloading; cancel the download first")
    kw = backend_link.target(context)
    result = backend_link.connection.client_for(kw).remove_model(model_id)
    refresh(context, wait=bpy.app.background)
    return result


def _redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    for window in getattr(wm, "windows", ()):
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()


def _redraw_timer() -> Optional[float]:
    _redraw()
    return 0.5 if Models.checking else None


def _watch() -> None:
    if not bpy.app.background and not bpy.app.timers.is_registered(_redraw_timer):
        bpy.app.timers.register(_redraw_timer, first_interval=0.5)


# -- drawing (called from the preferences' draw) --------------------------------------------

def draw_model_manager(layout) -> None:
    box = layout.box()
    row = box.row()
    row.label(text="Models", icon="FILE_3D")
    row.operator("parallax.refresh_models", text="", icon="FILE_REFRESH")
    if Models.checking:
        box.label(text="Asking the backend...", icon="SORTTIME")
    if Models.error:
        box.label(text=Models.error[:200], icon="ERROR")
    if not bpy.app.online_access:
        box.label(text="Downloads need online access: Preferences > System > Network > Allow Online Access",
                  icon="INFO")
    data = Models.data
    if data is None:
        if not Models.checking and not Models.error:
            box.label(text="Press refresh to list the backend's models")
        return
    if data.get("offline"):
        box.label(text="The backend runs with HF_HUB_OFFLINE: models load from its cache only", icon="INFO")
    snap = Models.snapshot
    downloading = Models.download is not None
    for m in data.get("models", []):
        col = box.column(align=True)
        row = col.row()
        installed = m.get("repo") is None or m.get("installed")
        row.label(text=m.get("title") or m["id"], icon="CHECKMARK" if installed else "IMPORT")
        size = m.get("size_on_disk") if m.get("installed") else m.get("download_bytes", 0)
        fits = {True: "fits this GPU", False: "too big for this GPU", None: "no GPU"}[m.get("fits")]
        row.label(text=f"{m['role']}, {(size or 0) / GB:.1f} GB, {m.get('vram_gb', 0):g} GB VRAM ({fits})")
        if m.get("repo") is not None and not downloading:
            if m.get("installed"):
                op = row.operator("parallax.remove_model", text="", icon="TRASH")
            else:
                op = row.operator("parallax.download_model", text="", icon="IMPORT")
                row.enabled = bool(bpy.app.online_access)
            op.model = m["id"]
        flags = m.get("licence_flags") or []
        lic = col.row()
        lic.label(text=f"Licence: {m.get('licence', '?')}" + (f" [{', '.join(flags)}]" if flags else ""),
                  icon="ERROR" if flags else "NONE")
        if not m.get("installed") and m.get("partial_bytes"):
            col.label(text=f"A partial download ({m['partial_bytes'] / 1e6:.0f} MB) resumes on the next download")
        if snap is not None and snap.model == m["id"]:
            if downloading:
                prog = col.row()
                prog.progress(factor=snap.progress, type="BAR", text=snap.stage or snap.phase)
                prog.operator("parallax.cancel_model_download", text="", icon="X")
            elif snap.phase != "done" and snap.message:
                col.label(text=snap.message[:200], icon="ERROR" if snap.phase == "failed" else "INFO")


# -- operators ----------------------------------------------------------------------------------

class PARALLAX_OT_refresh_models(bpy.types.Operator):
    """Ask the backend for its model catalogue: installed models, sizes, licences"""

    bl_idname = "parallax.refresh_models"
    bl_label = "Refresh Models"

    def execute(self, context):
        refresh(context, wait=bpy.app.background)
        if Models.error and not Models.checking:
            self.report({"ERROR"}, Models.error)
            return {"CANCELLED"}
        return {"FINISHED"}


class PARALLAX_OT_download_model(bpy.types.Operator):
    """Download a model into the backend's model cache (resumes an interrupted download)"""

    bl_idname = "parallax.download_model"
    bl_label = "Download Model"

    model: StringProperty(name="Model", description="Catalogue id of the model")
    accept_licence: BoolProperty(name="Accept licence", default=False, options={"SKIP_SAVE"},
                                 description="I have read the model's licence and accept it")
    wait: BoolProperty(name="Wait", default=True, options={"HIDDEN", "SKIP_SAVE"},
                       description="In background mode, block until the download ends")

    @classmethod
    def poll(cls, context):
        return Models.download is None

    def invoke(self, context, event):
        info = entry(self.model)
        if info is not None and info.get("needs_acceptance"):
            return context.window_manager.invoke_props_dialog(self, width=480)
        return self.execute(context)

    def draw(self, context):
        info = entry(self.model) or {}
        col = self.layout.column()
        col.label(text=f"{info.get('title', self.model)}: {info.get('download_bytes', 0) / GB:.1f} GB")
        col.label(text=f"Licence: {info.get('licence', '?')} [{', '.join(info.get('licence_flags', []))}]", icon="ERROR")
        col.label(text=f"Read it first: {info.get('licence_url', '')}")
        col.prop(self, "accept_licence")

    def execute(self, context):
        try:
            snap = start_download(context, self.model, self.accept_licence, wait=bpy.app.background and self.wait)
        except (ValueError, client.ParallaxError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        if snap is None:
            self.report({"INFO"}, f"Downloading {self.model}... (progress in the Parallax preferences)")
            return {"FINISHED"}
        if snap.phase != "done":
            self.report({"ERROR"}, snap.message or snap.phase)
            return {"CANCELLED"}
        self.report({"INFO"}, f"Downloaded {self.model}")
        return {"FINISHED"}


class PARALLAX_OT_cancel_model_download(bpy.types.Operator):
    """Cancel the model download (the files already fetched are kept: downloading again resumes)"""

    bl_idname = "parallax.cancel_model_download"
    bl_label = "Cancel Download"

    @classmethod
    def poll(cls, context):
        return Models.download is not None

    def execute(self, context):
        cancel_download()
        return {"FINISHED"}


class PARALLAX_OT_remove_model(bpy.types.Operator):
    """Delete a model's files from the backend's model cache (nothing else is touched)"""

    bl_idname = "parallax.remove_model"
    bl_label = "Remove Model"

    model: StringProperty(name="Model", description="Catalogue id of the model")

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        try:
            result = remove(context, self.model)
        except (ValueError, client.ParallaxError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Removed {self.model} ({result.get('freed_bytes', 0) / GB:.2f} GB freed)")
        return {"FINISHED"}


classes = (PARALLAX_OT_refresh_models, PARALLAX_OT_download_model, PARALLAX_OT_cancel_model_download,
           PARALLAX_OT_remove_model)


def unregister_timers() -> None:
    for fn in (poll, _redraw_timer):
        if bpy.app.timers.is_registered(fn):
            bpy.app.timers.unregister(fn)
    if Models.download is not None:
        Models.download.cancel()
        Models.download = None
