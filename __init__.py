"""Parallax: video generation and camera / 4D reconstruction, inside Blender.

The add-on side: preferences, the N-panel, operators and importers. It never imports torch;
the heavy work runs in the backend process, and results arrive as result bundles.
"""

import atexit

import bpy

from . import operators, panels, props

_modules = (props, operators, panels)


def _stop_backend_at_quit():
    # Quitting Blender stops the backend (the server cancels its job cleanly on SIGTERM).
    operators.backend.stop()


def register():
    for module in _modules:
        module.register()
    atexit.register(_stop_backend_at_quit)


def unregister():
    atexit.unregister(_stop_backend_at_quit)
    for module in reversed(_modules):
        module.unregister()  # operators.unregister stops the backend and the job timers
