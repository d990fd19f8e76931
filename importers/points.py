"""Per-frame point clouds as one object whose Geometry Nodes pick the current frame's points.

Blender's Python API cannot fill a PointCloud data-block (it has no way to add points), so the
points live on a vertex-only mesh with ``frame``, ``conf`` and ``Col`` attributes, and the
"Parallax Points" node group turns the selected vertices into native point-cloud geometry
(Mesh to Points). Cycles and EEVEE render that as points, in Blender 4.2 and 5.x alike, and
point size, confidence threshold and "show all frames" stay live modifier inputs.

A 4D reconstruction also flags the points that move in the world: they get a boolean
``dynamic`` attribute, and three more live inputs choose what shows: static points, dynamic
points, and "accumulate static" (the static points of every frame at once, a clean background,
while the dynamic ones still follow the current frame). Without flags every point is static, so
results of other tasks look exactly as before.
"""

from __future__ import annotations

import bpy
import numpy as np

from .materials import emission_material

NODE_GROUP = "Parallax Points"
MODIFIER = "Parallax Points"
COLOR_ATTRIBUTE = "Col"
DYNAMIC_ATTRIBUTE = "dynamic"
# Moving points in "Dynamic" colour mode: magenta, a colour footage rarely has.
DYNAMIC_COLOR = (1.0, 0.0, 1.0, 1.0)


COLOR_MODE_ITEMS = [
    ("IMAGE", "Image", "Each point in the colour of its pixel"),
    ("CONFIDENCE", "Confidence", "Blue for low, red for high confidence"),
    ("MARKER", "Marker", "Bright green markers, to judge alignment against the footage"),
    ("DYNAMIC", "Dynamic", "Moving points magenta, static points in their image colour (4D reconstructions)"),
]
COLOR_MODES = tuple(item[0] for item in COLOR_MODE_ITEMS)

# Modifier input (as Blender shows it) -> keyword of set_inputs / name of the import option.
_INPUT_NAMES = {"Point Size": "point_size", "Size in Pixels": "size_in_pixels",
                "Confidence Threshold": "conf_threshold", "Show All Frames": "show_all_frames",
                "Static Points": "show_static", "Dynamic Points": "show_dynamic",
                "Accumulate Static": "accumulate_static"}
# The inputs a display update copies from the scene settings (Point Size only when set).
DISPLAY_OPTIONS = tuple(key for key in _INPUT_NAMES.values() if key != "point_size")


def _srgb_to_linear_table() -> np.ndarray:
    c = np.arange(256, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


_SRGB_TO_LINEAR = _srgb_to_linear_table()


def create_points(name: str, xyz: np.ndarray, rgb: np.ndarray, conf: np.ndarray, frame: np.ndarray,
                  footprint: np.ndarray, collection, point_size: float, size_in_pixels: bool = True,
                  conf_threshold: float = 0.0, show_all_frames: bool = False,
                  color_mode: str = "IMAGE", *, dynamic: np.ndarray | None = None, show_static: bool = True,
                  show_dynamic: bool = True, accumulate_static: bool = False) -> bpy.types.Object:
    """Object holding all frames' points.

    ``frame`` is the Blender frame each point belongs to; ``footprint`` the world size of one
    pixel at the point, seen from its frame's camera, so sizes can be given in pixels;
    ``dynamic`` (optional, bool per point) marks points that move in the world.
    """
    n = len(xyz)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(n)
    # The generic attribute API copies arrays straight in; `vertices.foreach_set("co")` goes
    # vertex by vertex and is ~100x slower at millions of points.
    mesh.attributes["position"].data.foreach_set("vector", np.ascontiguousarray(xyz, np.float32).ravel())
    mesh.attributes.new("frame", "INT", "POINT").data.foreach_set("value", np.ascontiguousarray(frame, np.int32))
    mesh.attributes.new("conf", "FLOAT", "POINT").data.foreach_set("value", np.ascontiguousarray(conf, np.float32))
    mesh.attributes.new("footprint", "FLOAT", "POINT").data.foreach_set(
        "value", np.ascontiguousarray(footprint, np.float32))
    if dynamic is not None:
        if len(dynamic) != n:
            raise ValueError(f"{len(dynamic)} dynamic flags for {n} points")
        # Only flagged results get the attribute: the node group reads a missing one as "static".
        mesh.attributes.new(DYNAMIC_ATTRIBUTE, "BOOLEAN", "POINT").data.foreach_set(
            "value", np.ascontiguousarray(dynamic, np.bool_))
    # Linear float colours take the same fast path; byte colours convert each value on the way.
    rgba = np.empty((n, 4), np.float32)
    rgba[:, :3] = _SRGB_TO_LINEAR[rgb]
    rgba[:, 3] = 1.0
    mesh.color_attributes.new(COLOR_ATTRIBUTE, "FLOAT_COLOR", "POINT").data.foreach_set("color", rgba.ravel())
    mesh.update()

    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    mod = obj.modifiers.new(MODIFIER, "NODES")
    conf_range = (float(conf.min()), float(conf.max())) if n else (0.0, 1.0)
    mod.node_group = _node_group(_point_material(name, color_mode, conf_range))
    set_inputs(obj, point_size=point_size, size_in_pixels=size_in_pixels, conf_threshold=conf_threshold,
               show_all_frames=show_all_frames, show_static=show_static, show_dynamic=show_dynamic,
               accumulate_static=accumulate_static)
    return obj


def set_inputs(obj, **values) -> None:
    """Set the point cloud's live inputs by keyword: point_size, size_in_pixels, conf_threshold,
    show_all_frames, show_static, show_dynamic, accumulate_static. Inputs a node group made by
    an older version lacks are skipped."""
    unknown = set(values) - set(_INPUT_NAMES.values())
    if unknown:
        raise TypeError(f"unknown point input(s): {', '.join(sorted(unknown))}")
    mod = obj.modifiers[MODIFIER]
    for item in mod.node_group.interface.items_tree:
        if item.item_type == "SOCKET" and item.in_out == "INPUT" and item.name in _INPUT_NAMES:
            key = _INPUT_NAMES[item.name]
            if key in values:
                mod[item.identifier] = values[key]
    obj.update_tag()


def display_values(settings) -> dict:
    """The live inputs as set on ``settings`` (the scene's Parallax settings, or an operator):
    what "Update Points" applies to existing point objects. Point Size 0 means "keep"."""
    values = {key: getattr(settings, key) for key in DISPLAY_OPTIONS}
    if settings.point_size > 0:
        values["point_size"] = settings.point_size
    return values


def _node_group(material) -> bpy.types.NodeTree:
    """A node group per import (it carries that import's material).

    A point survives when it is confident enough, of a kind that is shown (static or dynamic),
    and in time: on the current frame, or any frame with Show All Frames, or any frame when it
    is static and Accumulate Static is on.
    """
    ng = bpy.data.node_groups.new(NODE_GROUP, "GeometryNodeTree")
    iface = ng.interface
    iface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    size = iface.new_socket("Point Size", in_out="INPUT", socket_type="NodeSocketFloat")
    size.min_value, size.default_value = 0.0, 1.5
    iface.new_socket("Size in Pixels", in_out="INPUT", socket_type="NodeSocketBool").default_value = True
    thr = iface.new_socket("Confidence Threshold", in_out="INPUT", socket_type="NodeSocketFloat")
    thr.default_value = 0.0
    iface.new_socket("Show All Frames", in_out="INPUT", socket_type="NodeSocketBool")
    for label, default, tip in (
            ("Static Points", True, "Show the points that stay put in the world"),
            ("Dynamic Points", True, "Show the points that move (flagged by a 4D reconstruction)"),
            ("Accumulate Static", False, "Static points of every frame at once (a clean background); "
                                         "dynamic points still follow the current frame")):
        sock = iface.new_socket(label, in_out="INPUT", socket_type="NodeSocketBool")
        sock.default_value, sock.description = default, tip
    iface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")

    N, L = ng.nodes, ng.links
    gin, gout = N.new("NodeGroupInput"), N.new("NodeGroupOutput")

    def attribute(name: str, data_type: str = "FLOAT"):
        node = N.new("GeometryNodeInputNamedAttribute")
        node.data_type = data_type
        node.inputs["Name"].default_value = name
        return node.outputs["Attribute"]

    def boolean(operation: str, a, b=None):
        node = N.new("FunctionNodeBooleanMath")
        node.operation = operation
        L.new(a, node.inputs[0])
        if b is not None:
            L.new(b, node.inputs[1])
        return node.outputs["Boolean"]

    def compare(operation: str, a, b):
        node = N.new("FunctionNodeCompare")
        node.data_type, node.operation = "FLOAT", operation
        L.new(a, node.inputs[0])
        L.new(b, node.inputs[1])
        return node

    time = N.new("GeometryNodeInputSceneTime")
    same_frame = compare("EQUAL", attribute("frame"), time.outputs["Frame"])
    same_frame.inputs["Epsilon"].default_value = 0.5  # frames are whole numbers
    dynamic = attribute(DYNAMIC_ATTRIBUTE, "BOOLEAN")  # False where the attribute is absent

    # In time: this frame's, every frame's (Show All Frames), or a static point accumulated.
    accumulated = boolean("NIMPLY", gin.outputs["Accumulate Static"], dynamic)  # accumulate and not dynamic
    in_time = boolean("OR", boolean("OR", same_frame.outputs["Result"], gin.outputs["Show All Frames"]),
                      accumulated)

    # Of a kind that is shown: the Dynamic Points toggle for dynamic points, Static for the rest.
    kind = N.new("GeometryNodeSwitch")
    kind.input_type = "BOOLEAN"
    L.new(dynamic, kind.inputs["Switch"])
    L.new(gin.outputs["Static Points"], kind.inputs["False"])
    L.new(gin.outputs["Dynamic Points"], kind.inputs["True"])

    confident = compare("GREATER_EQUAL", attribute("conf"), gin.outputs["Confidence Threshold"])
    # Delete unless (in time and of a shown kind and confident).
    drop = boolean("NAND", boolean("AND", in_time, kind.outputs["Output"]), confident.outputs["Result"])

    delete = N.new("GeometryNodeDeleteGeometry")
    delete.domain = "POINT"
    L.new(gin.outputs["Geometry"], delete.inputs["Geometry"])
    L.new(drop, delete.inputs["Selection"])

    # Diameter in pixels: times the world size of a pixel at the point ("footprint").
    in_pixels = N.new("ShaderNodeMath")
    in_pixels.operation = "MULTIPLY"
    L.new(gin.outputs["Point Size"], in_pixels.inputs[0])
    L.new(attribute("footprint"), in_pixels.inputs[1])
    diameter = N.new("GeometryNodeSwitch")
    diameter.input_type = "FLOAT"
    L.new(gin.outputs["Size in Pixels"], diameter.inputs["Switch"])
    L.new(gin.outputs["Point Size"], diameter.inputs["False"])
    L.new(in_pixels.outputs["Value"], diameter.inputs["True"])
    radius = N.new("ShaderNodeMath")
    radius.operation = "MULTIPLY"
    radius.inputs[1].default_value = 0.5
    L.new(diameter.outputs["Output"], radius.inputs[0])

    to_points = N.new("GeometryNodeMeshToPoints")
    to_points.mode = "VERTICES"
    L.new(delete.outputs["Geometry"], to_points.inputs["Mesh"])
    L.new(radius.outputs["Value"], to_points.inputs["Radius"])

    set_mat = N.new("GeometryNodeSetMaterial")
    set_mat.inputs["Material"].default_value = material
    L.new(to_points.outputs["Points"], set_mat.inputs["Geometry"])
    L.new(set_mat.outputs["Geometry"], gout.inputs["Geometry"])
    return ng


def _point_material(name: str, color_mode: str, conf_range: tuple[float, float]) -> bpy.types.Material:
    """Unlit points, as a tracker shows them: in their image colour, coloured by confidence
    (blue low, red high, over the import's range), as bright markers over the plate, or with
    the moving points picked out in magenta."""
    if color_mode not in COLOR_MODES:
        raise ValueError(f"point colour mode {color_mode!r} is not one of {COLOR_MODES}")
    mat, emit = emission_material(name)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    if color_mode == "MARKER":
        emit.inputs["Color"].default_value = (0.1, 1.0, 0.05, 1.0)
        return mat

    def geometry_attribute(attribute_name: str):
        attr = nodes.new("ShaderNodeAttribute")
        attr.attribute_type = "GEOMETRY"
        attr.attribute_name = attribute_name
        return attr

    if color_mode in ("IMAGE", "DYNAMIC"):
        image = geometry_attribute(COLOR_ATTRIBUTE).outputs["Color"]
        if color_mode == "IMAGE":
            links.new(image, emit.inputs["Color"])
            return mat
        # Factor 1 on dynamic points, 0 on static ones and where the flag is absent.
        mix = nodes.new("ShaderNodeMix")
        mix.data_type = "RGBA"
        # The Mix node has a socket per data type under one name: pick the colour ones.
        socket = {s.identifier: s for s in (*mix.inputs, *mix.outputs)}
        links.new(geometry_attribute(DYNAMIC_ATTRIBUTE).outputs["Fac"], socket["Factor_Float"])
        links.new(image, socket["A_Color"])
        socket["B_Color"].default_value = DYNAMIC_COLOR
        links.new(socket["Result_Color"], emit.inputs["Color"])
        return mat
    remap = nodes.new("ShaderNodeMapRange")
    remap.inputs["From Min"].default_value, remap.inputs["From Max"].default_value = conf_range
    if conf_range[1] <= conf_range[0]:
        remap.inputs["From Max"].default_value = conf_range[0] + 1.0
    ramp = nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].color = (0.0, 0.1, 1.0, 1.0)
    ramp.color_ramp.elements[1].color = (1.0, 0.05, 0.0, 1.0)
    links.new(geometry_attribute("conf").outputs["Fac"], remap.inputs["Value"])
    links.new(remap.outputs["Result"], ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], emit.inputs["Color"])
    return mat
