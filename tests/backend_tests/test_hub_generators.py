"""Hub video generators in the generator role (backend/hub/generators.py), on tiny random models.

Each model is built here from its real diffusers class and config (``hub_models.py``), saved in
the hub's folder layout, resolved through the catalogue (``resolve_model(path)``), loaded by
``load_generator`` and run through Parallax's generate pipeline to a bundle that ``read_bundle``
accepts; the first-last-frame models also run through InterPose (``--videos 1``). All on CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from backend_tests.hub_models import BUILDERS

from backend.bundle import read_bundle, write_bundle
from backend.hub.catalogue import resolve_model
from backend.hub.generators import detect_loader, load_generator
from backend.pipelines.generate import generate_shot
from backend.roles import Generator
from backend.runtime import Cancelled

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 32 px frames: the smallest the V2C geometry role solves (io_video.MIN_SIDE), and a multiple of LTX's 32.
SIZES = {"wan-t2v": 32, "wan-flf2v": 32, "ltx-condition": 32, "cogvideox": 32}
STEPS = 2


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def generators(folders):
    """Each tiny model loaded once (as the server keeps it between jobs)."""
    return {name: load_generator(resolve_model(path), device="cpu", height=SIZES[name], width=SIZES[name],
                                 steps=STEPS) for name, path in folders.items()}


@pytest.fixture(scope="module")
def geometry():
    """The unified model's V2C as the geometry role, without the slow refinements (alignment and
    photometric cost ~50 s on this CPU; the cameras here only need to exist)."""
    from backend.pipelines.unified_roles import UnifiedGeometry

    return UnifiedGeometry(device="cpu", align=False, photometric=False)


def textured(h, w, seed):
    rng = np.random.default_rng(seed)
    return (rng.random((h, w, 3)) * 255).astype(np.uint8)


def test_folders_are_in_the_hub_layout_and_the_loader_is_detected(folders):
    for name, path in folders.items():
        index = json.loads((path / "model_index.json").read_text())
        assert (path / "transformer" / "config.json").is_file() and (path / "vae" / "config.json").is_file()
        assert (path / "tokenizer" / "tokenizer.json").is_file() and "text_encoder" in index
        assert detect_loader(path) == name
        resolved = resolve_model(str(path))
        assert resolved.path == path.resolve() and resolved.entry is None


def test_each_adapter_fills_the_generator_role(generators):
    for name, g in generators.items():
        assert isinstance(g, Generator), name
        assert g.name == name and g.model_id.endswith(name) and g.max_frames >= 9


def test_frame_counts_round_to_what_each_model_accepts(generators):
    wan, ltx, cog = generators["wan-t2v"], generators["ltx-condition"], generators["cogvideox"]
    assert [wan.frames_for(n) for n in (2, 5, 16, 17, 200)] == [5, 5, 17, 17, 81]  # 4k+1, at most 81
    assert ltx.temporal == ltx.pipe.vae_temporal_compression_ratio  # the VAE's (8 for LTX-Video, 4 here)
    assert ltx.frames_for(10) == -(-9 // ltx.temporal) * ltx.temporal + 1  # the next k * t + 1 up
    assert cog.max_frames == 9 and cog.frames_for(6) == 9 and cog.frames_for(40) == 9  # its sample_frames
    # CogVideoX's VAE returns the asked count only for an odd number of latent frames (8k + 1):
    # 5 frames (2 latent frames) came back as 8
    assert cog.frames_for(2) == 9 and len(cog.text_to_video("x", frames=3, seed=0, steps=1, guidance=1.0)) == 9
    with pytest.raises(ValueError, match="at least 2"):
        wan.frames_for(1)


@pytest.mark.parametrize("name", ["wan-t2v", "ltx-condition", "cogvideox"])
def test_text_to_video_through_generate_to_a_valid_bundle(name, generators, geometry, tmp_path):
    g = generators[name]
    events = []
    b = generate_shot(g, "a camera dollies past a red box", frames=8, seed=3, geometry=geometry,
                      progress=lambda f, label: events.append((f, label)))
    n = g.frames_for(8)
    path = write_bundle(b, tmp_path / "shot")
    back = read_bundle(path)
    assert back.task == "generate" and back.frame_count == n and len(back.frames) == n
    assert (back.width, back.height) == (SIZES[name], SIZES[name]) and back.fps == g.fps
    assert back.source["generator"] == {"name": name, "model_id": g.model_id}
    assert back.source["geometry"]["name"] == "unified" and back.source["one_pass"] is False
    assert len(back.cameras) == n and np.allclose(back.c2w_array()[0], np.eye(4), atol=1e-6)
    assert back.depth is not None and back.depth[0].depth.shape == (SIZES[name], SIZES[name])
    steps = [label for _, label in events if label.startswith("denoising")]
    assert steps == [f"denoising {i}/{STEPS}" for i in range(1, STEPS + 1)]  # one event per step
    fractions = [f for f, _ in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_same_seed_same_video_and_another_seed_another(generators):
    g = generators["wan-t2v"]
    a, b = (g.text_to_video("pans left", 5, seed=s) for s in (1, 1))
    c = g.text_to_video("pans left", 5, seed=2)
    assert a.dtype == np.uint8 and a.shape == (5, 32, 32, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("name", ["wan-flf2v", "ltx-condition"])
def test_first_last_frame_through_generate(name, generators, tmp_path):
    g = generators[name]
    first, last = textured(40, 40, 1), textured(40, 40, 2)
    n = g.frames_for(9)
    b = generate_shot(g, "the camera orbits left", frames=9, camera=False, images=[first, last])
    back = read_bundle(write_bundle(b, tmp_path / "flf"))
    assert back.frame_count == n and back.source["keyframes"] == 2 and back.source["geometry"] is None
    side = SIZES[name]
    from PIL import Image

    frames = [np.asarray(Image.open(p)) for p in back.frames]  # read bundles hold the frames' paths
    want_first = np.asarray(Image.fromarray(first).resize((side, side), Image.BICUBIC))
    assert np.array_equal(frames[0], want_first)  # the given frames, exactly (InterPose reads them)
    assert not np.array_equal(frames[0], frames[n // 2])


def test_ltx_keyframes_at_chosen_frames(generators):
    g = generators["ltx-condition"]
    t = g.temporal
    n = 4 * t + 1
    keys = {0: textured(32, 32, 1), 2 * t: textured(32, 32, 2), n - 1: textured(32, 32, 3)}
    video = g.keyframes(keys, n, seed=0, prompt="pans right")
    assert video.shape == (n, 32, 32, 3)
    for i, img in keys.items():
        assert np.array_equal(video[i], img)
    with pytest.raises(ValueError, match=f"{t}k\\+1"):
        g.keyframes(keys, n + 1)


def test_a_text_only_model_refuses_images_with_a_message(generators):
    with pytest.raises(ValueError, match="text only"):
        generate_shot(generators["cogvideox"], "x", frames=9, camera=False, images=[textured(16, 16, 0)])
    with pytest.raises(NotImplementedError, match="does not do flf2v"):
        generators["wan-t2v"].interpolate(textured(16, 16, 0), textured(16, 16, 1), 9)
    with pytest.raises(NotImplementedError, match="does not do i2v"):  # Wan's FLF2V model embeds two images
        generators["wan-flf2v"].image_to_video(textured(16, 16, 0), 9)


@pytest.mark.parametrize("name", ["wan-t2v", "wan-flf2v"])
def test_cancel_stops_within_a_step_through_the_interrupt_and_the_model_stays_loaded(name, generators):
    g = generators[name]
    seen = []

    def cancel_after_first_step(f, label):
        seen.append(label)
        return not label.startswith("denoising 1/")  # False: stop

    with pytest.raises(Cancelled):
        if name == "wan-t2v":
            g.text_to_video("x", 9, progress=cancel_after_first_step)
        else:
            g.interpolate(textured(16, 16, 0), textured(16, 16, 1), 9, progress=cancel_after_first_step)
    assert g.pipe.interrupt is True  # the pipeline's own flag was set
    assert not any(label.startswith(("denoising 2/", "decoding")) for label in seen)  # no further step, no decode
    video = g.text_to_video("x", 5) if name == "wan-t2v" else g.interpolate(textured(16, 16, 0), textured(16, 16, 1), 5)
    assert video.shape[0] == 5  # the same loaded pipeline runs the next job


@pytest.mark.parametrize("name", ["wan-flf2v", "ltx-condition"])
def test_first_last_frame_models_through_interpose(name, generators, tmp_path):
    from backend.pipelines.pair_pose import GENERATED_DIR, PairPosePipeline, write_result
    from backend.pipelines.pair_roles import UnifiedPoseEstimator, video_frames

    g = generators[name]
    F = video_frames(g, 9)
    pipe = PairPosePipeline(g, UnifiedPoseEstimator(device="cpu"), videos=1, frames=F, k=5, random_subsets=2)
    events = []
    res = pipe(textured(48, 64, 5), textured(48, 64, 6), progress=lambda f, label: events.append(label))
    path = write_result(res, tmp_path / "pair")
    main, video = read_bundle(path), read_bundle(path / GENERATED_DIR)
    assert main.task == "pair_pose" and main.source["roles"]["generator"] == {"name": name, "model_id": g.model_id}
    assert video.frame_count == F and video.source["generated"] is True
    assert any("denoising" in label for label in events)


def test_cli_generate_with_a_hub_model_and_its_errors(folders, tmp_path, capsys):
    from backend.__main__ import main

    rc = main(["generate", "a camera pans left", "--out", str(tmp_path / "o"), "--model", str(folders["cogvideox"]),
               "--no-camera", "--steps", "2", "--frames", "9", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    b = read_bundle(tmp_path / "o")
    assert b.frame_count == 9 and b.engine == "cogvideox" and b.cameras is None
    assert "generator " in capsys.readouterr().out
    rc = main(["generate", "x", "--out", str(tmp_path / "o2"), "--model", "no-such-model", "--device", "cpu"])
    assert rc == 2 and "neither a catalogue id nor an existing folder" in capsys.readouterr().err
    rc = main(["generate", "x", "--out", str(tmp_path / "o3"), "--model", str(folders["cogvideox"]), "--image",
               str(tmp_path / "missing.png"), "--device", "cpu"])
    assert rc == 2 and "no such file" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_pair_pose_refuses_a_text_only_generator(folders):
    from backend.pipelines.pair_roles import make_roles

    with pytest.raises(ValueError, match="cannot make a video between two images"):
        make_roles(str(folders["wan-t2v"]), "colmap", device="cpu")


def test_service_keeps_one_hub_generator_loaded_between_jobs(folders):
    """The generate task's cache: the same model is loaded once; another replaces it."""
    from pydantic import ValidationError

    from backend.runtime import Progress
    from backend.server.tasks.generate import GenerateParams, hub_generator

    class Ctx:
        cache, device, progress = {}, "cpu", Progress()

    a = hub_generator(Ctx, str(folders["cogvideox"]))
    assert hub_generator(Ctx, str(folders["cogvideox"])) is a
    b = hub_generator(Ctx, str(folders["wan-t2v"]))
    assert b is not a and a.pipe is None and len(Ctx.cache) == 1  # the first was released
    assert GenerateParams.model_validate({"prompt": "x", "model": str(folders["wan-t2v"])}).model
    with pytest.raises(ValidationError, match="neither a catalogue id"):
        GenerateParams.model_validate({"prompt": "x", "model": "no-such-model"})


def test_a_generate_job_with_a_hub_generator_through_the_service(folders, tmp_path, tmp_path_factory, monkeypatch):
    """A real server on 127.0.0.1: the job names a hub model folder, runs, and its bundle says
    which model made it; a second job reuses the loaded model; a model that is not there is
    refused before queueing."""
    import requests

    from backend.bundle import unzip_bundle
    from backend_tests.test_server_generate import follow, submit
    from backend_tests.test_server_helpers import Server

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    server = Server(tmp_path_factory.mktemp("srv"))
    try:
        model = str(folders["cogvideox"])
        ids = [submit(server, prompt="a camera pans left", model=model, frames=9, steps=2, camera=False,
                      seed=s).json()["id"] for s in (1, 2)]
        jobs = [follow(server, jid) for jid in ids]
        assert [j["state"] for j, _ in jobs] == ["done", "done"], jobs
        loads = [st for _, seen in jobs for st, _ in seen if st == "loading model"]
        assert len(loads) <= 1  # the second job found the model loaded
        r = requests.get(f"{server.url}/v1/jobs/{ids[1]}/bundle", headers=server.auth, timeout=120)
        (tmp_path / "b.zip").write_bytes(r.content)
        b = read_bundle(unzip_bundle(tmp_path / "b.zip", tmp_path / "b"))
        assert b.engine == "cogvideox" and b.frame_count == 9 and b.source["generator"]["model_id"] == model
        r = submit(server, prompt="x", model=str(tmp_path / "nowhere"))
        assert r.status_code == 422 and "neither a catalogue id" in r.json()["error"]
    finally:
        server.stop()
