"""A solve that cannot succeed, from the panel (issue 15's bad input), against a REAL backend on
loopback (CPU) started by the add-on: a clip where no frame registers (independent noise
frames). The engine's own message must reach the Solve panel's "Last job" box, nothing is
imported and the inputs stay. (Cancel mid-job: tests/blender/test_jobs.py.)"""

import importlib
from pathlib import Path

import bpy
import numpy as np
import pytest



def _test_jobs():
    # tests/conftest.py shadows the name "conftest", so test_jobs loads its helpers by path; so do we.
    import importlib.util
    spec = importlib.util.spec_from_file_location("_parallax_test_jobs", Path(__file__).with_name("test_jobs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_JOBS = _test_jobs()
BACKEND_PYTHON, _need_solve, _pump = _JOBS.BACKEND_PYTHON, _JOBS._need_solve, _JOBS._pump


class _Layout:
    """Records what a panel draws: ("label", text) rows, nested boxes and columns included."""

    def __init__(self, log):
        self.log = log

    def label(self, text="", icon="NONE", **_):
        self.log.append(("label", text))

    def box(self):
        return self

    def column(self, **_):
        return self

    def row(self, **_):
        return self

    def operator(self, *args, **_):
        self.log.append(("operator", args[0] if args else ""))


@pytest.fixture(scope="module")
def local(addon):
    jobs = importlib.import_module(addon.__name__ + ".operators.jobs")
    backend = importlib.import_module(addon.__name__ + ".backend_link")
    api = importlib.import_module(addon.__name__ + ".api")
    prefs = backend.prefs()
    prefs.backend_mode, prefs.python_path, prefs.device = "LOCAL", BACKEND_PYTHON, "cpu"
    yield jobs, backend, api
    backend.stop()


def _noise_folder(folder: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):
        image = bpy.data.images.new(f"noise{i}", 128, 96)
        pixels = np.ones((96, 128, 4), np.float32)
        pixels[..., :3] = rng.integers(0, 256, (96, 128, 3)) / 255.0
        image.pixels.foreach_set(pixels.ravel())
        image.filepath_raw = str(folder / f"{i:04d}.png")
        image.file_format = "PNG"
        image.save()
        bpy.data.images.remove(image)
    return folder


def test_no_frame_registers_shows_the_engines_message_in_the_panel(local, tmp_path, empty_scene, addon):
    jobs, backend, api = local
    _need_solve(api)
    s = empty_scene.parallax
    clip = _noise_folder(tmp_path / "noise")
    s.solve_source, s.solve_engine = str(clip), "colmap"
    before = set(bpy.data.collections.keys())
    bpy.ops.parallax.solve_camera(wait=False)
    _pump(jobs, lambda: jobs.Job.handle is None, timeout=180)
    assert jobs.Job.snapshot.phase == "failed", jobs.Job.snapshot
    assert "nothing registered: COLMAP found no consistent geometry in 6 frames" in jobs.Job.error, jobs.Job.error
    assert set(bpy.data.collections.keys()) == before  # nothing imported
    assert s.solve_source == str(clip)  # the input is kept for another try

    panels = importlib.import_module(addon.__name__ + ".panels")
    log = []
    assert panels._job_status(_Layout(log), "solve") is False
    labels = [text for kind, text in log if kind == "label"]
    assert labels[0] == "Last job:"
    print("panel:", labels)
    shown = " ".join(labels[1:])
    assert "nothing registered" in shown and "too little texture" in shown, labels
