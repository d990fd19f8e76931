"""``python -m backend solve``: a bundle on success; one clear line and a non-zero exit on failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pycolmap")

from backend.bundle import read_bundle  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _solve(*args: str):
    return subprocess.run([sys.executable, "-m", "backend", "solve", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def _images(folder: Path, frames) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:04d}.png")
    return folder


def _assert_one_line_error(result, *phrases: str):
    assert result.returncode != 0
    err = result.stderr.strip()
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    for phrase in phrases:
        assert phrase in err, err


def test_solve_errors_are_one_clear_line(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video")
    _assert_one_line_error(_solve(tmp_path / "notes.mp4", "--out", tmp_path / "o"), "not a video")
    _assert_one_line_error(_solve(tmp_path / "nothing.mp4", "--out", tmp_path / "o"), "no such file")
    one = _images(tmp_path / "one", [np.zeros((40, 60, 3), np.uint8)])
    _assert_one_line_error(_solve(one, "--out", tmp_path / "o"), "too few frames")
    blank = _images(tmp_path / "blank", [np.full((40, 60, 3), 60 + 20 * i, np.uint8) for i in range(4)])
    _assert_one_line_error(_solve(blank, "--out", tmp_path / "o", "--quiet"), "no texture")
    _assert_one_line_error(_solve(blank, "--out", tmp_path / "o", "--intrinsics", "1,2"), "--intrinsics")
    assert not (tmp_path / "o").exists()  # no half bundle after a failure


def test_solve_writes_a_valid_bundle_from_a_frame_folder(tmp_path):
    root = next((r / "hololens-000" for r in (REPO.parent / "shared" / "data", Path("/work/shared/data"))
                 if (r / "hololens-000" / "images").is_dir()), None)
    if root is None:
        pytest.skip("hololens-000 not found in ../shared/data or /work/shared/data")
    out = tmp_path / "bundle"
    result = _solve(root / "images", "--out", out, "--max-frames", 6, "--stride", 3, "--mapper", "global", "--zip")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "[  0%] load" and "[100%] done" in lines
    assert any(" frames solved" in line for line in lines) and lines[-1] == f"wrote {out}"
    bundle = read_bundle(out)  # validates every part
    assert (bundle.task, bundle.engine, bundle.frame_count) == ("solve", "colmap", 6)
    assert (bundle.width, bundle.height) == (540, 360)
    assert bundle.source["frame_indices"] == [0, 3, 6, 9, 12, 15]
    assert bundle.scores["registered"] >= 5
    np.testing.assert_allclose(bundle.cameras[bundle.source["world_frame"]].c2w, np.eye(4), atol=1e-9)
    assert (tmp_path / "bundle.zip").is_file()


def test_unified_refuses_bad_input_before_the_model_and_quiet_is_quiet(tmp_path):
    blank = _images(tmp_path / "blank", [np.full((64, 64, 3), 60 + 20 * i, np.uint8) for i in range(4)])
    refused = _solve(blank, "--engine", "unified", "--out", tmp_path / "o")
    _assert_one_line_error(refused, "no texture")
    assert "checkpoint" not in refused.stdout + refused.stderr  # refused before any weights were read
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    clip = _images(tmp_path / "clip", [np.roll(base, 2 * i, axis=1) for i in range(6)])
    result = _solve(clip, "--engine", "unified", "--out", tmp_path / "u", "--quiet", "--no-align", "--no-photometric")
    assert result.returncode == 0, result.stderr
    assert "checkpoint" not in (result.stdout + result.stderr).lower()
    assert result.stdout.splitlines()[0].startswith("6/6 frames solved")
    bundle = read_bundle(tmp_path / "u")
    rows = sum(len(p.xyz) for p in bundle.points)
    assert f"{rows} points" in result.stdout.splitlines()[0]  # the count bundle.json holds
    assert bundle.source["frame_indices"] == list(range(6)) and bundle.source["input"].endswith("clip")
