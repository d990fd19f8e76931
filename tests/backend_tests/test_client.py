"""The add-on's side of the boundary (client/): starting the backend process, running jobs
through it, non-blocking polling, cancel, bad input, crash + restart. Real uvicorn on
127.0.0.1 in a subprocess; the test-only 'echo' task. Budget: ~20 s on 2 cores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from backend.bundle import read_bundle
from client import BackendProcess, Client, run_job, start_job
from client.errors import BackendCrashed, BackendStartError, JobCancelled, RequestRejected
from backend_tests.test_server_helpers import ECHO_PLUGIN, REPO, STEP_X, make_video


def new_backend(tmp: Path, *extra: str) -> BackendProcess:
    return BackendProcess(sys.executable, root=REPO, startup_timeout=60,
                          extra_args=["--device", "cpu", "--data-dir", str(tmp), *ECHO_PLUGIN, *extra])


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    bp = new_backend(tmp_path_factory.mktemp("client-srv"))
    bp.start()
    yield bp
    bp.stop()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", n=6)


def wait_for(pred, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("venv", [".venv", ".venv-blender"])
def test_client_needs_neither_torch_nor_bpy(venv):
    python = REPO / venv / "bin" / "python"
    if not python.exists():
        pytest.skip(f"{venv} missing")
    code = ("import sys, client, client.api, client.process, client.jobs; "
            "bad = [m for m in ('torch', 'bpy', 'fastapi', 'uvicorn') if m in sys.modules]; "
            "assert not bad, bad")
    r = subprocess.run([str(python), "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_backend_lifecycle(tmp_path):
    bp = new_backend(tmp_path)
    assert bp.state == "stopped"
    t0 = time.perf_counter()
    bp.start(wait=False)
    assert time.perf_counter() - t0 < 0.5 and bp.state == "starting"
    wait_for(bp.poll_ready, 60)
    assert bp.state == "ready" and bp.url.startswith("http://127.0.0.1:")
    proc = psutil.Process(bp.pid)
    assert bp.token not in " ".join(proc.cmdline())  # the token travels in the environment only
    health = bp.client().health()
    assert health["pid"] == bp.pid and health["tasks"]["echo"]["available"]
    with pytest.raises(RequestRejected) as e:
        Client(bp.url, "wrong-token").health()
    assert e.value.status == 401 and "wrong token" in e.value.message
    bp.stop()
    assert bp.state == "stopped" and not proc.is_running()


def test_run_job_reports_progress_and_returns_the_bundle(backend, clip, tmp_path):
    snaps = []
    out = run_job("echo", [clip], {"frames": 6, "steps": 8, "step_s": 0.03}, on_progress=snaps.append,
                  backend=backend, out_dir=tmp_path)
    b = read_bundle(out)
    assert out.parent == tmp_path and b.frame_count == 6 and b.engine == "echo"
    np.testing.assert_allclose(b.c2w_array()[:, 0, 3], STEP_X * np.arange(6), atol=1e-12)
    phases = [s.phase for s in snaps]
    assert phases[:2] == ["starting_backend", "uploading"] and phases[-1] == "done" and "running" in phases and "downloading" in phases
    running = [s.progress for s in snaps if s.phase == "running"]
    assert running == sorted(running) and snaps[-1].progress == 1.0 and snaps[-1].bundle_dir == out


def test_poll_never_blocks_and_cancel_stops_the_job(backend, tmp_path):
    handle = start_job("echo", [], {"steps": 400, "step_s": 0.05}, backend=backend, out_dir=tmp_path)
    wait_for(lambda: handle.poll().phase == "running" and handle.poll().progress > 0)
    worst = 0.0
    for _ in range(50):  # what a bpy.app.timers callback does every tick
        t0 = time.perf_counter()
        snap = handle.poll()
        worst = max(worst, time.perf_counter() - t0)
        time.sleep(0.002)
    assert worst < 0.005 and snap.eta_s is not None and snap.stage.startswith("step ")
    t0 = time.perf_counter()
    handle.cancel()
    assert time.perf_counter() - t0 < 0.005
    with pytest.raises(JobCancelled):
        handle.wait(10)
    snap = handle.poll()
    assert snap.phase == "cancelled" and snap.bundle_dir is None and snap.progress < 0.3
    job = backend.client().job(snap.job_id)
    assert job["state"] == "cancelled"
    with pytest.raises(RequestRejected) as e:
        backend.client().download_bundle(snap.job_id, tmp_path / "nope")
    assert e.value.status == 409 and not (tmp_path / "nope").exists()
    assert list(tmp_path.iterdir()) == []


def test_bad_input_is_reported_with_the_servers_message(backend, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n" * 10)
    handle = start_job("echo", [bad], backend=backend, out_dir=tmp_path)
    with pytest.raises(RequestRejected) as e:
        handle.wait(10)
    assert e.value.status == 422 and "not a readable video" in e.value.message
    assert handle.poll().phase == "failed" and "notes.mp4" in handle.poll().message
    with pytest.raises(RequestRejected) as e:
        run_job("no_such_task", [], backend=backend, out_dir=tmp_path)
    assert "unknown task" in e.value.message
    assert backend.client().health()["api"] == 1


def test_crash_mid_job_is_reported_and_the_next_job_restarts_the_backend(tmp_path, clip):
    bp = new_backend(tmp_path / "data")
    try:
        handle = start_job("echo", [], {"steps": 400, "step_s": 0.05}, backend=bp, out_dir=tmp_path)
        wait_for(lambda: handle.poll().phase == "running", 60)
        first_pid = bp.pid
        os.kill(first_pid, signal.SIGKILL)
        with pytest.raises(BackendCrashed) as e:
            handle.wait(10)
        assert "stopped unexpectedly" in str(e.value) and e.value.exit_code == -signal.SIGKILL
        assert "next job restarts it" in handle.poll().message
        assert bp.state == "crashed" and bp.crashed()
        out = run_job("echo", [clip], {"frames": 3}, backend=bp, out_dir=tmp_path)
        assert read_bundle(out).frame_count == 3
        assert bp.pid != first_pid and bp.restarts == 1 and bp.state == "ready"
    finally:
        bp.stop()


def test_start_failures_are_clear(tmp_path):
    with pytest.raises(BackendStartError, match="cannot run the backend python"):
        BackendProcess(str(tmp_path / "no-python"), root=REPO).start()
    bp = new_backend(tmp_path, "--no-such-flag")
    with pytest.raises(BackendStartError) as e:
        bp.start()
    assert "exited while starting" in str(e.value) and "unrecognized arguments" in e.value.log_tail
    assert bp.state == "failed"


def test_client_works_as_a_subpackage_of_the_addon(tmp_path):
    """Inside Blender the add-on is a package (e.g. bl_ext.user_default.parallax) holding client/
    and backend/ side by side: client must reach backend.bundle relatively, and start the
    backend from the add-on folder."""
    addon = tmp_path / "parallax_addon"
    addon.mkdir()
    (addon / "__init__.py").write_text("")
    import shutil
    for name in ("client", "backend"):
        shutil.copytree(REPO / name, addon / name, ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import sys, parallax_addon.client as c; from parallax_addon.client import api, process; "
            "assert api.unzip_bundle.__module__ == 'parallax_addon.backend.bundle', api.unzip_bundle.__module__; "
            "assert 'backend' not in sys.modules and 'client' not in sys.modules; "
            "print(process.DEFAULT_ROOT)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()) == addon
