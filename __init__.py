"""Parallax: video generation and camera / 4D reconstruction, inside Blender.

The add-on side: the backend link, preferences and scene settings, operators, importers and
the N-panel. It never imports torch; the heavy work runs in the backend process, and results
arrive as result bundles (read with ``backend/bundle.py``, numpy and the standard library).
"""

import atexit

import bpy

from . import backend_link, operators, panels, props

# Each module only imports those before it; unregistering in reverse stops the job timers
# (operators) before the backend process (backend_link).
_modules = (backend_link, props, operators, panels)


def _stop_backend_at_quit():
    # Quitting Blender stops the backend (the server cancels its job cleanly on SIGTERM).
    backend_link.stop()


def register():
    for module in _modules:
        module.register()
    atexit.register(_stop_backend_at_quit)


def unregister():
    atexit.unregister(_stop_backend_at_quit)
    for module in reversed(_modules):
        module.unregister()
