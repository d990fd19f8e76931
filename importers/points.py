"""Per-frame point clouds as one object whose Geometry Nodes pick the current frame's points.

Blender's Python API cannot fill a PointCloud data-block (it has no way to add points), so the
points live on a vertex-only mesh with ``frame``, ``conf`` and ``Col`` attributes, and the
"Parallax Points" node group turns the selected vertices into native point-cloud geometry
(Mesh to Points). Cycles and EEVEE render that as points, in Blender 4.2 and 5.x alike, and
point size, confidence threshold and "show all frames" stay live modifier inputs.
"""

from __future__ import annotations

import bpy
import numpy as np

from .materials import emission_material

NODE_GROUP = "Parallax Points"
COLOR_ATTRIBUTE = "Col"


COLOR_MODE_ITEMS = [
    ("IMAGE", "Image", "Each point in the colour of its pixel"),
    ("CONFIDENCE", "Confidence", "Blue for low, red for high confidence"),
    ("MARKER", "Marker", "Bright green markers, to judge alignment against the footage"),
]
COLOR_MODES = tuple(item[0] for item in COLOR_MODE_ITEMS)


def _srgb_to_linear_table() -> np.ndarray:
    c = np.arange(256, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


_SRGB_TO_LINEAR = _srgb_to_linear_table()


def create_points(name: str, xyz: np.ndarray, rgb: np.ndarray, conf: np.ndarray, frame: np.ndarray,
                  footprint: np.ndarray, collection, point_size: float, size_in_pixels: bool = True,
                  conf_threshold: float = 0.0, show_all_frames: bool = False,
                  color_mode: str = "IMAGE") -> bpy.types.Object:
    """Object holding all frames' points.

    ``frame`` is the Blender frame each point belongs to; ``footprint`` the world size of one
    pixel at the point, seen from its frame's camera, so sizes can be given in pixels.
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
    # Linear float colours take the same fast path; byte colours convert each value on the way.
    rgba = np.empty((n, 4), np.float32)
    rgba[:, :3] = _SRGB_TO_LINEAR[rgb]
    rgba[:, 3] = 1.0
    mesh.color_attributes.new(COLOR_ATTRIBUTE, "FLOAT_COLOR", "POINT").data.foreach_set("color", rgba.ravel())
    mesh.update()

    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    mod = obj.modifiers.new("Parallax Points", "NODES")
    conf_range = (float(conf.min()), float(conf.max())) if n else (0.0, 1.0)
    mod.node_group = _node_group(_point_material(name, color_mode, conf_range))
    set_inputs(obj, point_size=point_size, size_in_pixels=size_in_pixels, conf_threshold=conf_threshold,
               show_all_frames=show_all_frames)
    return obj


def set_inputs(obj, **values) -> None:
    """Set the point cloud's live inputs by name: point_size, conf_threshold, show_all_frames."""
    mod = obj.modifiers["Parallax Points"]
    for item in mod.node_group.interface.items_tree:
        if item.item_type == "SOCKET" and item.in_out == "INPUT" and item.name in _INPUT_NAMES:
            key = _INPUT_NAMES[item.name]
            if key in values:
                mod[item.identifier] = values[key]
    obj.update_tag()


_INPUT_NAMES = {"Point Size": "point_size", "Size in Pixels": "size_in_pixels",
                "Confidence Threshold": "conf_threshold", "Show All Frames": "show_all_frames"}


def _node_group(material) -> bpy.types.NodeTree:
    """A node group per import (it carries that import's material)."""
    ng = bpy.data.node_groups.new(NODE_GROUP, "GeometryNodeTree")
    iface = ng.interface
    iface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    size = iface.new_socket("Point Size", in_out="INPUT", socket_type="NodeSocketFloat")
    size.min_value, size.default_value = 0.0, 1.5
    iface.new_socket("Size in Pixels", in_out="INPUT", socket_type="NodeSocketBool").default_value = True
    thr = iface.new_socket("Confidence Threshold", in_out="INPUT", socket_type="NodeSocketFloat")
    thr.default_value = 0.0
    iface.new_socket("Show All Frames", in_out="INPUT", socket_type="NodeSocketBool")
    iface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")

    N, L = ng.nodes, ng.links
    gin, gout = N.new("NodeGroupInput"), N.new("NodeGroupOutput")

    def float_attribute(name: str):
        node = N.new("GeometryNodeInputNamedAttribute")
        node.data_type = "FLOAT"
        node.inputs["Name"].default_value = name
        return node

    frame_attr, conf_attr = float_attribute("frame"), float_attribute("conf")
    time = N.new("GeometryNodeInputSceneTime")

    same_frame = N.new("FunctionNodeCompare")
    same_frame.data_type, same_frame.operation = "FLOAT", "EQUAL"
    same_frame.inputs["Epsilon"].default_value = 0.5  # frames are whole numbers
    L.new(frame_attr.outputs["Attribute"], same_frame.inputs[0])
    L.new(time.outputs["Frame"], same_frame.inputs[1])

    in_time = N.new("FunctionNodeBooleanMath")
    in_time.operation = "OR"
    L.new(same_frame.outputs["Result"], in_time.inputs[0])
    L.new(gin.outputs["Show All Frames"], in_time.inputs[1])

    confident = N.new("FunctionNodeCompare")
    confident.data_type, confident.operation = "FLOAT", "GREATER_EQUAL"
    L.new(conf_attr.outputs["Attribute"], confident.inputs[0])
    L.new(gin.outputs["Confidence Threshold"], confident.inputs[1])

    drop = N.new("FunctionNodeBooleanMath")
    drop.operation = "NAND"  # delete unless (in time and confident)
    L.new(in_time.outputs["Boolean"], drop.inputs[0])
    L.new(confident.outputs["Result"], drop.inputs[1])

    delete = N.new("GeometryNodeDeleteGeometry")
    delete.domain = "POINT"
    L.new(gin.outputs["Geometry"], delete.inputs["Geometry"])
    L.new(drop.outputs["Boolean"], delete.inputs["Selection"])

    # Diameter in pixels: times the world size of a pixel at the point ("footprint").
    footprint = float_attribute("footprint")
    in_pixels = N.new("ShaderNodeMath")
    in_pixels.operation = "MULTIPLY"
    L.new(gin.outputs["Point Size"], in_pixels.inputs[0])
    L.new(footprint.outputs["Attribute"], in_pixels.inputs[1])
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
    (blue low, red high, over the import's range), or as bright markers over the plate."""
    if color_mode not in COLOR_MODES:
        raise ValueError(f"point colour mode {color_mode!r} is not one of {COLOR_MODES}")
    mat, emit = emission_material(name)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    if color_mode == "MARKER":
        emit.inputs["Color"].default_value = (0.1, 1.0, 0.05, 1.0)
        return mat
    attr = nodes.new("ShaderNodeAttribute")
    attr.attribute_type = "GEOMETRY"
    if color_mode == "IMAGE":
        attr.attribute_name = COLOR_ATTRIBUTE
        links.new(attr.outputs["Color"], emit.inputs["Color"])
        return mat
    attr.attribute_name = "conf"
    remap = nodes.new("ShaderNodeMapRange")
    remap.inputs["From Min"].default_value, remap.inputs["From Max"].default_value = conf_range
    if conf_range[1] <= conf_range[0]:
        remap.inputs["From Max"].default_value = conf_range[0] + 1.0
    ramp = nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].color = (0.0, 0.1, 1.0, 1.0)
    ramp.color_ramp.elements[1].color = (1.0, 0.05, 0.0, 1.0)
    links.new(attr.outputs["Fac"], remap.inputs["Value"])
    links.new(remap.outputs["Result"], ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], emit.inputs["Color"])
    return mat
