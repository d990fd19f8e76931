"""A stand-in for ``bpy.types.UILayout`` that records what a panel's ``draw()`` puts in the UI:
Blender cannot make a real layout headless, so the panel tests draw into this and read the log."""


class RecordingLayout:
    """``log`` gets ("label", text), ("prop", name), ("operator", idname), ("progress", text) and
    ("icon", icon_value, scale) entries, in drawing order."""

    def __init__(self, log: list):
        self.log = log

    def column(self, **_):
        return self

    row = box = split = column

    def label(self, text="", **_):
        self.log.append(("label", text))

    def prop(self, data, name, **_):
        self.log.append(("prop", name))

    def operator(self, idname, **_):
        self.log.append(("operator", idname))
        return type("Props", (), {})()

    def progress(self, factor=0.0, text="", **_):
        self.log.append(("progress", text))

    def template_icon(self, icon_value=0, scale=1.0, **_):
        self.log.append(("icon", icon_value, scale))
