"""Generate a shot with a catalogue (hub) generator from real Blender (bpy 5.0.1), against a REAL
backend (.venv, CPU).

The generator is a tiny random CogVideoX, built in the backend's environment by
``backend_tests.hub_models.build_cogvideox`` (the real diffusers classes), served in the hub's
layout on loopback (``backend_tests.hub_server``) and downloaded into a private
huggingface_hub cache by the backend's own downloader; the backend then runs with
``HF_HUB_OFFLINE=1`` and a test catalogue (``$PARALLAX_CATALOGUE``) that names it. The panel's
Model field offers it once the model list is fetched, the generate operator runs it (T2V, then
parallax-tiny's V2C for the cameras), and the shot imports with its plate and an animated
camera; the panel says which model made the frames and which the cameras. Bad model choices
are refused before any job starts. About 30 s on 2 cores (building the model and the backend
starting take most of it).
"""

import importlib
import json
import os
import subprocess
import types
from pathlib import Path

import bpy
import numpy as np
import pytest

from blender.ui_layout import RecordingLayout as _Layout

ROOT = Path(__file__).resolve().parents[2]
BACKEND_PYTHON = os.environ.get("PARALLAX_BACKEND_PYTHON", str(ROOT / ".venv" / "bin" / "python"))
MODEL = "tiny-cogvideox"
FRAMES, STEPS = 8, 2  # CogVideoX makes 4k+1 frames, at most its config's sample_frames (9): 8 -> 9
MADE = 9

# Runs in the backend's environment (torch, diffusers): the Blender venv has neither.
PREPARE = r"""
import json, sys
from pathlib import Path

from backend_tests.hub_models import build_cogvideox
from backend_tests.hub_server import HubRepo, HubServer, catalogue_file, entry_json

from backend.hub.catalogue import entry_from_json
from backend.hub.download import download_model

root = Path(sys.argv[1])
folder = build_cogvideox(root / "built")
# The builder's transformer samples a 2 x 2 latent (16 px frames); the geometry role solves
# 32 px and up (io_video.MIN_SIDE). Its positional embedding is computed from these two config
# values, not stored, so the same weights generate 32 px frames by default.
config = folder / "transformer" / "config.json"
cfg = json.loads(config.read_text())
cfg["sample_height"] = cfg["sample_width"] = 4
config.write_text(json.dumps(cfg, indent=2))
repo = HubRepo.from_folder("test-org/tiny-cogvideox", folder)
entries = [
    entry_json("tiny-cogvideox", repo, loader="cogvideox", title="Tiny CogVideoX (test)"),
    # Installed too (the same snapshot), but no text-to-video generator: never offered.
    entry_json("tiny-geometry", repo, role="geometry", loader="depth-anything-3", tasks=["geometry"]),
    entry_json("tiny-flf", repo, loader="wan-flf2v", tasks=["flf2v"]),
]
catalogue_file(root / "models.json", entries)
with HubServer([repo]) as hub:
    path = download_model(entry_from_json(entries[0]), cache_dir=root / "cache", endpoint=hub.url)
print(json.dumps({"snapshot": str(path), "folder": str(folder)}))
"""


@pytest.fixture(scope="module")
def hub_backend(addon, tmp_path_factory):
    """The backend the add-on starts, with the tiny CogVideoX installed in its (offline) cache."""
    root = tmp_path_factory.mktemp("hub_generate")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"), OMP_NUM_THREADS="1")
    done = subprocess.run([BACKEND_PYTHON, "-c", PREPARE, str(root)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    made = json.loads(done.stdout.strip().splitlines()[-1])
    backend = importlib.import_module(addon.__name__ + ".backend_link")
    models = importlib.import_module(addon.__name__ + ".operators.models")
    backend.stop()  # a backend another module started has another environment
    with pytest.MonkeyPatch.context() as mp:
        # The backend inherits these: its hub is nowhere (a closed loopback port, offline mode),
        # its cache the one filled above, its catalogue the test's.
        mp.setenv("HF_HUB_CACHE", str(root / "cache"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        mp.setenv("PARALLAX_CATALOGUE", str(root / "models.json"))
        mp.setenv("OMP_NUM_THREADS", "1")  # one thread: on a shared 2-core machine more only fight
        prefs = backend.prefs()
        saved = prefs.backend_mode, prefs.python_path, prefs.device
        prefs.backend_mode, prefs.python_path, prefs.device = "LOCAL", BACKEND_PYTHON, "cpu"
        models.Models.data, models.Models.error = None, ""  # a list another module fetched
        yield made
        backend.stop()
        models.Models.data, models.Models.error = None, ""
        prefs.backend_mode, prefs.python_path, prefs.device = saved


class _Panel:
    """Stands in for the panel instance Blender makes when it draws: ``layout`` is the recorder,
    everything else is the panel class's."""

    def __init__(self, cls, layout):
        self._cls, self.layout = cls, layout

    def __getattr__(self, name):
        attr = getattr(self._cls, name)
        return attr.__get__(self) if isinstance(attr, types.FunctionType) else attr


def _draw_generate_panel() -> list:
    """The generate section's draw() on a recorder, as Blender would call it."""
    log = []
    cls = bpy.types.PARALLAX_PT_generate
    cls.draw(_Panel(cls, _Layout(log)), bpy.context)
    return log


def _labels(log) -> list:
    return [text for kind, text in log if kind == "label"]


def _keyed_frames(obj, path) -> dict:
    from bpy_extras import anim_utils

    ad = obj.animation_data
    curves = anim_utils.action_get_channelbag_for_slot(ad.action, ad.action_slot).fcurves
    return {fc.array_index: sorted(k.co[0] for k in fc.keyframe_points) for fc in curves if fc.data_path == path}


def _modules(addon):
    return (importlib.import_module(addon.__name__ + ".operators.jobs"),
            importlib.import_module(addon.__name__ + ".backend.bundle"),
            importlib.import_module(addon.__name__ + ".props"))


def test_catalogue_generator_generates_and_imports_a_shot(addon, hub_backend, empty_scene, settings):
    jobs, bundle_mod, props = _modules(addon)
    s = settings
    assert s.gen_model == "parallax-tiny"  # the default: frames and cameras in one pass

    # Before the list is fetched: the built-in model only, and the panel says how to list more.
    assert jobs.generator_choices() == [("parallax-tiny", "built in: frames and cameras in one pass")]
    labels = _labels(_draw_generate_panel())
    assert "Frames and cameras: parallax-tiny, in one pass" in labels
    assert "Refresh to list the installed generators" in labels

    # The panel's refresh button fetches GET /v1/models: installed text-to-video generators only
    # (not the catalogue's Wan and CogVideoX, not downloaded; not the installed geometry and
    # first-last-frame entries).
    assert bpy.ops.parallax.refresh_models() == {"FINISHED"}
    offered = props._generator_suggestions(s, bpy.context, "")  # what the field's dropdown lists
    assert [value for value, _ in offered] == ["parallax-tiny", MODEL]
    assert dict(offered)[MODEL] == "Tiny CogVideoX (test)"

    s.gen_prompt, s.gen_frames, s.gen_steps, s.gen_seed = "a camera dollies past a red box", FRAMES, STEPS, 5
    s.gen_model = MODEL
    log = _draw_generate_panel()
    assert ("prop", "gen_model") in log and ("operator", "parallax.refresh_models") in log
    labels = _labels(log)
    assert "Frames: Tiny CogVideoX (test)" in labels
    assert "Cameras: Parallax tiny (bundled), from the generated frames" in labels

    assert bpy.ops.parallax.generate_shot() == {"FINISHED"}, jobs.Job.error
    snap = jobs.Job.snapshot
    assert snap.phase == "done" and not jobs.Job.error
    bundle = bundle_mod.read_bundle(snap.bundle_dir)
    assert bundle.task == "generate" and bundle.frame_count == MADE and (bundle.width, bundle.height) == (32, 32)
    assert bundle.source["generator"] == {"name": "cogvideox", "model_id": MODEL}
    assert bundle.source["geometry"] == {"name": "unified", "model_id": "parallax-tiny"}
    assert bundle.source["one_pass"] is False and bundle.source["steps"] == STEPS
    assert all(c.c2w is not None for c in bundle.cameras)

    # Imported as a shot: the scene spans the frames, the camera is keyed on every one of them
    # and reproduces the bundle's cameras, and the plate is the generated frames.
    scene, coll = empty_scene, bpy.data.collections[jobs.Job.collection]
    assert (scene.frame_start, scene.frame_end) == (1, MADE)
    cam = next(o for o in coll.all_objects if o.type == "CAMERA")
    assert scene.camera == cam
    every = [float(f) for f in range(1, MADE + 1)]
    loc, rot = _keyed_frames(cam, "location"), _keyed_frames(cam, "rotation_quaternion")
    assert sorted(loc) == [0, 1, 2] and sorted(rot) == [0, 1, 2, 3]
    assert all(frames == every for frames in [*loc.values(), *rot.values()]), (loc, rot)
    flip = np.diag([1.0, -1.0, -1.0, 1.0])  # Blender camera -> OpenCV
    got = []
    for f in range(MADE):
        scene.frame_set(1 + f)
        got.append(np.array(cam.matrix_world) @ flip)
    got, want = np.array(got), bundle.c2w_array()
    rel = np.linalg.inv(got[0]) @ got
    np.testing.assert_allclose(rel[:, :3, :3], want[:, :3, :3], atol=1e-4)
    np.testing.assert_allclose(rel[:, :3, 3], want[:, :3, 3], atol=1e-4 * max(1.0, np.abs(want).max()))
    plate = next(o for o in coll.all_objects if o.type == "MESH" and o.parent == cam)
    image = next(n.image for n in plate.active_material.node_tree.nodes if n.type == "TEX_IMAGE")
    assert image.source == "SEQUENCE" and tuple(image.size) == (32, 32)
    assert Path(bpy.path.abspath(image.filepath)).resolve() == Path(bundle.frames[0]).resolve()

    # The readout under the job: which model made the frames and which the cameras, from the bundle.
    labels = _labels(_draw_generate_panel())
    assert f"Imported {coll.name}" in labels
    assert f"frames by {MODEL}, cameras by parallax-tiny" in labels


def test_bad_model_choices_are_refused_before_any_job(addon, hub_backend, settings):
    jobs, _, _ = _modules(addon)
    if jobs.Job.running():
        pytest.fail("a job is still running")
    bpy.ops.parallax.refresh_models()
    s = settings
    s.gen_prompt, s.gen_frames, s.gen_steps = "a camera pans left", FRAMES, STEPS
    before = jobs.Job.snapshot
    refusals = {"tiny-geometry": "is a geometry model .*text-to-video generator: parallax-tiny, tiny-cogvideox",
                "tiny-flf": "is a generator model \\(flf2v\\).*text-to-video",
                "wan2.1-t2v-1.3b": "not downloaded yet: download it in Preferences",
                "/no/such/model-folder": "no model folder at '/no/such/model-folder'"}
    for value, message in refusals.items():
        s.gen_model = value
        with pytest.raises(RuntimeError, match=message):
            bpy.ops.parallax.generate_shot()
        assert jobs.Job.snapshot is before and not jobs.Job.running()  # nothing started, nothing lost
        assert s.gen_model == value and s.gen_prompt == "a camera pans left"

    # What the job gets: the built-in model leaves the backend its one-pass default; a folder
    # typed in goes absolute; an installed id goes as it is.
    folder = Path(hub_backend["folder"])
    assert jobs.generator_param("parallax-tiny") is None and jobs.generator_param("") is None
    assert jobs.generator_param(MODEL) == MODEL
    assert jobs.generator_param(str(folder) + "/") == str(folder.resolve())
    assert jobs.generator_param("/somewhere/remote", local=False) == "/somewhere/remote"
    assert "model" not in jobs.generate_params("x", model=jobs.generator_param("parallax-tiny"))
    s.gen_model = str(folder)
    labels = _labels(_draw_generate_panel())
    assert "Frames: built" in labels  # a folder shows by its name
