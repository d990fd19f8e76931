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
        # While the restart's Popen runs, the panel still reads "crashed" (not "failed").
        import client.process as process_module
        real_popen, seen = process_module.subprocess.Popen, []

        def popen(*args, **kwargs):
            seen.append(bp.state)
            return real_popen(*args, **kwargs)

        process_module.subprocess.Popen = popen
        try:
            out = run_job("echo", [clip], {"frames": 3}, backend=bp, out_dir=tmp_path)
        finally:
            process_module.subprocess.Popen = real_popen
        assert seen == ["crashed"]
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


# -- files the client sends (issue 12, item 14) --------------------------------------------


def test_list_frames_leaves_out_hidden_files_and_sorts_naturally(tmp_path):
    from client import list_frames
    for name in ("f_10.png", "f_2.png", "f_1.PNG", "._f_1.png", "._f_2.png", ".DS_Store", ".hidden.png",
                 "notes.txt", "f_3.jpg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.png").mkdir()
    assert [p.name for p in list_frames(tmp_path)] == ["f_1.PNG", "f_2.png", "f_3.jpg", "f_10.png"]


def test_safe_upload_names_pass_the_servers_rules():
    from backend.server.errors import ApiError
    from backend.server.uploads import check_filename
    from client import safe_upload_name
    for name, safe in (("take 10:30.mp4", "take_10_30.mp4"), ("shot..v2.mp4", "shot.v2.mp4"),
                       (".hidden.mp4", "hidden.mp4"), ("clip.mp4", "clip.mp4"), ("._0001.png", "_0001.png"),
                       ("épreuve\x07 finale.MOV", "_preuve_finale.MOV"), ("a\\b/c.webm", "c.webm"),
                       ("x" * 400 + ".mp4", "x" * 196 + ".mp4")):
        assert safe_upload_name(name) == safe
        check_filename(safe)  # accepted (raises ApiError otherwise)
    with pytest.raises(ApiError):  # what the client used to send
        check_filename("take 10:30.mp4")


def test_awkward_local_names_upload_and_run(backend, clip, tmp_path):
    client = backend.client()
    for name in ("take 10:30.mp4", "shot..v2.mp4", ".hidden.mp4"):
        local = tmp_path / name
        local.write_bytes(clip.read_bytes())
        info = client.upload(local)
        assert info["display_name"] == name and info["filename"] != name and info["kind"] == "video"
    out = run_job("echo", [tmp_path / "take 10:30.mp4"], {"frames": 3}, backend=backend, out_dir=tmp_path / "out")
    assert read_bundle(out).frame_count == 3
    bad = tmp_path / "take 10:31.mp4"
    bad.write_text("not a video")
    with pytest.raises(RequestRejected) as e:
        client.upload(bad)
    assert "'take 10:31.mp4'" in e.value.message  # the user's own name in the server's message


# -- a hostile server (issue 12, item 9) ----------------------------------------------------

import http.server  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import threading  # noqa: E402
import zipfile  # noqa: E402

from backend import bundle as B  # noqa: E402
from client.errors import InvalidResult  # noqa: E402


class FakeServer:
    """An HTTP server that plays a backend: every job is done at once, its id and its bundle
    zip are whatever the test says."""

    def __init__(self, job_id: str, zip_bytes: bytes):
        self.job_id, self.zip_bytes, self.paths = job_id, zip_bytes, []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body, kind="application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                owner.paths.append(("POST", self.path))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/v1/uploads"):
                    self._send(201, {"id": "0123456789abcdef", "filename": "clip.mp4", "kind": "video"})
                else:
                    self._send(201, owner.job())

            def do_GET(self):
                owner.paths.append(("GET", self.path))
                if self.path.endswith("/bundle"):
                    self._send(200, owner.zip_bytes, "application/zip")
                else:
                    self._send(200, owner.job())

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def job(self) -> dict:
        return {"id": self.job_id, "state": "done", "progress": 1.0, "stage": "done", "message": "", "eta_s": None}

    def __enter__(self):
        self.thread.start()
        return Client(f"http://127.0.0.1:{self.httpd.server_address[1]}", "token")

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _bundle_zip(tmp: Path, damage=None) -> bytes:
    from backend_tests.test_bundle import make_bundle
    path = B.write_bundle(make_bundle(frames=3, points=10), tmp / "src")
    if damage:
        damage(path)
    return B.zip_bundle(path, tmp / "src.zip").read_bytes()


def _bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("bundle.json", "{}")
        with zf.open("frames/000000.png", "w", force_zip64=True) as m:
            for _ in range(256):
                m.write(bytes(1 << 20))  # 256 MiB of zeros in about 250 KB
    return buf.getvalue()


def test_a_job_id_from_the_server_never_becomes_a_path(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("the user's")
    results = tmp_path / "results"
    with FakeServer("x/../../victim", _bundle_zip(tmp_path)) as remote:
        with pytest.raises(InvalidResult, match="invalid job id"):
            run_job("echo", [], client=remote, out_dir=results)
        with pytest.raises(InvalidResult):
            remote.download_bundle("x/../../victim", results / "echo-x")
        with pytest.raises(InvalidResult):
            remote.job("../v1/release")
    assert [p.name for p in victim.iterdir()] == ["keep.txt"] and (victim / "keep.txt").read_text() == "the user's"
    assert not results.exists() or not any(results.rglob("*"))
    with pytest.raises(ValueError, match="task name"):
        start_job("../solve", [], client=Client("http://127.0.0.1:9", "t"), out_dir=results)


@pytest.mark.parametrize("case,match", [("bomb", "zip bomb"), ("not_a_bundle", "not a valid bundle"),
                                        ("zip_slip", "outside the bundle"), ("no_bundle_json", "no bundle.json"),
                                        ("too_big", "client's limit")])
def test_a_bad_result_is_refused_and_leaves_nothing(tmp_path, case, match):
    if case == "bomb":
        data = _bomb()
    elif case == "not_a_bundle":
        data = _bundle_zip(tmp_path, lambda p: (p / "cameras.json").unlink())
    elif case in ("zip_slip", "no_bundle_json"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("../../escape.txt" if case == "zip_slip" else "photo.jpg", "x")
        data = buf.getvalue()
    else:
        data = _bundle_zip(tmp_path)
    results = tmp_path / "results"
    results.mkdir()
    with FakeServer("0123456789abcdef", data) as remote:
        with pytest.raises(InvalidResult, match=match):
            remote.download_bundle("0123456789abcdef", results / "solve-0123456789abcdef",
                                   max_bytes=1000 if case == "too_big" else 2**30)
    assert list(results.iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()


def test_a_good_result_from_a_remote_server(tmp_path):
    with FakeServer("0123456789abcdef", _bundle_zip(tmp_path)) as remote:
        out = run_job("echo", [], client=remote, out_dir=tmp_path / "results")
    assert out == tmp_path / "results" / "echo-0123456789abcdef" and read_bundle(out).frame_count == 3


def test_default_results_folder_is_private_and_never_a_planted_link(tmp_path, monkeypatch):
    import os
    import tempfile

    from client.jobs import default_out_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    planted = tmp_path / f"parallax-bundles-{os.getuid()}"
    planted.symlink_to(elsewhere, target_is_directory=True)  # what another user could leave there
    out = default_out_dir()
    assert out == planted and out.is_dir() and not out.is_symlink()
    assert (os.stat(out).st_mode & 0o777) == 0o700
    assert elsewhere.is_dir() and any(p.name.startswith(planted.name + ".not-ours") for p in tmp_path.iterdir())
    os.chmod(out, 0o755)
    assert default_out_dir() == out and (os.stat(out).st_mode & 0o777) == 0o700
