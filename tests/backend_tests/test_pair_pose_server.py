"""The ``pair_pose`` task through a real server on 127.0.0.1 with the shipped tiny model on CPU:
two uploaded images in, a zip holding the pair bundle and its generated/ video out; bad params and
a missing image refused with a message naming them. Budget: ~20 s on 2 cores (one video of 4
frames at 1 step)."""

from __future__ import annotations

import numpy as np
import pytest
import requests
from PIL import Image

from backend.bundle import read_bundle
from backend_tests.test_server_helpers import Server, wait_state

T = 120


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # one OpenMP thread: on 2 shared cores more only fight
        mp.setenv("OMP_NUM_THREADS", "1")
        s = Server(tmp_path_factory.mktemp("srv"))
    health = requests.get(s.url + "/v1/health", headers=s.auth, timeout=T).json()
    if not health["tasks"]["pair_pose"]["available"]:
        s.stop()
        pytest.skip("pair_pose unavailable here: " + str(health["tasks"]["pair_pose"]["reason"]))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from backend.data.pairs import wide_pairs

    pair = next(wide_pairs(1, 48, 64))
    folder = tmp_path_factory.mktemp("imgs")
    paths = []
    for name, rgb in zip("ab", pair.rgb):
        Image.fromarray(rgb).save(folder / f"{name}.png")
        paths.append(folder / f"{name}.png")
    return paths, pair


def _upload(s, path):
    with open(path, "rb") as f:
        r = requests.post(s.url + "/v1/uploads", params={"filename": path.name}, data=f, headers=s.auth, timeout=T)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _submit(s, inputs, **params):
    return requests.post(s.url + "/v1/jobs", json={"task": "pair_pose", "inputs": inputs, "params": params},
                         headers=s.auth, timeout=T)


def test_pair_pose_job_returns_the_pair_and_its_generated_video(server, images, tmp_path):
    (a, b), pair = images
    ids = [_upload(server, a), _upload(server, b)]
    K = pair.K
    r = _submit(server, ids, videos=1, frames=4, steps=1, subsets=2,
                intrinsics=[float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])])
    assert r.status_code == 201, r.text
    done = wait_state(server, r.json()["id"])
    assert done["state"] == "done", done
    z = requests.get(server.url + done["bundle_url"], headers=server.auth, timeout=T)
    (tmp_path / "b.zip").write_bytes(z.content)
    main = read_bundle(tmp_path / "b.zip")
    assert main.task == "pair_pose" and main.frame_count == 2 and (main.width, main.height) == (64, 48)
    assert np.allclose(main.c2w_array()[0], np.eye(4)) and np.isfinite(main.c2w_array()[1]).all()
    assert main.scores["method"] == "interpose" and main.scores["reliability"] in ("high", "medium", "low")
    gen = read_bundle(main.path / main.source["generated"]["bundle"])
    assert gen.task == "generate" and gen.source["generated"] is True and gen.frame_count == 4


def test_bad_params_and_inputs_are_refused_with_a_message(server, images):
    (a, b), _ = images
    ids = [_upload(server, a), _upload(server, b)]
    for params, words in [({"videos": -1}, "params.videos"), ({"frames": 4, "k": 5}, "cannot exceed"),
                          ({"intrinsics": [0, 1, 2, 3]}, "positive"), ({"estimator": "dust3r"}, "params.estimator")]:
        r = _submit(server, ids, **params)
        assert r.status_code == 422 and words in r.json()["error"], (params, r.text)
    r = _submit(server, ids[:1])
    assert r.status_code == 422 and "takes 2 to 2 input(s), got 1" in r.json()["error"]
