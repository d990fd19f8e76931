"""Real Blender (bpy 5.0.1) fixtures: the add-on enabled like an installed one, and
ground-truth bundles rendered by the backend in its own environment (.venv)."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import bpy
import pytest

ROOT = Path(__file__).resolve().parents[2]
BACKEND_PYTHON = os.environ.get("PARALLAX_BACKEND_PYTHON", str(ROOT / ".venv" / "bin" / "python"))


@pytest.fixture(scope="session")
def addon(tmp_path_factory):
    """Enable the repository as the add-on ``parallax`` through addon_utils, as Blender does."""
    import addon_utils
    addons_dir = tmp_path_factory.mktemp("addons")
    (addons_dir / "parallax").symlink_to(ROOT, target_is_directory=True)
    sys.path.insert(0, str(addons_dir))
    mod = addon_utils.enable("parallax", default_set=True, handle_error=None)
    assert mod is not None, "add-on failed to enable"
    yield mod
    addon_utils.disable("parallax", default_set=True)


def clear_scene():
    """Remove everything a test or an import could have made, back to an empty scene."""
    scene = bpy.context.scene
    for coll in list(scene.collection.children):
        scene.collection.children.unlink(coll)
    for collection in (bpy.data.objects, bpy.data.meshes, bpy.data.cameras, bpy.data.images,
                       bpy.data.materials, bpy.data.node_groups, bpy.data.actions, bpy.data.collections,
                       bpy.data.lights, bpy.data.movieclips, bpy.data.curves):
        if len(collection):
            bpy.data.batch_remove(list(collection))
    scene.world = None
    scene.compositing_node_group = None
    settings = getattr(scene, "parallax", None)  # the add-on's scene settings back to their defaults,
    if settings is not None:  # so one test's scale or floor alignment never leaks into the next
        for prop in settings.bl_rna.properties:
            if prop.identifier != "rna_type" and not prop.is_readonly:
                settings.property_unset(prop.identifier)


@pytest.fixture
def empty_scene(addon):
    clear_scene()
    yield bpy.context.scene
    clear_scene()


@pytest.fixture
def settings(empty_scene):
    """The scene's Parallax settings, at their defaults before and after the test (empty_scene's
    clear_scene resets them: a job's import reads them, so one test's Scale or toggles must not
    leak into the next)."""
    return empty_scene.parallax


def synth_bundle(out_dir: Path, seed: int = 0, frames: int = 8, width: int = 64, height: int = 48,
                 intrinsics: dict | None = None) -> Path:
    """Render one held-out ground-truth clip with ``python -m backend synth`` in .venv."""
    cmd = [BACKEND_PYTHON, "-m", "backend", "synth", "--split", "heldout", "--count", "1",
           "--seed", str(seed), "--frames", str(frames), "--width", str(width), "--height", str(height),
           "--out", str(out_dir), "--device", "cpu"]
    for key, value in (intrinsics or {}).items():
        cmd += [f"--{key}", str(value)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=600)
    found = sorted(out_dir.rglob("bundle.json"))
    assert len(found) == 1, f"synth wrote {len(found)} bundles in {out_dir}"
    return found[0].parent


@pytest.fixture(scope="session")
def gt_bundles(tmp_path_factory):
    """Three moving-camera ground-truth clips with different intrinsics.

    landscape: fx != fy and an off-centre principal point; portrait; square with fy > fx.
    """
    root = tmp_path_factory.mktemp("gt")
    specs = {
        "landscape": dict(width=64, height=48, intrinsics=dict(fx=58.0, fy=52.0, cx=35.3, cy=20.1)),
        "portrait": dict(width=48, height=64, intrinsics=dict(fx=45.0, fy=45.0, cx=22.0, cy=34.7)),
        "square": dict(width=56, height=56, intrinsics=dict(fx=40.0, fy=47.0, cx=25.1, cy=30.2)),
    }
    return {name: synth_bundle(root / name, seed=3 + i, **spec) for i, (name, spec) in enumerate(specs.items())}


@pytest.fixture
def captured(addon, monkeypatch):
    """The jobs the operators start, as (task, inputs, params): jobs.start replaced by a
    recorder (no backend); the health cache says "not asked yet"."""
    jobs = importlib.import_module(addon.__name__ + ".operators.jobs")
    link = importlib.import_module(addon.__name__ + ".backend_link")
    calls = []

    def start(context, task, inputs, params, wait=False):
        calls.append((task, [Path(p) for p in inputs], params))
        return None  # as when the job runs on: progress in the panel

    monkeypatch.setattr(jobs, "start", start)
    monkeypatch.setattr(link.Health, "data", None)
    return calls
