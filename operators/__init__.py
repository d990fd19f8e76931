"""Operators of the Parallax add-on."""

import bpy

from . import jobs
from .import_bundle import PARALLAX_OT_import_bundle, PARALLAX_OT_set_point_display

classes = (PARALLAX_OT_import_bundle, PARALLAX_OT_set_point_display) + jobs.classes
_register, _unregister = bpy.utils.register_classes_factory(classes)


def register():
    _register()


def unregister():
    jobs.unregister_timers()  # cancels a running job too
    _unregister()
