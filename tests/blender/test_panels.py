"""The N-panel's task sections follow the backend's /v1/health: a section shows only when the
backend lists its task (with the backend's reason when listed but unavailable), and before any
health is known the add-on's own tasks show their normal UI, so the first click starts the
backend. No backend runs here: the cached health answer is set by hand."""

import importlib
import sys
import time
import types

import bpy
import pytest

from blender.ui_layout import RecordingLayout as _Layout

TASK_PANELS = {"solve": "PARALLAX_PT_solve", "generate": "PARALLAX_PT_generate",
               "reconstruct": "PARALLAX_PT_reconstruct"}


def _panel(task):
    return getattr(bpy.types, TASK_PANELS[task])  # the registered class


class _Panel:
    """Stands in for the panel instance Blender makes when it draws: ``layout`` is the recorder,
    everything else (task, draw_inputs...) is the panel class's."""

    def __init__(self, cls, layout):
        self._cls, self.layout = cls, layout

    def __getattr__(self, name):
        attr = getattr(self._cls, name)
        return attr.__get__(self) if isinstance(attr, types.FunctionType) else attr


def _draw(task):
    log = []
    cls = _panel(task)
    cls.draw(_Panel(cls, _Layout(log)), bpy.context)
    return log


def _labels(log):
    return " ".join(text for kind, text in log if kind == "label")


@pytest.fixture
def health(addon):
    """The add-on's health cache, configured for a local backend (no process is started), and
    restored after the test."""
    link = importlib.import_module(addon.__name__ + ".backend_link")
    deadline = time.monotonic() + 60
    while link.Health.checking and time.monotonic() < deadline:  # a check left by an earlier job
        time.sleep(0.05)
    prefs = link.prefs()
    saved = link.Health.data, link.Health.error, prefs.backend_mode, prefs.python_path
    prefs.backend_mode, prefs.python_path = "LOCAL", sys.executable
    yield link.Health
    link.Health.data, link.Health.error, prefs.backend_mode, prefs.python_path = saved


def test_before_any_health_the_known_tasks_show_their_normal_ui(health, empty_scene):
    health.data, health.error = None, ""
    for task, settings, operator in (("solve", "solve_source", "parallax.solve_camera"),
                                     ("generate", "gen_prompt", "parallax.generate_shot"),
                                     ("reconstruct", "recon_source", "parallax.reconstruct_scene")):
        assert _panel(task).poll(bpy.context)
        log = _draw(task)
        assert ("prop", settings) in log and ("operator", operator) in log, log
    # The first click is allowed: it starts the backend, which then answers /v1/health.
    assert bpy.ops.parallax.generate_shot.poll() and bpy.ops.parallax.solve_camera.poll()
    assert bpy.ops.parallax.reconstruct_scene.poll()


def test_a_section_is_hidden_when_health_lacks_its_task(health, empty_scene):
    health.data = {"tasks": {"solve": {"available": True, "reason": None}}}
    assert _panel("solve").poll(bpy.context)
    assert not _panel("generate").poll(bpy.context)
    assert not bpy.ops.parallax.generate_shot.poll()
    # No section for tasks the add-on cannot run, whatever the backend lists.
    labels = {cls.bl_label for cls in bpy.types.Panel.__subclasses__()
              if getattr(cls, "bl_category", "") == "Parallax" and cls.is_registered}
    assert labels == {"Generate shot with camera", "Solve camera from clip", "Reconstruct dynamic scene",
                      "Pose from image pair", "Import result", "Backend"}


def test_a_listed_but_unavailable_task_shows_the_backends_reason(health, empty_scene):
    reason = "the generator's weights are not installed"
    health.data = {"tasks": {"solve": {"available": True, "reason": None},
                             "generate": {"available": False, "reason": reason}}}
    assert _panel("generate").poll(bpy.context)
    log = _draw("generate")
    assert reason in _labels(log) and not any(kind == "operator" for kind, _ in log), log
    log = _draw("solve")
    assert ("operator", "parallax.solve_camera") in log


def test_generate_section_shows_its_settings_with_the_tasks_bounds(health, empty_scene):
    health.data = {"tasks": {"generate": {"available": True, "reason": None}}}
    log = _draw("generate")
    assert {("prop", p) for p in ("gen_prompt", "gen_frames", "gen_steps", "gen_seed")} <= set(log)
    assert ("operator", "parallax.generate_shot") in log
    s = empty_scene.parallax  # the settings' bounds are the task's (backend/pipelines/generate.py)
    s.gen_frames, s.gen_steps, s.gen_seed = 99, 0, 2**31 - 1
    assert (s.gen_frames, s.gen_steps, s.gen_seed) == (16, 1, 2**31 - 1)
    s.gen_frames = 1
    assert s.gen_frames == 2


def test_reconstruct_section_follows_health(health, empty_scene):
    """Shown, with its clip and window settings, only while /v1/health lists "reconstruct"."""
    health.data = {"tasks": {"solve": {"available": True, "reason": None}}}
    assert not _panel("reconstruct").poll(bpy.context)
    assert not bpy.ops.parallax.reconstruct_scene.poll()
    health.data = {"tasks": {"solve": {"available": True, "reason": None},
                             "reconstruct": {"available": True, "reason": None}}}
    assert _panel("reconstruct").poll(bpy.context)
    assert bpy.ops.parallax.reconstruct_scene.poll()
    log = _draw("reconstruct")
    settings = ("recon_source", "recon_start", "recon_stride", "recon_max_frames", "recon_window_stride")
    assert {("prop", p) for p in settings} <= set(log)
    assert ("operator", "parallax.reconstruct_scene") in log
    reason = "the 4D model's weights are not installed"
    health.data["tasks"]["reconstruct"] = {"available": False, "reason": reason}
    log = _draw("reconstruct")
    assert reason in _labels(log) and not any(kind == "operator" for kind, _ in log), log
