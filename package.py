"""The add-on's package name, by which Blender keys its preferences and its user folder."""


def addon_package() -> str:
    # "parallax" as a legacy add-on, "bl_ext.<repo>.parallax" as an extension: this module
    # sits at the add-on's root, so its package is the add-on's. AddonPreferences.bl_idname
    # must be exactly this.
    return __package__
