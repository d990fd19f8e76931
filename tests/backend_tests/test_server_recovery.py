"""A server that died mid-job leaves nothing stuck (issue 12, item 2).

The incident: jobs interrupted by a crash stayed "queued" or "running" in their job.json
forever, and the next server answered 404 for them. Now the next server marks them failed
("the backend stopped while this job ran"), serves the jobs that had finished, and keeps the
uploads, so the same job can be submitted again without uploading anything. The crash is
real: SIGKILL to the server while a job runs and another waits. Budget: ~6 s on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import requests

from backend.server.jobs import INTERRUPTED
from backend_tests.test_server_helpers import FINAL, Server, wait_state, make_png

T = 120  # bound on any one wait; the tests wait on states, never on a sleep


def get(s, path):
    return requests.get(s.url + path, headers=s.auth, timeout=T)


def submit(s, inputs=(), **params):
    return requests.post(s.url + "/v1/jobs", json={"task": "echo", "inputs": list(inputs), "params": params},
                         headers=s.auth, timeout=T)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_jobs_interrupted_by_a_crash_fail_and_keep_their_uploads(tmp_path):
    data = tmp_path / "data"
    s = Server(data)
    try:
        ids = []
        for i in range(2):
            with open(make_png(tmp_path / f"f{i}.png", 16, 16), "rb") as f:
                r = requests.post(s.url + "/v1/uploads", params={"filename": f"f{i}.png"}, data=f,
                                  headers=s.auth, timeout=T)
            ids.append(r.json()["id"])
        finished = submit(s, ids, frames=2, steps=1).json()["id"]
        assert wait_state(s, finished)["state"] == "done"
        running = submit(s, ids, frames=2, steps=400, step_s=0.05).json()["id"]
        wait_state(s, running, ("running",), cond=lambda j: j["progress"] > 0)
        queued = submit(s, ids, frames=2, steps=1).json()["id"]
        engine_pid = get(s, "/v1/health").json()["queue"]["engine_worker"]["pid"]
        os.kill(s.proc.pid, signal.SIGKILL)
        s.proc.wait(T)
    finally:
        s.stop()
    assert json.loads((data / "jobs" / running / "job.json").read_text())["state"] == "running"  # as left
    # The engine worker dies with its server (parent-death signal), not left running a job.
    deadline = time.monotonic() + T
    while not _gone(engine_pid):
        assert time.monotonic() < deadline, "the engine worker outlived its server"
        time.sleep(0.02)

    s = Server(data)
    try:
        for jid, was in ((running, "running"), (queued, "queued")):
            r = get(s, f"/v1/jobs/{jid}")
            assert r.status_code == 200, r.text
            j = r.json()
            assert j["state"] == "failed" and j["message"].startswith(INTERRUPTED), j
            assert ("still queued" in j["message"]) == (was == "queued")
            assert sorted(p.name for p in (data / "jobs" / jid).iterdir()) == ["job.json"]
        # what had finished is served as before
        assert get(s, f"/v1/jobs/{finished}").json()["state"] == "done"
        assert get(s, f"/v1/jobs/{finished}/bundle").status_code == 200
        # the uploads were kept: the same job again, with the same upload ids
        again = submit(s, ids, frames=2, steps=1)
        assert again.status_code == 201, again.text
        assert wait_state(s, again.json()["id"])["state"] == "done"
    finally:
        s.stop()
