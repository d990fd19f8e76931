"""Parallax: video generation and camera / 4D reconstruction, inside Blender.

The add-on side: preferences, the N-panel, operators and importers. It never imports torch;
the heavy work runs in the backend process, and results arrive as result bundles.
"""

import bpy

from . import operators, panels, props

_modules = (props, operators, panels)


def register():
    for module in _modules:
        module.register()


def unregister():
    for module in reversed(_modules):
        module.unregister()
