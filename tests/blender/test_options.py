"""The import options are declared once (``importers/options.py``): the import operator's and
the scene settings' properties are generated from ``ImportOptions``, and stay exactly its fields."""

import dataclasses
import importlib

import bpy
import pytest

OPERATOR_ONLY = {"rna_type", "filepath", "filter_glob"}  # the file browser's, not import options
SCENE_ONLY = {"rna_type", "name", "bundle_path"}
JOB_INPUT_PREFIXES = ("solve_", "gen_", "recon_", "pair_", "image_a", "image_b")  # the task sections' inputs


def _describe(prop) -> dict:
    """What a user sees of a property, comparable between two owners."""
    out = {"type": prop.type, "name": prop.name, "description": prop.description}
    if prop.type in ("INT", "FLOAT"):
        out.update(default=prop.default, min=prop.hard_min, max=prop.hard_max, soft_min=prop.soft_min,
                   soft_max=prop.soft_max)
    elif prop.type == "ENUM":
        out.update(default=prop.default, items=[item.identifier for item in prop.enum_items])
    else:
        out.update(default=prop.default)
    return out


@pytest.fixture
def options(addon):
    return importlib.import_module(addon.__name__ + ".importers.options")


def test_operator_and_scene_properties_are_the_import_options(options):
    fields = {f.name: f for f in dataclasses.fields(options.ImportOptions)}
    op = {p.identifier: p for p in bpy.ops.parallax.import_bundle.get_rna_type().properties
          if p.identifier not in OPERATOR_ONLY}
    scene = {p.identifier: p for p in bpy.types.Scene.bl_rna.properties["parallax"].fixed_type.properties
             if p.identifier not in SCENE_ONLY and not p.identifier.startswith(JOB_INPUT_PREFIXES)}
    assert list(op) == list(fields)  # the same names, in the declaration's order
    assert sorted(scene) == sorted(fields)
    for name, field in fields.items():
        want = _describe(op[name])
        assert want == _describe(scene[name]), name
        assert want["name"] == field.metadata["name"] and want["description"] == field.metadata["description"]
        default = pytest.approx(field.default) if isinstance(field.default, float) else field.default
        assert want["default"] == default, name
        for key in ("min", "max", "soft_max"):
            if key in field.metadata:
                assert want[key] == pytest.approx(field.metadata[key], rel=1e-6), (name, key)


def test_options_travel_from_the_scene_to_the_operator_to_the_importer(options, empty_scene):
    s = empty_scene.parallax
    s.scale, s.align_to_floor, s.point_color, s.max_points_per_frame = 2.5, True, "MARKER", 7
    got = options.options_from(s)
    assert (got.scale, got.align_to_floor, got.point_color, got.max_points_per_frame) == (2.5, True, "MARKER", 7)
    assert options.options_from(options.ImportOptions(scale=3.0)) == options.ImportOptions(scale=3.0)
    target = type("Target", (), {})()
    options.copy_options(s, target)
    assert options.options_from(target) == got
