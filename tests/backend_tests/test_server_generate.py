"""The production 'generate' task through a real server on 127.0.0.1 with the shipped tiny
model on CPU: a short shot with its cameras, progress once per denoising step, cancel mid-job
(the loop stops within a step, no bundle is left, the server still serves and keeps the model
loaded), and bad params refused with a human message. Budget: ~20 s on 2 cores."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import requests
from PIL import Image

from backend.bundle import read_bundle, unzip_bundle
from backend_tests.test_server_helpers import Server

FINAL = ("done", "failed", "cancelled")
T = 120  # bound on one request or wait; the tests wait on states and step counts, never on time
PROMPT = "a camera dollies past a red box in a grey room"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # One OpenMP thread: on a shared 2-core machine more threads only fight (10x slower measured).
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        data = tmp_path_factory.mktemp("srv")
        s = Server(data)
    s.data_dir = data
    health = requests.get(s.url + "/v1/health", headers=s.auth, timeout=T).json()
    if not health["tasks"]["generate"]["available"]:
        s.stop()
        pytest.skip("generate unavailable here: " + str(health["tasks"]["generate"]["reason"]))
    yield s
    s.stop()


def get(s, path, **kw):
    return requests.get(s.url + path, headers=s.auth, timeout=T, **kw)


def submit(s, **params):
    return requests.post(s.url + "/v1/jobs", json={"task": "generate", "inputs": [], "params": params},
                         headers=s.auth, timeout=T)


def _step(stage: str) -> int:
    """i of a "denoising i/n" stage, else 0."""
    m = re.match(r"denoising (\d+)/", stage)
    return int(m.group(1)) if m else 0


def follow(s, jid, timeout=600.0, until=None):
    """Poll a job at 50 Hz; returns (last snapshot, every distinct (stage, progress) seen in order)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        j = get(s, f"/v1/jobs/{jid}").json()
        if not seen or seen[-1] != (j["stage"], j["progress"]):
            seen.append((j["stage"], j["progress"]))
        if j["state"] in FINAL or (until is not None and until(j)):
            return j, seen
        time.sleep(0.02)
    raise AssertionError(f"job {jid} did not finish: {seen[-5:]}")


def test_health_lists_only_tasks_whose_pipeline_exists(server):
    tasks = get(server, "/v1/health").json()["tasks"]
    assert tasks["generate"]["available"] and tasks["generate"]["reason"] is None
    schema = tasks["generate"]["params_schema"]["properties"]
    assert schema["frames"]["maximum"] == 16 and schema["frames"]["minimum"] == 2
    from backend.server.tasks import default_registry

    assert set(tasks) - {"echo"} == set(default_registry().names())
    for name in ("reconstruct", "pair_pose"):  # offered only in a build with their pipelines
        if name in tasks:
            continue
        r = requests.post(server.url + "/v1/jobs", json={"task": name, "inputs": [], "params": {}},
                          headers=server.auth, timeout=T)
        assert r.status_code in (404, 422) and name in r.json()["error"], r.text


@pytest.mark.parametrize("params, words", [
    ({"prompt": "   "}, ["params.prompt", "prompt is empty"]),
    ({"prompt": PROMPT, "frames": 17}, ["params.frames", "less than or equal to 16"]),
    ({"prompt": PROMPT, "frames": 1}, ["params.frames", "greater than or equal to 2"]),
    ({"prompt": PROMPT, "seed": -1}, ["params.seed"]),
    ({"prompt": PROMPT, "steps": 0}, ["params.steps"]),
    ({"prompt": PROMPT, "guidance": 25}, ["params.guidance"]),
    ({"prompt": "x" * 501}, ["params.prompt", "at most 500"]),
    ({"prompt": PROMPT, "fps": 24}, ["params.fps", "Extra inputs are not permitted"]),
    ({}, ["params.prompt", "Field required"]),
])
def test_bad_params_are_refused_with_a_message(server, params, words):
    r = submit(server, **params)
    assert r.status_code == 422, r.text
    message = r.json()["error"]
    assert message.startswith("bad params: ")
    for w in words:
        assert w in message, message


def test_generate_short_shot_with_camera(server, tmp_path):
    steps, frames = 3, 3
    r = submit(server, prompt=PROMPT, frames=frames, steps=steps, seed=7)
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    job, seen = follow(server, jid)
    assert job["state"] == "done", job
    # One progress event per denoising step, in order, with progress rising through them.
    denoise = [(st, p) for st, p in seen if st.startswith("denoising")]
    assert [st for st, _ in denoise] == [f"denoising {i}/{steps}" for i in range(1, steps + 1)], seen
    assert all(a[1] < b[1] for a, b in zip(denoise, denoise[1:])), denoise
    progress = [p for _, p in seen]
    assert progress == sorted(progress)
    # The bundle: what was asked for, cameras in the first frame's world.
    r = get(server, f"/v1/jobs/{jid}/bundle")
    assert r.status_code == 200
    (tmp_path / "b.zip").write_bytes(r.content)
    b = read_bundle(unzip_bundle(tmp_path / "b.zip", tmp_path / "b"))
    assert b.task == "generate" and b.frame_count == frames and len(b.frames) == frames
    assert (b.width, b.height) == (64, 64)
    first = np.asarray(Image.open(b.frames[0]).convert("RGB"))
    assert first.shape == (64, 64, 3) and first.std() > 1.0  # a picture, not a flat fill
    assert b.source["prompt"] == PROMPT and b.source["seed"] == 7 and b.source["steps"] == steps
    assert len(b.cameras) == frames and all(c.c2w is not None for c in b.cameras)
    c2w = np.array([c.c2w for c in b.cameras])
    assert np.isfinite(c2w).all()
    np.testing.assert_allclose(c2w[0], np.eye(4), atol=1e-5)  # world = first frame's camera
    for m in c2w:  # rigid: orthonormal rotation
        np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-4)
    assert b.scores["forwards"] == steps  # T2V+C: the cameras came from the same passes


def test_cancel_mid_job_then_server_still_serves_with_model_loaded(server):
    steps = 60
    r = submit(server, prompt=PROMPT, frames=4, steps=steps, camera=False)
    jid = r.json()["id"]
    job, _ = follow(server, jid, until=lambda j: _step(j["stage"]) >= 3)  # a 50 Hz poll may miss one step
    assert job["state"] == "running"
    before = _step(job["stage"])
    t0 = time.monotonic()
    assert requests.delete(server.url + f"/v1/jobs/{jid}", headers=server.auth, timeout=T).status_code == 200
    job, seen = follow(server, jid)
    stopped_s = time.monotonic() - t0
    assert job["state"] == "cancelled", job
    # the message says where the sampling loop stopped: within a step or so of the request
    m = re.search(r"during denoising (\d+)/", job["message"])
    assert m, job["message"]
    done_steps = int(m.group(1))
    assert done_steps <= before + 3, (before, job["message"])
    print(f"cancel: stopped {stopped_s:.2f} s after the request, at step {done_steps}/{steps}")
    r = get(server, f"/v1/jobs/{jid}/bundle")
    assert r.status_code == 409 and "no bundle" in r.json()["error"]
    job_dir = server.data_dir / "jobs" / jid
    assert job_dir.is_dir() and not (job_dir / "bundle.zip").exists() and not (job_dir / "bundle").exists()
    assert not (job_dir / "work").exists()
    # Still serves; the model stays loaded (no "loading model" stage in the next job).
    r = submit(server, prompt=PROMPT, frames=2, steps=2, camera=False)
    job, seen = follow(server, r.json()["id"])
    assert job["state"] == "done", job
    assert not any(st.startswith("loading") for st, _ in seen), seen
    assert get(server, "/v1/health").json()["queue"]["running"] is None


def test_keyframe_images_are_kept_exactly(server, tmp_path):
    """Two image inputs are the first and last frames (centre-cropped square), pixel for pixel."""
    rng = np.random.default_rng(0)
    pics = [rng.integers(0, 256, (64, 80, 3), dtype=np.uint8) for _ in range(2)]
    ids = []
    for i, pic in enumerate(pics):
        Image.fromarray(pic).save(tmp_path / f"k{i}.png")
        with open(tmp_path / f"k{i}.png", "rb") as f:
            r = requests.post(server.url + "/v1/uploads", params={"filename": f"k{i}.png"}, data=f,
                              headers=server.auth, timeout=T)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    r = requests.post(server.url + "/v1/jobs", json={"task": "generate", "inputs": ids, "params": {
        "prompt": PROMPT, "frames": 3, "steps": 2, "camera": False}}, headers=server.auth, timeout=T)
    assert r.status_code == 201, r.text
    job, _ = follow(server, r.json()["id"])
    assert job["state"] == "done", job
    (tmp_path / "b.zip").write_bytes(get(server, f"/v1/jobs/{job['id']}/bundle").content)
    b = read_bundle(tmp_path / "b.zip")
    assert b.frame_count == 3 and b.cameras is None  # camera=False: video only
    for index, pic in ((0, pics[0]), (2, pics[1])):
        got = np.asarray(Image.open(b.frames[index]).convert("RGB"))
        np.testing.assert_array_equal(got, pic[:, 8:72])
