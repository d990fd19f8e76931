"""Downloads against a Hugging Face Hub on loopback (tests/backend_tests/hub_server.py), never
the real one: byte progress, resume after a kill mid-file (bytes counted on the server), cancel,
the gated / missing-revision / no-network / offline / full-disk messages, remove touching only
its model, the CLI, and the service's model endpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest

from backend.hub import download as dl
from backend.hub.catalogue import entry_from_json, resolve_model
from backend.runtime import Cancelled
from backend_tests.hub_server import HubRepo, HubServer, catalogue_file, entry_json, tiny_model_folder

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny(tmp_path):
    return HubRepo.from_folder("test-org/tiny-wan", tiny_model_folder(tmp_path / "src"))


def _entry(repo, model_id="tiny", **kw):
    return entry_from_json(entry_json(model_id, repo, **kw))


def _same_files(snapshot: Path, repo: HubRepo):
    got = {p.relative_to(snapshot).as_posix(): p.read_bytes() for p in snapshot.rglob("*") if p.is_file()}
    assert got == repo.files


def test_download_progress_and_cache_layout(tmp_path, tiny):
    entry, cache = _entry(tiny), tmp_path / "cache"
    events = []
    with HubServer([tiny]) as hub:
        path = dl.download_model(entry, progress=events.append, cache_dir=cache, endpoint=hub.url)
        _same_files(path, tiny)
        # Every byte crossed the wire once: the linking step fetched nothing again.
        assert dict(hub.sent) == {(tiny.repo_id, p): len(d) for p, d in tiny.files.items()}
    total = sum(len(d) for d in tiny.files.values())
    dones = [e.done for e in events]
    assert events[0].done == 0 and dones == sorted(dones) and events[-1].done == total == events[-1].total
    assert events[-1].files_done == len(tiny.files) and "MB" in events[1].label()
    # huggingface_hub's own cache: it finds the snapshot offline, and so does resolve_model.
    assert dl.local_snapshot(entry, cache) == path
    state = dl.model_state(entry, cache)
    assert state["installed"] and state["size_on_disk"] == total and state["partial_bytes"] == 0


def test_killed_download_resumes_without_refetching(tmp_path):
    """A CLI download killed (SIGKILL) in the middle of a 24 MB file: the next download fetches
    only the bytes that were not on disk (huggingface_hub writes 10 MB chunks)."""
    big = HubRepo("test-org/big", {"config.json": b'{"a": 1}', "model.safetensors": os.urandom(24 * 2**20)})
    catalogue = catalogue_file(tmp_path / "models.json", [entry_json("big", big)])
    cache = tmp_path / "cache"
    with HubServer([big], throttle=(256 * 1024, 0.02)) as hub:  # about 12 MB/s
        env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(cache), PARALLAX_CATALOGUE=str(catalogue))
        proc = subprocess.Popen([sys.executable, "-m", "backend", "models", "download", "big"], cwd=REPO_ROOT,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        blobs = cache / "models--test-org--big" / "blobs"
        deadline = time.monotonic() + 60
        partial = None
        while time.monotonic() < deadline:
            found = list(blobs.glob("*" + dl.PARTIAL_SUFFIX)) if blobs.is_dir() else []
            if found and found[0].stat().st_size >= 10 * 2**20:
                partial = found[0]
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        assert partial is not None, "the download never wrote its first chunk"
        proc.kill()
        proc.wait(10)
        have = partial.stat().st_size
        assert 0 < have < len(big.files["model.safetensors"])
        sent_before = _settled(hub, (big.repo_id, "model.safetensors"))
        hub.throttle = None
        entry = entry_from_json(entry_json("big", big))
        assert dl.model_state(entry, cache)["partial_bytes"] == have
        path = dl.download_model(entry, cache_dir=cache, endpoint=hub.url)
        _same_files(path, big)
        resent = hub.sent[(big.repo_id, "model.safetensors")] - sent_before
        assert resent == len(big.files["model.safetensors"]) - have  # nothing fetched twice
        ranges = [r for (_, p, r) in hub.requests if p.endswith("model.safetensors") and r]
        assert ranges == [f"bytes={have}-"]
    assert not list(blobs.glob("*" + dl.PARTIAL_SUFFIX))


def _settled(hub, key, quiet_s=0.3):
    """The server's byte count once its thread for the killed client has noticed (it writes
    into the socket's buffer until the write fails)."""
    last, since = hub.sent[key], time.monotonic()
    while time.monotonic() - since < quiet_s:
        time.sleep(0.05)
        if hub.sent[key] != last:
            last, since = hub.sent[key], time.monotonic()
    return last


def test_cancel_keeps_partial_and_dropped_connection_resumes(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)  # finer chunks: a cancel lands mid-file
    data = os.urandom(1_000_000)
    repo = HubRepo("test-org/mid", {"config.json": b"{}", "w.safetensors": data})
    entry, cache = _entry(repo), tmp_path / "cache"
    with HubServer([repo], throttle=(64 * 1024, 0.005)) as hub:
        def stop_halfway(p):
            if p.done > 300_000:
                raise Cancelled("cancelled by the test")

        with pytest.raises(Cancelled):
            dl.download_model(entry, progress=stop_halfway, cache_dir=cache, endpoint=hub.url)
        have = dl.model_state(entry, cache)["partial_bytes"]
        assert 200_000 <= have < len(data)  # the chunk being reported when it stopped is not written
        sent = _settled(hub, (repo.repo_id, "w.safetensors"))
        # The resumed request drops mid-file: huggingface_hub retries with a Range, in the same call.
        hub.drop_after[(repo.repo_id, "w.safetensors")] = 200_000
        path = dl.download_model(entry, cache_dir=cache, endpoint=hub.url)
        _same_files(path, repo)
        # Resuming after the cancel fetched nothing twice; after the drop, huggingface_hub loses
        # what it had received of the chunk it was filling (3,392 bytes here): less than a chunk.
        extra = hub.sent[(repo.repo_id, "w.safetensors")] - sent - (len(data) - have)
        assert 0 <= extra < 64 * 1024
        assert [r for (_, p, r) in hub.requests if p.endswith("w.safetensors") and r][0] == f"bytes={have}-"


def test_gated_missing_revision_and_no_network(tmp_path, tiny, monkeypatch):
    gated = HubRepo("test-org/gated", tiny.files, gated=True)
    with HubServer([tiny, gated]) as hub:
        with pytest.raises(dl.DownloadError) as info:
            dl.download_model(_entry(gated), accept_licence=True, cache_dir=tmp_path, endpoint=hub.url)
        assert info.value.kind == "gated"
        assert "hf auth login" in str(info.value) and "HF_TOKEN" in str(info.value) and "test-org/gated" in str(info.value)
        with pytest.raises(dl.DownloadError) as info:
            dl.download_model(_entry(tiny, revision="f" * 40), cache_dir=tmp_path, endpoint=hub.url)
        assert info.value.kind == "revision" and f"revision {'f' * 40!r}" in str(info.value)
        with pytest.raises(dl.DownloadError) as info:
            dl.download_model(_entry(tiny, revision="v9"), cache_dir=tmp_path, endpoint=hub.url)
        assert info.value.kind == "revision"
    import socket

    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http.time, "sleep", lambda s: None)  # huggingface_hub's backoff: 23 s of retries
    # No network: a port this test holds bound but never listens on refuses every connection. (The
    # closed server's own address is no test: a keep-alive connection from the calls above, still
    # served by its handler thread, sometimes answered the download.)
    with socket.socket() as held, pytest.raises(dl.DownloadError) as info:
        held.bind(("127.0.0.1", 0))
        dl.download_model(_entry(tiny), cache_dir=tmp_path, endpoint=f"http://127.0.0.1:{held.getsockname()[1]}")
    assert info.value.kind == "network" and "cannot reach" in str(info.value)


def test_licence_must_be_accepted(tmp_path, tiny):
    entry = _entry(tiny, commercial_use=False)
    with HubServer([tiny]) as hub:
        with pytest.raises(dl.DownloadError, match="accept it explicitly") as info:
            dl.download_model(entry, cache_dir=tmp_path, endpoint=hub.url)
        assert info.value.kind == "licence" and hub.requests == []
        dl.download_model(entry, accept_licence=True, cache_dir=tmp_path, endpoint=hub.url)


def test_full_disk_refused_before_any_request(tmp_path, tiny, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with HubServer([tiny]) as hub:
        with pytest.raises(dl.DownloadError, match="not enough disk space for tiny") as info:
            dl.download_model(_entry(tiny), cache_dir=tmp_path / "cache", endpoint=hub.url)
        assert info.value.kind == "disk" and "HF_HOME" in str(info.value)
        assert hub.requests == []


def test_offline_uses_the_cache(tmp_path, tiny, monkeypatch):
    from huggingface_hub import constants

    entry, cache = _entry(tiny), tmp_path / "cache"
    with HubServer([tiny]) as hub:
        path = dl.download_model(entry, cache_dir=cache, endpoint=hub.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert dl.download_model(entry, cache_dir=cache) == path  # already there: no network needed
    assert resolve_model("parallax-tiny").path.is_dir()
    other = _entry(HubRepo("test-org/other", tiny.files), "other")
    with pytest.raises(dl.DownloadError, match="HF_HUB_OFFLINE") as info:
        dl.download_model(other, cache_dir=cache)
    assert info.value.kind == "offline"
    # The CLI in a fresh process with HF_HUB_OFFLINE=1: lists it installed, resolves it offline.
    catalogue = catalogue_file(tmp_path / "models.json", [entry_json("tiny", tiny)])
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), PARALLAX_CATALOGUE=str(catalogue),
               HF_ENDPOINT="http://127.0.0.1:9")
    out = subprocess.run([sys.executable, "-m", "backend", "models", "list", "--json"], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    listed = {m["id"]: m for m in json.loads(out.stdout)["models"]}
    assert listed["tiny"]["installed"] and listed["tiny"]["path"] == str(path) and json.loads(out.stdout)["offline"]


def test_remove_deletes_only_that_model(tmp_path, tiny):
    cache = tmp_path / "cache"
    other_repo = HubRepo("test-org/other", {"config.json": b'{"b": 2}', "w.safetensors": os.urandom(5000)})
    entry, other = _entry(tiny), _entry(other_repo, "other")
    with HubServer([tiny, other_repo]) as hub:
        dl.download_model(entry, cache_dir=cache, endpoint=hub.url)
        kept = dl.download_model(other, cache_dir=cache, endpoint=hub.url)
    mine = cache / "my-notes.txt"  # not Parallax's: never touched
    mine.write_text("keep me")
    before = {p for p in cache.rglob("*") if "tiny-wan" not in str(p) and ".locks" not in str(p)}
    freed = dl.remove_model(entry, cache_dir=cache)
    assert freed == sum(len(d) for d in tiny.files.values())
    assert not (cache / "models--test-org--tiny-wan").exists()
    assert {p for p in cache.rglob("*") if ".locks" not in str(p)} == before
    assert mine.read_text() == "keep me" and dl.local_snapshot(other, cache) == kept
    assert dl.remove_model(entry, cache_dir=cache) == 0  # already gone: nothing else is removed


def test_cli_download_and_remove(tmp_path, tiny):
    catalogue = catalogue_file(tmp_path / "models.json", [entry_json("tiny", tiny, commercial_use=False)])
    cache = tmp_path / "cache"
    with HubServer([tiny]) as hub:
        env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(cache), PARALLAX_CATALOGUE=str(catalogue))

        def run(*args):
            return subprocess.run([sys.executable, "-m", "backend", "models", *args], cwd=REPO_ROOT, env=env,
                                  capture_output=True, text=True, timeout=120)

        out = run("download", "tiny")
        assert out.returncode == 3 and "--accept-licence" in out.stderr and not cache.exists()
        out = run("download", "tiny", "--accept-licence")
        assert out.returncode == 0, out.stderr
        assert "100%" in out.stderr and "ready at" in out.stdout
        out = run("list")
        assert out.returncode == 0 and "non-commercial" in out.stdout
        row = next(line for line in out.stdout.splitlines() if line.startswith("tiny "))
        assert " yes " in row
        out = run("info", "tiny")
        assert "installed: yes" in out.stdout and tiny.commit in out.stdout
        out = run("remove", "tiny")
        assert out.returncode == 0 and "removed tiny" in out.stdout
        assert run("info", "nope").returncode == 2


# -- the service -----------------------------------------------------------------------------

@pytest.fixture
def service(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from backend.server.app import create_app
    from backend.server.config import ServerConfig
    from backend.server.tasks import TaskRegistry

    app = create_app(ServerConfig(data_dir=tmp_path / "data", token="t0ken", device="cpu"), TaskRegistry(()))
    with TestClient(app, headers={"Authorization": "Bearer t0ken"}) as client:
        yield app, client


def _wait(client, job_id, states=("done", "failed", "cancelled"), timeout=60):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        job = client.get(f"/v1/models/downloads/{job_id}").json()
        seen.append(job)
        if job["state"] in states:
            return job, seen
        time.sleep(0.02)
    raise AssertionError(f"download still {seen[-1]}")


def test_service_list_download_cancel_remove(tmp_path, monkeypatch, service):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 32 * 1024)
    app, client = service
    data = os.urandom(600_000)
    repo = HubRepo("test-org/served", {"config.json": b"{}", "w.safetensors": data})
    monkeypatch.setenv("PARALLAX_CATALOGUE", str(catalogue_file(
        tmp_path / "models.json", [entry_json("served", repo), entry_json("nc", repo, id="nc", commercial_use=False)])))
    with HubServer([repo], throttle=(32 * 1024, 0.01)) as hub:
        app.state.models.cache_dir, app.state.models.endpoint = tmp_path / "cache", hub.url
        listed = client.get("/v1/models").json()
        row = next(m for m in listed["models"] if m["id"] == "served")
        assert not row["installed"] and row["fits"] is None and row["licence"] == "Apache-2.0"
        assert client.post("/v1/models/nope/download").status_code == 404
        for call in (client.get, client.delete):  # a download id this server never gave
            r = call("/v1/models/downloads/nope")
            assert r.status_code == 404 and "no model download with id 'nope'" in r.json()["error"], r.json()
        r = client.post("/v1/models/nc/download", json={})
        assert r.status_code == 422 and "accept_licence" in r.json()["error"]
        # Start, see bytes arrive, cancel: the partial file stays for the next attempt.
        job = client.post("/v1/models/served/download", json={"accept_licence": False}).json()
        assert client.post("/v1/models/served/download").status_code == 409  # one at a time
        job, seen = _wait(client, job["id"], states=("running",))
        while job["bytes_done"] < 100_000:
            job = client.get(f"/v1/models/downloads/{job['id']}").json()
            time.sleep(0.01)
        assert job["bytes_total"] == len(data) + 2 and "downloading" in job["stage"]
        assert client.delete(f"/v1/models/downloads/{job['id']}").json()["cancel_requested"]
        job, _ = _wait(client, job["id"])
        assert job["state"] == "cancelled" and "resumes" in job["message"]
        partial = next(m for m in client.get("/v1/models").json()["models"] if m["id"] == "served")["partial_bytes"]
        assert partial > 0
        # Again: it resumes, and ends done with progress 1.
        job = client.post("/v1/models/served/download").json()
        job, seen = _wait(client, job["id"])
        assert job["state"] == "done" and job["progress"] == 1.0 and job["bytes_done"] == job["bytes_total"]
        ranges = [r for (_, p, r) in hub.requests if p.endswith("w.safetensors") and r]
        assert ranges == [f"bytes={partial}-"]  # it asked only for what it did not have
        row = next(m for m in client.get("/v1/models").json()["models"] if m["id"] == "served")
        assert row["installed"] and row["size_on_disk"] == len(data) + 2
        removed = client.delete("/v1/models/served").json()
        assert removed == {"model": "served", "freed_bytes": len(data) + 2}
        assert client.delete("/v1/models/parallax-tiny").status_code == 409


def test_service_refuses_full_disk(tmp_path, monkeypatch, service, tiny):
    app, client = service
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda path: usage(10**9, 10**9, 0))
    monkeypatch.setenv("PARALLAX_CATALOGUE", str(catalogue_file(tmp_path / "m.json", [entry_json("tiny", tiny)])))
    app.state.models.cache_dir = tmp_path / "cache"
    r = client.post("/v1/models/tiny/download")
    assert r.status_code == 507 and "not enough disk space" in r.json()["error"]
