"""The model manager in the add-on's preferences, in real Blender (bpy 5.0.1) against a REAL
backend (.venv, CPU) whose hub is a loopback server (tests/backend_tests/hub_server.py) serving
a test model in the hub's layout: the list shows it with size and licence, online access off
refuses a download, a download shows a progress bar and can be cancelled (the partial file
stays), the next download resumes and installs it, and remove deletes it."""

import importlib
import json
import os
import time
from pathlib import Path

import bpy
import pytest

from backend_tests.hub_server import HubRepo, HubServer, catalogue_file, entry_json

BACKEND_PYTHON = os.environ.get("PARALLAX_BACKEND_PYTHON",
                                str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python"))
SIZE = 30 * 2**20  # three of huggingface_hub's 10 MB chunks: progress shows between them


class _Layout:
    """Records what a draw function puts in the layout."""

    def __init__(self, log):
        self.log, self.enabled, self.scale_y = log, True, 1.0

    def row(self, **_):
        return _Layout(self.log)

    column = box = row

    def label(self, text="", **_):
        self.log.append(("label", text))

    def operator(self, idname, **_):
        self.log.append(("operator", idname))
        return type("Op", (), {})()

    def progress(self, factor=0.0, type="BAR", text=""):
        self.log.append(("progress", factor, text))

    def prop(self, *args, **_):
        pass


@pytest.fixture(scope="module")
def hub(addon, tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    repo = HubRepo("test-org/tiny-test", {"model_index.json": json.dumps({"_class_name": "WanPipeline"}).encode(),
                                          "transformer/diffusion_pytorch_model.safetensors": os.urandom(SIZE)})
    catalogue = catalogue_file(root / "models.json", [entry_json("tiny-test", repo, title="Tiny test model")])
    backend = importlib.import_module(addon.__name__ + ".backend_link")
    saved = {k: os.environ.get(k) for k in ("HF_ENDPOINT", "HF_HUB_CACHE", "PARALLAX_CATALOGUE")}
    with HubServer([repo], throttle=(256 * 1024, 0.02)) as server:  # about 12 MB/s
        # The backend the add-on starts inherits this environment: its hub is the loopback one.
        os.environ.update(HF_ENDPOINT=server.url, HF_HUB_CACHE=str(root / "cache"), PARALLAX_CATALOGUE=str(catalogue))
        backend.stop()  # a backend another test module started has another environment
        prefs = backend.prefs()
        prefs.backend_mode, prefs.python_path, prefs.device = "LOCAL", BACKEND_PYTHON, "cpu"
        yield server, repo, root / "cache"
        backend.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _pump(models, until, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if models.Models.download is not None:
            models.poll()
        if until():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out; last snapshot {models.Models.snapshot}")


def _row(models, model_id="tiny-test"):
    return models.entry(model_id)


def test_model_manager_download_cancel_resume_remove(addon, hub, monkeypatch):
    server, repo, cache = hub
    models = importlib.import_module(addon.__name__ + ".operators.models")
    backend = importlib.import_module(addon.__name__ + ".backend_link")

    bpy.ops.parallax.refresh_models()
    row = _row(models)
    assert row is not None and not row["installed"] and row["licence"] == "Apache-2.0"
    assert row["download_bytes"] == SIZE + len(repo.files["model_index.json"])
    assert _row(models, "parallax-tiny")["installed"]
    log = []
    models.draw_model_manager(_Layout(log))
    labels = [entry[1] for entry in log if entry[0] == "label"]
    assert "Tiny test model" in labels and any("Licence: Apache-2.0" in text for text in labels)
    assert any("Allow Online Access" in text for text in labels)  # the bpy module runs offline

    # Online access off (the bpy module's default): refused, nothing asked of the hub.
    assert not bpy.app.online_access
    with pytest.raises(RuntimeError, match="network access"):
        bpy.ops.parallax.download_model(model="tiny-test")
    assert not any("/resolve/" in path for (_, path, _) in server.requests)

    # With online access: a download shows a progress bar, and cancel stops it.
    monkeypatch.setattr(backend, "online_refusal", lambda what: None)
    models.start_download(bpy.context, "tiny-test")
    _pump(models, lambda: models.Models.snapshot.bytes_done >= 10 * 2**20 or models.Models.snapshot.finished)
    snap = models.Models.snapshot
    assert snap.phase == "running" and 0 < snap.progress < 1 and snap.bytes_total == row["download_bytes"]
    log = []
    models.draw_model_manager(_Layout(log))
    bars = [entry for entry in log if entry[0] == "progress"]
    assert len(bars) == 1 and 0 < bars[0][1] < 1 and "MB" in bars[0][2]
    assert ("operator", "parallax.cancel_model_download") in log
    bpy.ops.parallax.cancel_model_download()
    _pump(models, lambda: models.Models.download is None)
    assert models.Models.snapshot.phase == "cancelled" and "resumes" in models.Models.snapshot.message
    partial = _row(models)["partial_bytes"]
    assert partial >= 10 * 2**20 and not _row(models)["installed"]

    # Again: it resumes from the partial file (a Range request) and installs the model.
    result = bpy.ops.parallax.download_model(model="tiny-test")
    assert result == {"FINISHED"} and models.Models.snapshot.phase == "done"
    ranges = [r for (_, path, r) in server.requests if path.endswith(".safetensors") and r]
    assert ranges == [f"bytes={partial}-"]
    assert _row(models)["installed"] and _row(models)["size_on_disk"] == row["download_bytes"]

    assert bpy.ops.parallax.remove_model(model="tiny-test") == {"FINISHED"}
    assert not _row(models)["installed"]
    assert not (cache / "models--test-org--tiny-test").exists()
