"""A hub geometry model (Depth Anything 3) in the geometry role: a random DA3 built from the
package's own presets and saved in its hub layout, loaded through resolve_model + load_geometry,
run through ``solve --engine geometry`` and ``reconstruct --model`` to valid bundles."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("depth_anything_3")
pytest.importorskip("omegaconf")

from backend.bundle import read_bundle  # noqa: E402
from backend.hub.catalogue import resolve_model  # noqa: E402
from backend.hub.geometry import detect_loader, load_geometry  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from hub_models import build_depth_anything_3  # noqa: E402

RES = 56  # the processing size in the tests (4 x 14 px patches on the longer side; the default is 504)


@pytest.fixture(scope="module")
def da3_folder(tmp_path_factory):
    return build_depth_anything_3(tmp_path_factory.mktemp("hub") / "DA3-SMALL-random")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A textured 4-frame clip, as image files, with a camera panning across a gradient wall."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("clip")
    yy, xx = np.mgrid[0:48, 0:160]
    wall = np.stack([(xx * 7) % 256, (yy * 11 + xx * 3) % 256, ((xx // 8 + yy // 8) % 2) * 200], -1).astype(np.uint8)
    for i in range(4):
        Image.fromarray(wall[:, 8 * i:8 * i + 64]).save(folder / f"{i:03d}.png")
    return folder


def test_layout_is_the_packages_and_detected(da3_folder):
    assert json.loads((da3_folder / "config.json").read_text())["model_name"] == "da3-small"
    assert (da3_folder / "model.safetensors").is_file()
    assert detect_loader(da3_folder) == "depth-anything-3"


def test_predict_fills_the_role_with_chunks(da3_folder):
    from backend.roles import Geometry

    geometry = load_geometry(resolve_model(str(da3_folder)), device="cpu", resolution=RES)
    assert isinstance(geometry, Geometry) and geometry.name == "depth-anything-3"
    geometry.chunk_frames, geometry.chunk_overlap = 3, 1  # two chunks over 5 frames, chained
    frames = (np.random.default_rng(0).random((5, 40, 56, 3)) * 255).astype(np.uint8)
    events = []
    pred = geometry.predict(frames, progress=lambda f, s: events.append((f, s))).validate(5, 40, 56)
    assert pred.extras["chunks"] == [[0, 3], [2, 5]]
    np.testing.assert_allclose(pred.c2w[0], np.eye(4), atol=1e-9)  # world = the first frame's camera
    assert np.isfinite(pred.c2w).all() and (pred.depth >= 0).all() and (pred.conf > 0).all()
    assert any("chunk 2/2" in s for _, s in events) and events[-1][0] == 1.0
    K = np.array([[50.0, 0, 27.5], [0, 50.0, 19.5], [0, 0, 1]])
    assert np.allclose(geometry.predict(frames[:2], K=K).K, K)  # a known K is the answer's


def test_solve_engine_geometry_cli(da3_folder, clip, tmp_path, capsys):
    from backend.__main__ import main

    out = tmp_path / "solve"
    rc = main(["solve", str(clip), "--engine", "geometry", "--model", str(da3_folder), "--resolution", str(RES),
               "--out", str(out)])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert "%]" in printed.out  # progress lines
    b = read_bundle(out)
    assert b.task == "solve" and b.engine == "geometry" and b.frame_count == 4
    assert b.source["geometry"] == {"name": "depth-anything-3", "model_id": str(da3_folder)}
    assert len(b.cameras) == 4 and all(c.c2w is not None for c in b.cameras)
    assert b.depth is not None and b.depth[0].depth.shape == (48, 64)


def test_reconstruct_with_hub_model_cli(da3_folder, clip, tmp_path, capsys):
    from backend.__main__ import main

    out = tmp_path / "rec"
    rc = main(["reconstruct", str(clip), "--model", str(da3_folder), "--resolution", str(RES), "--out", str(out)])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    b = read_bundle(out)
    assert b.task == "reconstruct" and b.engine == "geometry" and b.model_id == str(da3_folder)
    assert len(b.cameras) == 4 and b.depth is not None and len(b.depth) == 4
    assert all(p.dynamic is not None for p in b.points)
    assert "depth-anything-3" in b.scores["message"]


def test_not_a_model_folder_is_refused_clearly(tmp_path, clip, capsys):
    from backend.__main__ import main

    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "config.json").write_text(json.dumps({"hidden_size": 8}))
    (junk / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a geometry model"):
        load_geometry(resolve_model(str(junk)), device="cpu")
    rc = main(["solve", str(clip), "--engine", "geometry", "--model", str(junk), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and "not a geometry model" in err and err.count("\n") == 1
    assert (junk / "notes.txt").read_text() == "mine" and not (tmp_path / "o").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = main(["reconstruct", str(clip), "--model", str(empty), "--out", str(tmp_path / "o2")])
    assert rc == 1 and "not a model folder" in capsys.readouterr().err


def test_loading_a_folder_never_touches_the_network(da3_folder, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("network access while loading a local model folder")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    geometry = load_geometry(resolve_model(str(da3_folder)), device="cpu", resolution=RES)
    frames = (np.random.default_rng(1).random((2, 28, 28, 3)) * 255).astype(np.uint8)
    assert geometry.predict(frames).validate(2, 28, 28).depth.shape == (2, 28, 28)
