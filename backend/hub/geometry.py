"""The geometry role (``backend.roles.Geometry``) from a resolved model folder.

:func:`load_geometry` picks the loader from the catalogue entry when there is one, else from the
folder itself:

- ``depth-anything-3``: a ``config.json`` naming a DA3 preset (``model_name``) beside a
  ``model.safetensors`` -> :class:`backend.hub.depth_anything_3.DepthAnything3Geometry`;
- ``parallax``: our own checkpoint (a ``ParallaxSTDiT`` transformer folder, or a pipeline folder
  whose ``model_index.json`` names ``ParallaxPipeline``) ->
  :class:`backend.pipelines.unified_roles.UnifiedGeometry`, the unified model's V2C. That adapter
  lives with the pipelines (it runs the V2C engine); this module only routes to it.

A folder that is neither gets a ValueError that says what a geometry folder holds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

GEOMETRY_LOADERS = ("depth-anything-3", "parallax")


def detect_loader(folder: os.PathLike | str) -> Optional[str]:
    """The geometry loader a folder needs (one of :data:`GEOMETRY_LOADERS`), or None."""
    from .depth_anything_3 import is_depth_anything_3

    folder = Path(folder)
    if is_depth_anything_3(folder):
        return "depth-anything-3"
    for name, key in (("model_index.json", "ParallaxPipeline"), ("config.json", "ParallaxSTDiT")):
        try:
            if json.loads((folder / name).read_text()).get("_class_name") == key:
                return "parallax"
        except (OSError, ValueError, AttributeError):
            continue
    return None


def _folder_and_loader(resolved: Any) -> tuple[Path, Optional[str], str]:
    """(folder, loader, model id) of a ``ResolvedModel`` (or, for scripts, a plain path)."""
    if isinstance(resolved, (str, os.PathLike)):
        folder, entry = Path(resolved), None
    else:
        folder, entry = Path(resolved.path), getattr(resolved, "entry", None)
    if entry is not None:
        if entry.role != "geometry" and entry.loader != "parallax":
            raise ValueError(f"{entry.id} is a {entry.role} model, not a geometry model")
        return folder, entry.loader, entry.id
    return folder, detect_loader(folder), str(folder)


def load_geometry(resolved: Any, device=None, resolution: Optional[int] = None, **options):
    """An object filling the geometry role for ``resolved`` (``backend.hub.catalogue.ResolvedModel``).

    Args:
        resolved: what ``resolve_model(id_or_path)`` returned (a folder and its catalogue entry or None).
        device: ``cuda``, ``cpu``... (default: ``backend.runtime.pick_device``).
        resolution: the longer side a hub model processes frames at (DA3: its authors' 504 by
            default); the unified model's size is its own (``sample_size``), so it ignores this.
        options: the loader's own (DA3: ``process_res``, ``chunk_frames``, ``chunk_overlap``;
            unified: ``UnifiedEngine.solve`` options).

    Raises:
        ValueError: the folder holds no geometry model this build can load (the message names
            what one looks like).
    """
    from ..runtime import pick_device

    folder, loader, model_id = _folder_and_loader(resolved)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such model folder")
    dev = pick_device(device)
    if loader == "depth-anything-3":
        from .depth_anything_3 import load

        if resolution is not None:
            options["process_res"] = int(resolution)
        return load(folder, model_id=model_id, device=dev, **options)
    if loader == "parallax":
        from ..pipelines.unified_roles import UnifiedGeometry

        return UnifiedGeometry(model_path=transformer_folder(folder), device=dev, **options)
    raise ValueError(f"{folder} is not a geometry model: expected a Depth Anything 3 folder (config.json with "
                     "\"model_name\" and model.safetensors) or a Parallax checkpoint (config.json of a "
                     "ParallaxSTDiT, or model_index.json of a ParallaxPipeline)")


def is_unified(resolved: Any) -> bool:
    """True when ``resolved`` is our own checkpoint (the unified model fills geometry itself)."""
    return _folder_and_loader(resolved)[1] == "parallax"


def transformer_folder(folder) -> str:
    """A Parallax pipeline folder keeps the transformer in ``transformer/``."""
    folder = Path(folder)
    return str(folder / "transformer") if (folder / "model_index.json").is_file() else str(folder)


__all__ = ["GEOMETRY_LOADERS", "detect_loader", "is_unified", "load_geometry", "transformer_folder"]
