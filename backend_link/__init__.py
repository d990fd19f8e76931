"""The add-on's link to its backend: which backend to use, what it offers, and its environment.

Not operators and not UI: operators/, panels/ and props/ all read it, and it reads none of
them, so it sits beside them. Nothing here blocks Blender's UI: the health check and the
environment build run in daemon threads and leave their results in module state, which
panels read and timers redraw.
"""

from .connection import (BackendNotConfigured, backend_python, local_backend,
                         online_refusal, prefs, release_memory, stop, target)
from .environment import EnvBuild, env_dir, env_python
from .health import Health, lists_task, refresh_health, task_status

__all__ = ["BackendNotConfigured", "backend_python", "local_backend",
           "online_refusal", "prefs", "release_memory", "stop", "target", "EnvBuild", "env_dir", "env_python",
           "Health", "lists_task", "refresh_health", "task_status", "register", "unregister"]


def register():
    pass  # nothing to register: the backend starts on first use


def unregister():
    # Whoever disables the add-on gets no orphan backend: the process stops with the link.
    stop()
