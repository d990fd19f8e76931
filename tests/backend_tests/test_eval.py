"""``python -m backend eval``: V2C table (real engines, and an oracle that checks the plumbing),
T2V+C self-consistency, contact sheet, argument errors."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from backend.__main__ import main
from backend.bundle import Bundle, CameraFrame
from backend.engines import ENGINES, EngineSpec
from backend.engines.options import EngineOptions

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FRAMES, SIZE = 8, 64  # small held-out clips for the oracle tests


def _key(frames) -> str:
    return hashlib.sha1(np.ascontiguousarray(np.asarray(frames, dtype=np.uint8)).tobytes()).hexdigest()


def _rot(axis, deg):
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(np.radians(deg) * np.asarray(axis, float) / np.linalg.norm(axis)).as_matrix()


class OracleEngine:
    """Test-only engine: looks the clip up by its pixels in ``truth`` (filled by the test from an
    independent rendering or reading) and returns the true cameras in a random similarity world
    (pairwise metrics must not care), optionally with frame 3 rotated by 45 deg about its own
    axis and frame 5 left unregistered (``degrade``)."""

    name = "oracle"
    truth: dict = {}
    degrade = False

    def solve(self, frames, progress=None, **options):
        frames = np.stack([np.asarray(f) for f in frames])
        c2w = np.array(self.truth[_key(frames)], dtype=np.float64)  # KeyError: eval gave other frames
        rng = np.random.default_rng(len(self.truth))
        Rw, s, t = _rot(rng.normal(size=3), 70.0), 3.7, rng.normal(size=3)
        out = np.repeat(np.eye(4)[None], len(c2w), 0)
        out[:, :3, :3] = Rw @ c2w[:, :3, :3]
        out[:, :3, 3] = s * c2w[:, :3, 3] @ Rw.T + t
        if self.degrade:
            out[3, :3, :3] = out[3, :3, :3] @ _rot([1, 2, 0.5], 45.0)
        n, (H, W) = len(out), frames.shape[1:3]
        cams = [CameraFrame(i, None if (self.degrade and i == 5) else out[i], 1.0 * W, 1.0 * W, (W - 1) / 2, (H - 1) / 2)
                for i in range(n)]
        return Bundle(task="solve", width=W, height=H, frame_count=n, engine=self.name, cameras=cams)


class DegradedOracle(OracleEngine):
    name = "oracle-degraded"
    degrade = True


@pytest.fixture
def oracles(monkeypatch):
    """Register the two oracles in the engine registry, for the test only."""
    for cls in (OracleEngine, DegradedOracle):
        monkeypatch.setitem(ENGINES, cls.name, EngineSpec(cls.name, "test-only oracle", lambda cls=cls: cls,
                                                          EngineOptions))
    truth = {}
    monkeypatch.setattr(OracleEngine, "truth", truth)
    return truth


def _heldout_truth(n):
    """Independent rendering of the first n held-out clips: pixels -> true c2w."""
    from backend.data.splits import heldout_seeds
    from backend.data.synth import render_batch

    b = render_batch(heldout_seeds(n), frames=FRAMES, height=SIZE, width=SIZE)
    return {_key(b.rgb[i].numpy()): b.c2w[i].double().numpy() for i in range(n)}, b


def _check_oracle_rows(res):
    perfect, bad = res["engines"]["oracle"]["summary"], res["engines"]["oracle-degraded"]["summary"]
    # Ground-truth cameras (in another similarity world): every figure perfect.
    assert perfect["mAA@30"] == pytest.approx(1.0, abs=1e-12)
    assert perfect["RRA@5"] == 1.0 and perfect["registered"] == 1.0
    assert perfect["rot_err"] < 1e-4
    assert math.isnan(perfect["transl_err"]) or perfect["transl_err"] < 1e-3
    # Degraded: of the 28 pairs of 8 frames, 7 hold the unregistered frame 5 (180 deg each) and
    # 6 more hold frame 3 (exactly 45 deg of rotation error): 15 pairs stay perfect.
    assert bad["registered"] == pytest.approx(7 / 8)
    assert bad["RRA@5"] == pytest.approx(15 / 28)
    assert bad["mAA@30"] == pytest.approx(15 / 28)
    assert bad["rot_err"] == pytest.approx((7 * 180 + 6 * 45) / 28, abs=1e-6)


def test_v2c_oracle_gets_perfect_scores_on_heldout_and_bundle_folders(oracles, tmp_path, capsys):
    """Plumbing: the frames an engine gets are the clip whose cameras it is scored against, in order,
    for in-memory held-out clips and for a folder of clip bundles (the Cycles set's format)."""
    truth, _ = _heldout_truth(2)
    oracles.update(truth)
    common = ["--engines", "oracle,oracle-degraded", "--clips", "2", "--device", "cpu"]
    out = tmp_path / "heldout.json"
    assert main(["eval", "v2c", "--data", "heldout", "--frames", str(FRAMES), "--size", str(SIZE),
                 "--textures", "none", "--json", str(out), *common]) == 0
    res = json.loads(out.read_text())
    _check_oracle_rows(res)
    assert [r["seed"] for r in res["engines"]["oracle"]["rows"]] == [1_000_000_000, 1_000_000_001]
    table = capsys.readouterr().out
    assert "| oracle | 0.00 |" in table and "| 100.00% |" in table

    # The same clips written as bundles by `synth --split heldout --out` (PNG frames, gt/ npz),
    # the format tools.cycles_set writes, read back through --data cycles --root.
    root = tmp_path / "set"
    assert main(["synth", "--split", "heldout", "--count", "2", "--frames", str(FRAMES), "--height", str(SIZE),
                 "--width", str(SIZE), "--out", str(root)]) == 0
    out2 = tmp_path / "folder.json"
    assert main(["eval", "v2c", "--data", "cycles", "--root", str(root), "--json", str(out2), *common]) == 0
    _check_oracle_rows(json.loads(out2.read_text()))


def test_v2c_oracle_on_hololens_windows(oracles, tmp_path):
    from backend.eval.datasets import find_hololens, load_hololens
    from backend.io_video import read_frames

    root = find_hololens()
    if root is None:
        pytest.skip("hololens-000 not in ../shared/data")
    files, c2w, _ = load_hololens(root)
    for stride in (1, 2):  # the first two windows: start 0, strides 1 and 2, 16 frames
        idx = list(range(0, 16 * stride, stride))
        oracles[_key(read_frames([files[i] for i in idx]).frames)] = c2w[idx]
    out = tmp_path / "h.json"
    assert main(["eval", "v2c", "--engines", "oracle", "--data", "hololens", "--clips", "2", "--known-k",
                 "--json", str(out)]) == 0
    s = json.loads(out.read_text())["engines"]["oracle"]["summary"]
    assert s["mAA@30"] == pytest.approx(1.0) and s["clips"] == 2 and s["registered"] == 1.0


def test_v2c_unified_and_colmap_on_two_heldout_clips(tmp_path, capsys):
    out = tmp_path / "v2c.json"
    assert main(["eval", "v2c", "--engines", "unified,colmap", "--data", "heldout", "--clips", "2",
                 "--frames", "8", "--size", "128", "--textures", "none", "--device", "cpu", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| unified |") or line.startswith("| colmap |")]
    assert len(rows) == 2
    for line in rows:  # rot, transl, RRA, RTA, mAA, registered, s/clip: numbers
        cells = [c.strip().rstrip("%") for c in line.strip("|").split("|")][1:8]
        assert all(math.isfinite(float(c)) for c in cells), line
    res = json.loads(out.read_text())
    assert set(res["engines"]) == {"unified", "colmap"}
    for name, r in res["engines"].items():
        s = r["summary"]
        assert s["clips"] == 2 and len(r["rows"]) == 2
        for k in ("rot_err", "transl_err", "RRA@5", "RTA@5", "mAA@30", "registered", "s_per_clip"):
            assert s[k] is not None and math.isfinite(s[k]), (name, k)
        assert 0 <= s["mAA@30"] <= 1 and 0 <= s["registered"] <= 1 and s["s_per_clip"] > 0
        assert all(row["metrics"]["pairs"] == 28 for row in r["rows"])
    # Both engines saw the same clips.
    assert [x["seed"] for x in res["engines"]["unified"]["rows"]] == [x["seed"] for x in res["engines"]["colmap"]["rows"]]


def test_t2vc_two_videos(tmp_path):
    from backend.data.splits import heldout_seeds
    from backend.data.synth import render_batch

    out = tmp_path / "t2vc.json"
    assert main(["eval", "t2vc", "--videos", "2", "--steps", "2", "--frames", "4", "--device", "cpu",
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    captions = render_batch(heldout_seeds(2), frames=16, height=64, width=64).captions
    assert [r["caption"] for r in res["rows"]] == captions  # the engine's held-out captions
    for r in res["rows"]:
        assert r["forwards"] == 2  # cameras came from the 2 denoising passes, no extra one
        assert 0 <= r["metrics"]["rot_err"] <= 180 and 0 <= r["metrics"]["transl_err"] <= 90
        assert r["metrics"]["pairs"] == 6 and r["t2vc_s"] > 0 and r["v2c_s"] > 0
    s = res["summary"]
    assert s["videos"] == 2
    assert s["rot_diff"] == pytest.approx(np.mean([r["metrics"]["rot_err"] for r in res["rows"]]))
    assert s["transl_diff"] == pytest.approx(np.mean([r["metrics"]["transl_err"] for r in res["rows"]]))


def test_contact_sheet_two_prompts(tmp_path):
    from PIL import Image

    from backend.eval.contact_sheet import sheet_prompts

    png = tmp_path / "sheet.png"
    assert main(["eval", "contact-sheet", "--prompts", "2", "--steps", "1", "--frames", "4", "--frames-shown", "3",
                 "--out", str(png), "--device", "cpu"]) == 0
    im = np.asarray(Image.open(png).convert("RGB"))
    # 3 frames of 64 px upscaled 2x with 4 px gaps; per row 128 px of frames + 3 text lines of 15 px + gaps.
    assert im.shape == (4 + 2 * (128 + 3 * 15 + 4 + 4), 4 + 3 * (128 + 4), 3)
    text_band = im[4 + 128:4 + 128 + 45]
    assert (text_band.min(axis=-1) < 100).sum() > 200  # the prompt is written under the row
    assert (im[4:132, 4:132] != 255).any()  # a frame is there
    prompts = sheet_prompts(8)
    assert len(set(prompts)) == 8 and all(p.split()[0] in ("the", "a") for p in prompts)


@pytest.mark.parametrize("argv, message", [
    (["v2c", "--engines", "nope"], "unknown engine"),
    (["v2c", "--data", "cycles"], "tools.cycles_set"),
    (["v2c", "--data", "cycles", "--root", "/nonexistent"], "no clip_<seed>"),
    (["v2c", "--option", "colmap:mapper"], "KEY=VALUE"),
    (["v2c", "--engines", "colmap", "--option", "unified:align=false"], "not among"),
    (["v2c", "--clips", "0", "--engines", "colmap"], "--clips"),
    (["v2c", "--clips", "1", "--frames", "3", "--size", "32", "--engines", "colmap", "--textures", "none",
      "--option", "colmap:no_such_option=1"], "unexpected keyword"),
    (["contact-sheet", "--out", "sheet.jpg"], "PNG"),
    (["t2vc", "--model", "/no/such/checkpoint"], "no such folder"),
    (["v2c", "--data", "hololens", "--root", "/nonexistent"], "not found"),
])
def test_bad_arguments_fail_with_a_message(argv, message, capsys):
    assert main(["eval", *argv, "--device", "cpu"]) == 2
    assert message in capsys.readouterr().err


def test_cuda_requested_without_cuda_is_an_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is here")
    assert main(["eval", "v2c", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
