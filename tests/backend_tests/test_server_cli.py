"""``python -m backend serve`` checks its flags before it starts (issue 12, item 5).

The incidents: ``--max-queue 0`` refused every job, ``--keep-jobs 0`` deleted results before
their download, ``--max-upload-mb -1`` was accepted, ``--port 70000`` printed a traceback, and
the upload-limit message said "MB" for a flag in MiB. Each bad value now gets one line on
stderr naming the flag, and exit status 2, before anything heavy is imported.
Budget: ~6 s on 2 cores (one interpreter per case).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import requests

from backend_tests.test_server_helpers import REPO, Server, make_video

T = 120  # bound on one run; a normal one takes under a second


def _serve(tmp_path, *args):
    env = dict(os.environ, PARALLAX_TOKEN="test-token-0123456789")
    return subprocess.run([sys.executable, "-m", "backend", "serve", "--data-dir", str(tmp_path / "d"), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=T)


@pytest.mark.parametrize("args, words", [
    (["--port", "70000"], "--port"),
    (["--port", "-1"], "--port"),
    (["--port", "http"], "--port"),
    (["--max-queue", "0"], "--max-queue"),
    (["--keep-jobs", "0"], "--keep-jobs"),
    (["--keep-uploads", "0"], "--keep-uploads"),
    (["--max-upload-mb", "-1"], "--max-upload-mb"),
    (["--max-upload-mb", "0"], "--max-upload-mb"),
    (["--max-upload-mb", "nan"], "--max-upload-mb"),
    (["--max-frames", "1"], "--max-frames"),
    (["--max-side", "0"], "--max-side"),
    (["--keep-hours", "0"], "--keep-hours"),
    (["--keep-hours", "inf"], "--keep-hours"),
    (["--cancel-grace-s", "0"], "--cancel-grace-s"),
    (["--parent-pid", "0"], "--parent-pid"),
    (["--device", "gpu"], "--device"),
    (["--host", "no-such-host.invalid", "--port", "0"], "--host"),
])
def test_bad_flags_get_one_line_and_exit_2(tmp_path, args, words):
    r = _serve(tmp_path, *args)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in r.stderr, (args, r.stderr)
    assert "PARALLAX_PORT" not in r.stdout
    assert not (tmp_path / "d").exists()  # refused before anything was created


def test_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = _serve(tmp_path, "--port", str(port))
    assert r.returncode == 2 and "in use" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_upload_limit_is_stated_in_mib(tmp_path):
    s = Server(tmp_path / "data", "--max-upload-mb", "0.5")
    try:
        clip = make_video(tmp_path / "c.mp4").read_bytes() + os.urandom(2**20)  # 1 MiB and a bit
        r = requests.post(s.url + "/v1/uploads", params={"filename": "c.mp4"}, data=clip, headers=s.auth, timeout=T)
        assert r.status_code == 413, r.text
        message = r.json()["error"]
        assert "upload limit of 0.5 MiB" in message and " MB" not in message, message
        limits = requests.get(s.url + "/v1/health", headers=s.auth, timeout=T).json()["limits"]
        assert limits["max_upload_bytes"] == 2**19
    finally:
        s.stop()
