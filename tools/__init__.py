"""Developer tools that run outside the backend's own environment (e.g. in Blender's Python)."""
