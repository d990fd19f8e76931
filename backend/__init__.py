"""Parallax backend: the unified model, the classical engine and the geometry core.

Runs as its own process (``python -m backend ...``). It never imports bpy; Blender sees
its work only through the result bundle (``backend.bundle``). This package's ``__init__``
imports nothing heavy, so the add-on can import ``backend.bundle`` with numpy alone.
"""

__version__ = "0.1.0"
