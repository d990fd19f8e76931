"""The import options, declared once.

``ImportOptions`` is what the importer takes. Each field also carries, in its metadata, what
Blender shows for it (name, description, bounds, enum items), and the import operator and the
scene settings get their bpy properties generated from it, so the three cannot drift apart
(the way Blender's glTF importer maps its operator's properties to its options).
"""

import dataclasses
import typing
from dataclasses import dataclass

from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty

from .points import COLOR_MODE_ITEMS

__all__ = ["ImportOptions", "with_import_options", "options_from", "copy_options"]


def option(default, name: str, description: str = "", **ui):
    """An ImportOptions field; ``ui`` holds the rest of its bpy property's keywords (min,
    soft_max, items...)."""
    return dataclasses.field(default=default, metadata={"name": name, "description": description, **ui})


@dataclass
class ImportOptions:
    scale: float = option(1.0, "Scale", "Multiply reconstructed lengths (results have arbitrary scale)",
                          min=1e-6, soft_max=100.0)
    align_to_floor: bool = option(False, "Align to Floor",
                                  "Rotate and move the result so its dominant ground plane is Z = 0")
    # 0: 1.5 pixels, or 1/300 of the viewing distance in scene units.
    point_size: float = option(0.0, "Point Size", "Point diameter, in pixels or in scene units; 0 picks one",
                               min=0.0, soft_max=20.0)
    size_in_pixels: bool = option(True, "Size in Pixels", "Point Size in pixels of each point's own frame "
                                                          "(dense maps); off: in scene units (sparse points)")
    conf_threshold: float = option(0.0, "Min Confidence", "Hide points below this confidence", min=0.0)
    show_all_frames: bool = option(False, "Show All Frames", "Show every frame's points at once (static scenes)")
    # 4D reconstructions flag the points that move; without flags every point counts as static.
    show_static: bool = option(True, "Static Points", "Show the points that stay put in the world")
    show_dynamic: bool = option(True, "Dynamic Points",
                                "Show the points that move (flagged by a dynamic-scene reconstruction)")
    accumulate_static: bool = option(False, "Accumulate Static",
                                     "Show the static points of every frame at once (a clean background "
                                     "cloud); dynamic points still follow the current frame")
    point_color: str = option("IMAGE", "Point Colour", "What colours the points", items=COLOR_MODE_ITEMS)
    max_points_per_frame: int = option(0, "Max Points per Frame",
                                       "Keep an even subsample of each frame's points; 0 keeps all", min=0)
    import_plate: bool = option(True, "Image Plane", "Footage on a plane parented to the camera")
    plate_distance: float = option(0.0, "Plane Distance",
                                   "Distance of the image plane from the camera; 0: behind the points",
                                   min=0.0)
    camera_background: bool = option(True, "Camera Background", "Footage as the camera's background image")
    # Plate and background show the undistorted frames whenever the bundle has them; this is
    # what lets renders be distorted back to match the footage as shot.
    movie_clip: bool = option(True, "Lens Distortion", "With a solved lens distortion: the footage as shot as a "
                                                       "Movie Clip carrying the lens, and a compositor node group "
                                                       "(Movie Distortion, Distort) that redistorts renders to match it")
    camera_path: bool = option(True, "Camera Path", "A curve along the solved camera centres, broken where frames "
                                                    "are not solved, in its own collection; never rendered")
    path_marker_every: int = option(10, "Path Markers Every", "A small camera frustum on the path every N frames; "
                                                              "0: none", min=0)
    import_points: bool = option(True, "Points", "The bundle's per-frame points")
    set_scene: bool = option(True, "Set Scene", "Take the bundle's frame rate, frame range and resolution, "
                                                "make its camera active and use the Standard view transform")


_PROPERTY_TYPES = {bool: BoolProperty, int: IntProperty, float: FloatProperty}


def _bpy_properties() -> dict:
    """{name: bpy property} for every option; new objects on every call, one set per class."""
    types = typing.get_type_hints(ImportOptions)
    props = {}
    for f in dataclasses.fields(ImportOptions):
        make = EnumProperty if "items" in f.metadata else _PROPERTY_TYPES[types[f.name]]
        props[f.name] = make(default=f.default, **f.metadata)
    return props


def with_import_options(cls):
    """Class decorator: give ``cls`` (an Operator or a PropertyGroup) a property per option.

    Blender finds a class's properties in its own ``__annotations__`` when it registers, so the
    generated ones go there, after those the class declares itself.
    """
    cls.__annotations__ = {**cls.__dict__.get("__annotations__", {}), **_bpy_properties()}
    return cls


def options_from(owner) -> ImportOptions:
    """The options as set on an operator or the scene settings."""
    return ImportOptions(**{f.name: getattr(owner, f.name) for f in dataclasses.fields(ImportOptions)})


def copy_options(source, target) -> None:
    """Copy every option from one property owner to another (the scene's onto an operator)."""
    for f in dataclasses.fields(ImportOptions):
        setattr(target, f.name, getattr(source, f.name))
