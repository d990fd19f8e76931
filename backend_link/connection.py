"""Which backend the add-on talks to: the preferences' local interpreter or remote host.

A local loopback backend is not "online"; a remote host is, so it is refused while Blender's
online access (``bpy.app.online_access``) is off.
"""

from __future__ import annotations

import os
from typing import Optional

import bpy

from .. import client
from ..package import addon_package
from .environment import env_dir, env_python


class BackendNotConfigured(client.ParallaxError):
    """No backend Python / URL, or the network it needs is not allowed."""


def prefs(context=None):
    return (context or bpy.context).preferences.addons[addon_package()].preferences


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


def client_for(kw: dict) -> client.Client:
    """A Client for ``target()``'s answer, starting a local backend first (blocks until ready)."""
    if "client" in kw:
        return kw["client"]
    backend = kw["backend"]
    backend.ensure_running(wait=True)
    return backend.client()


def local_backend() -> Optional[client.BackendProcess]:
    """The local backend process, if one was configured (for the panel: state, crash)."""
    return client.default_backend() if _configured is not None else None


def stop() -> None:
    """Stop the local backend (unregister, quit)."""
    if _configured is not None:
        client.shutdown()


def release_memory(context=None) -> dict:
    kw = target(context)
    if "backend" in kw and not kw["backend"].is_alive():
        return {}  # nothing loaded
    return client_for(kw).release()
