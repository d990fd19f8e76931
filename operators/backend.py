"""Which backend the add-on talks to, what it offers (/v1/health), and its environment.

Nothing here blocks Blender's UI: the health check and the environment build run in daemon
threads and leave their results in module state, which panels read and timers redraw.
A local loopback backend is not "online"; a remote host and pip are, so both are refused
while Blender's online access (``bpy.app.online_access``) is off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Optional

import bpy

from .. import client
from ..props import addon_package

ADDON_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ADDON_ROOT / "backend" / "requirements.txt"


class BackendNotConfigured(client.ParallaxError):
    """No backend Python / URL, or the network it needs is not allowed."""


def prefs(context=None):
    return (context or bpy.context).preferences.addons[addon_package()].preferences


# -- where the backend lives ------------------------------------------------------------

def env_dir(create: bool = False) -> Path:
    """The backend environment Parallax creates: the extension's user directory on 4.2+,
    a folder next to the add-on for a legacy install."""
    try:
        return Path(bpy.utils.extension_path_user(addon_package(), path="backend-venv", create=create))
    except (ValueError, AttributeError):  # not installed as an extension
        return ADDON_ROOT.parent / "parallax-backend-venv"


def env_python(root: Path) -> Path:
    return root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def backend_python(p) -> Optional[str]:
    """The interpreter that runs a local backend: the preference, else the created environment,
    else $PARALLAX_BACKEND_PYTHON / $PARALLAX_PYTHON. None: nothing configured."""
    if p.python_path:
        return bpy.path.abspath(p.python_path)
    created = env_python(env_dir())
    if created.is_file():
        return str(created)
    return os.environ.get("PARALLAX_BACKEND_PYTHON") or os.environ.get("PARALLAX_PYTHON") or None


def online_refusal(what: str) -> Optional[str]:
    if not bpy.app.online_access:
        return (f"{what} needs network access, which is turned off in Blender "
                f"(Preferences > System > Network > Allow Online Access)")
    return None


_configured: Optional[tuple] = None


def target(context=None) -> dict:
    """Keyword arguments for ``client.start_job``: ``backend=`` (local) or ``client=`` (remote).
    Raises BackendNotConfigured with a message for the user."""
    global _configured
    p = prefs(context)
    if p.backend_mode == "REMOTE":
        refusal = online_refusal("A remote backend")
        if refusal:
            raise BackendNotConfigured(refusal)
        if not p.remote_url.strip():
            raise BackendNotConfigured("no remote backend URL is set in the Parallax preferences")
        return {"client": client.Client(p.remote_url.strip(), p.remote_token or None)}
    python = backend_python(p)
    if not python:
        raise BackendNotConfigured("no backend Python: set one in the Parallax preferences, "
                                   "or press Create Backend Environment there")
    settings = (python, p.device)
    if settings != _configured:  # a change of settings stops the old process
        client.configure(python=python, extra_args=["--device", p.device])
        _configured = settings
    return {"backend": client.default_backend()}


def local_backend() -> Optional[client.BackendProcess]:
    """The local backend process, if one was configured (for the panel: state, crash)."""
    return client.default_backend() if _configured is not None else None


def stop() -> None:
    """Stop the local backend (unregister, quit)."""
    global _configured
    if _configured is not None:
        client.shutdown()


# -- what the backend offers (/v1/health) --------------------------------------------------

class Health:
    data: Optional[dict] = None  # last /v1/health answer
    error: str = ""  # why the last check failed
    checking: bool = False


def _client_for(kw: dict) -> client.Client:
    if "client" in kw:
        return kw["client"]
    backend = kw["backend"]
    backend.ensure_running(wait=True)
    return backend.client()


def refresh_health(context=None, wait: bool = False) -> None:
    """Fetch /v1/health (starting a local backend if needed) in a thread, or now if ``wait``."""
    try:
        kw = target(context)
    except client.ParallaxError as e:
        Health.data, Health.error = None, str(e)
        return

    def work():
        try:
            Health.data, Health.error = _client_for(kw).health(), ""
        except client.ParallaxError as e:
            Health.data, Health.error = None, str(e)
        finally:
            Health.checking = False

    Health.checking = True
    if wait:
        work()
    else:
        threading.Thread(target=work, name="parallax-health", daemon=True).start()


def task_status(task: str) -> tuple[Optional[bool], str]:
    """(True, "") available; (False, reason) not offered; (None, "") not checked yet."""
    if Health.data is None:
        return None, Health.error
    t = Health.data.get("tasks", {}).get(task)
    if t is None:
        return False, f"this backend has no '{task}' task"
    return bool(t.get("available")), t.get("reason") or ""


def release_memory(context=None) -> dict:
    kw = target(context)
    if "backend" in kw and not kw["backend"].is_alive():
        return {}  # nothing loaded
    return _client_for(kw).release()


# -- "Create backend environment" ---------------------------------------------------------

class EnvBuild:
    """Builds a venv with pip in a daemon thread; ``state``/``log`` are read by the preferences."""

    state = "idle"  # idle, running, done, failed
    stage = ""
    message = ""
    log: list = []
    _proc: Optional[subprocess.Popen] = None

    @classmethod
    def steps(cls, root: Path, base_python: str) -> list:
        py = str(env_python(root))
        return [("creating the environment", [base_python, "-m", "venv", str(root)]),
                ("updating pip", [py, "-m", "pip", "install", "--upgrade", "pip"]),
                ("installing torch", [py, "-m", "pip", "install", "torch"]),
                ("installing the backend's packages", [py, "-m", "pip", "install", "-r", str(REQUIREMENTS)])]

    @classmethod
    def start(cls, root: Path, base_python: str = sys.executable, wait: bool = False) -> None:
        if cls.state == "running":
            return
        cls.state, cls.stage, cls.message, cls.log = "running", "", "", []
        thread = threading.Thread(target=cls._run, args=(cls.steps(root, base_python),),
                                  name="parallax-env", daemon=True)
        thread.start()
        if wait:
            thread.join()

    @classmethod
    def _run(cls, steps) -> None:
        for i, (stage, cmd) in enumerate(steps):
            cls.stage = f"{stage} ({i + 1}/{len(steps)})"
            cls.log.append("$ " + " ".join(cmd))
            try:
                cls._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                             errors="replace", stdin=subprocess.DEVNULL)
            except OSError as e:
                cls._fail(f"{stage} failed: cannot run {cmd[0]!r} ({e.strerror})")
                return
            for line in cls._proc.stdout:
                cls.log.append(line.rstrip())
                del cls.log[:-200]
            code = cls._proc.wait()
            if code != 0:
                last = next((line for line in reversed(cls.log) if line.strip()), "")
                cls._fail(f"{stage} failed (exit code {code}): {last}")
                return
        cls.state, cls.stage, cls.message = "done", "", "Backend environment ready"

    @classmethod
    def _fail(cls, message: str) -> None:
        cls.state, cls.message = "failed", message
        cls.log.append(message)
