"""Operators of the Parallax add-on."""

import bpy

from .import_bundle import PARALLAX_OT_import_bundle, PARALLAX_OT_set_point_display

classes = (PARALLAX_OT_import_bundle, PARALLAX_OT_set_point_display)
register, unregister = bpy.utils.register_classes_factory(classes)
