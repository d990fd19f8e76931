"""Materials shared by the importers."""

import bpy


def emission_material(name: str):
    """A new material whose surface is one Emission shader: (material, emission node).

    Unlit, so footage and point colours render exactly as given (with the Standard view).
    """
    mat = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):  # node trees are always on from 5.0
        mat.use_nodes = True
    nodes = mat.node_tree.nodes
    nodes.clear()
    emit = nodes.new("ShaderNodeEmission")
    out = nodes.new("ShaderNodeOutputMaterial")
    mat.node_tree.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    return mat, emit
