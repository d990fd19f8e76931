"""Registration through addon_utils is complete and unregistration leaves nothing behind."""

import addon_utils
import bpy


def _parallax_classes():
    return sorted(name for name in dir(bpy.types) if name.startswith("PARALLAX_"))


def test_register_unregister_clean(addon):
    assert _parallax_classes(), "no PARALLAX_ classes registered"
    assert "parallax" in bpy.types.Scene.bl_rna.properties
    assert hasattr(bpy.ops.parallax, "import_bundle")
    panels = {cls.bl_label for cls in bpy.types.Panel.__subclasses__() if getattr(cls, "bl_category", "") == "Parallax"}
    assert {"Generate shot with camera", "Solve camera from clip", "Import result", "Backend"} <= panels
    assert bpy.context.preferences.addons["parallax"].preferences is not None

    addon_utils.disable("parallax", default_set=True)
    try:
        assert _parallax_classes() == []
        assert "parallax" not in bpy.types.Scene.bl_rna.properties
        assert "parallax" not in bpy.context.preferences.addons
        assert not any(getattr(cls, "bl_category", "") == "Parallax" and cls.is_registered
                       for cls in bpy.types.Panel.__subclasses__())
    finally:
        assert addon_utils.enable("parallax", default_set=True, handle_error=None) is not None
    assert _parallax_classes()
