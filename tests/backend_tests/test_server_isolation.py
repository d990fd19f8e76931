"""Native engine code can never take the server down (issue 12, item 1).

The incident: ``{"engine": "colmap", "options": {"overlap": -3}}`` reached a pycolmap CHECK in
the job thread, whose ``abort()`` killed the whole server and lost every queued job. Two
fixes, one test class each: engine options are typed and ranged and refused (422, naming the
option) before a job is queued; and jobs run in an engine worker process, so a crash fails
only its job ("the engine crashed"), the job queued behind it runs, and the server keeps
serving, while progress, cancel and the loaded-model cache still work across the process
boundary. The crashes are real (``os.abort()``, a read of address 0), through the test-only
echo task. Budget: ~15 s on 2 cores.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from backend.bundle import read_bundle
from backend_tests.test_server_helpers import FINAL, Server, wait_state, make_video

T = 120  # bound on any one wait; the tests wait on states, never on a sleep
GRACE_S = 1.0  # --cancel-grace-s of this module's server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("iso"), "--cancel-grace-s", str(GRACE_S), "--max-queue", "4")
    yield s
    s.stop()


def get(s, path):
    return requests.get(s.url + path, headers=s.auth, timeout=T)


def submit(s, task="echo", inputs=(), **params):
    body = json.dumps({"task": task, "inputs": list(inputs), "params": params})  # NaN as Python's json writes it
    return requests.post(s.url + "/v1/jobs", data=body, headers={**s.auth, "Content-Type": "application/json"},
                         timeout=T)


def engine(s) -> dict:
    return get(s, "/v1/health").json()["queue"]["engine_worker"]


def bundle_source(s, jid, tmp_path) -> dict:
    r = get(s, f"/v1/jobs/{jid}/bundle")
    assert r.status_code == 200, r.text
    (tmp_path / f"{jid}.zip").write_bytes(r.content)
    return read_bundle(tmp_path / f"{jid}.zip").source


# -- options: refused before queueing ------------------------------------------------------

BAD_OPTIONS = [  # (engine, options, what the message must say)
    ("colmap", {"overlap": -3}, "option overlap"),  # the incident
    ("colmap", {"overlap": 0}, "option overlap"),
    ("colmap", {"overlap": True}, "option overlap"),  # lax pydantic took true as 1
    ("colmap", {"fps": -5}, "option fps"),
    ("colmap", {"seed": "x"}, "option seed"),
    ("colmap", {"seed": "5"}, "option seed"),
    ("colmap", {"max_image_size": 10**9}, "option max_image_size"),
    ("colmap", {"num_threads": -2}, "option num_threads"),
    ("colmap", {"mapper": "magic"}, "option mapper"),
    ("colmap", {"K": [[500, 0, 16], [0, 500, 12], [0, 0, float("nan")]]}, "option K"),
    ("colmap", {"frobnicate": 1}, "option frobnicate"),
    ("unified", {"window": 1}, "option window"),
    ("unified", {"window": 8, "window_stride": 8}, "options: window_stride"),
    ("unified", {"t": -1}, "option t"),
]


def test_engine_options_are_refused_before_queueing(server, tmp_path):
    health = get(server, "/v1/health").json()
    clip = requests.post(server.url + "/v1/uploads", params={"filename": "clip.mp4"},
                         data=make_video(tmp_path / "clip.mp4").read_bytes(), headers=server.auth, timeout=T)
    assert clip.status_code == 201, clip.text
    known = health["queue"]["jobs_known"]
    tried = 0
    for engine_name, options, name in BAD_OPTIONS:
        if not health["engines"][engine_name]["available"]:
            continue  # its availability is refused first, with its own message
        tried += 1
        r = submit(server, "solve", [clip.json()["id"]], engine=engine_name, options=options)
        assert r.status_code == 422, (options, r.text)
        message = r.json()["error"]
        assert name in message and engine_name in message, (options, message)
    if not tried:
        pytest.skip("no engine available here")
    assert get(server, "/v1/health").json()["queue"]["jobs_known"] == known  # nothing was queued
    # every engine's options schema is served, with its ranges: in /v1/health and, as the
    # variants of solve's options, in the OpenAPI schema the fuzz test reads
    openapi = requests.get(server.url + "/openapi.json", timeout=T).json()["components"]["schemas"]
    assert {"$ref": "#/components/schemas/params_solve"} in openapi["JobRequest"]["properties"]["params"]["anyOf"]
    variants = {v["title"]: v for v in openapi["params_solve"]["properties"]["options"]["anyOf"]}
    assert variants["colmap options"]["properties"]["overlap"]["minimum"] == 1
    schema = health["engines"]["colmap"]["options_schema"]["properties"]
    assert (schema["overlap"]["minimum"], schema["overlap"]["maximum"]) == (1, 1000)
    assert schema["seed"]["type"] == "integer" and schema["seed"]["minimum"] == 0


# -- crashes fail their job only -------------------------------------------------------------

@pytest.mark.parametrize("crash, signal_name", [("abort", "SIGABRT"), ("segfault", "SIGSEGV")])
def test_a_crashing_engine_fails_its_job_and_the_next_job_runs(server, tmp_path, crash, signal_name):
    crashes = engine(server)["crashes"]
    bad = submit(server, steps=2, crash=crash).json()["id"]
    queued = submit(server, steps=2).json()["id"]  # waits behind the crash: must not be lost
    j = wait_state(server, bad)
    assert j["state"] == "failed" and j["message"].startswith("the engine crashed"), j
    assert signal_name in j["message"]
    assert get(server, f"/v1/jobs/{bad}/bundle").status_code == 409
    assert sorted(p.name for p in (server.data_dir / "jobs" / bad).iterdir()) == ["job.json"]
    assert wait_state(server, queued)["state"] == "done"
    assert bundle_source(server, queued, tmp_path)["job"] == queued
    assert engine(server)["crashes"] == crashes + 1
    assert server.proc.poll() is None and get(server, "/v1/health").status_code == 200


def test_the_engine_keeps_its_cache_between_jobs_until_a_crash_or_release(server, tmp_path):
    def run(**params):
        jid = submit(server, steps=1, **params).json()["id"]
        j = wait_state(server, jid)
        return j, (bundle_source(server, jid, tmp_path) if j["state"] == "done" else None)

    _, first = run()
    _, second = run()
    assert second["worker_pid"] == first["worker_pid"]  # the same long-lived worker process
    assert second["runs_in_worker"] == first["runs_in_worker"] + 1  # ctx.cache survived the job
    j, _ = run(crash="abort")
    assert j["state"] == "failed"
    _, after_crash = run()
    assert after_crash["worker_pid"] != first["worker_pid"] and after_crash["runs_in_worker"] == 1
    r = requests.post(server.url + "/v1/release", headers=server.auth, timeout=T).json()
    assert r == {"released": ["echo"], "deferred": []}
    assert engine(server)["pid"] is None  # ended: all its memory is back
    _, after_release = run()
    assert after_release["runs_in_worker"] == 1


def test_cancel_crosses_the_process_boundary(server):
    """A cancel lands at the engine's next progress report, as in-process; an engine that does
    not report (native code: GLOMAP takes no cancellation token) is ended with its process
    after --cancel-grace-s."""
    steps = 400
    jid = submit(server, steps=steps, step_s=0.05).json()["id"]
    wait_state(server, jid, ("running",), cond=lambda j: j["progress"] > 0)
    at_cancel = requests.delete(f"{server.url}/v1/jobs/{jid}", headers=server.auth, timeout=T).json()["progress"]
    j = wait_state(server, jid)
    assert j["state"] == "cancelled" and j["message"].startswith("cancelled by request, during step ")
    assert j["progress"] <= at_cancel + 2 / steps  # within a step or two of the request
    pid = engine(server)["pid"]
    assert pid is not None  # a cooperative cancel keeps the worker (and its models)

    stuck = submit(server, steps=1, block_s=300).json()["id"]
    wait_state(server, stuck, ("running",), cond=lambda j: j["progress"] > 0)  # now blocked
    requests.delete(f"{server.url}/v1/jobs/{stuck}", headers=server.auth, timeout=T)
    j = wait_state(server, stuck)
    assert j["state"] == "cancelled" and "its process was ended" in j["message"], j
    assert sorted(p.name for p in (server.data_dir / "jobs" / stuck).iterdir()) == ["job.json"]
    assert wait_state(server, submit(server, steps=1).json()["id"])["state"] == "done"
    assert engine(server)["pid"] not in (None, pid)
