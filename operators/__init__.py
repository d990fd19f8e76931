"""Operators of the Parallax add-on."""

import bpy

from . import jobs, models, pair_pose
from .import_bundle import PARALLAX_OT_import_bundle, PARALLAX_OT_set_point_display

classes = (PARALLAX_OT_import_bundle, PARALLAX_OT_set_point_display) + jobs.classes + pair_pose.classes + models.classes
_register, _unregister = bpy.utils.register_classes_factory(classes)


def register():
    _register()


def unregister():
    jobs.unregister_timers()  # cancels a running job too
    models.unregister_timers()  # and a model download's follower
    _unregister()
