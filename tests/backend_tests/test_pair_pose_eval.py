"""``eval pair-pose``: scoring every method from one run, the classical two-view peer, the
hololens pair selection and the command's argument checks."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from backend.eval.pair_pose import EvalPair, classical_pose, pose_errors, score_pair, summarise

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rot_y(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    T = np.eye(4)
    T[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    T[:3, 3] = [1.0, 0, 0]
    return T


def test_score_pair_derives_every_method_from_one_run():
    gt = rot_y(60)
    pair = EvalPair("p", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), np.eye(3), gt)
    # three videos: medoids at 10, 55 and 40 deg; the pipeline chose video 2
    cands = [SimpleNamespace(poses=np.stack([rot_y(a)] * 3), medoid=0, d_med=d)
             for a, d in ((10, 1.0), (55, 9.0), (40, 2.0))]
    result = SimpleNamespace(pair_T=rot_y(5), T=rot_y(40), candidates=cands,
                             scores={"d_total": 30.0, "top_agreement": 20.0, "reliability": "medium"})
    row = score_pair(pair, result, seed=0)
    e = row["errors"]
    assert e["interpose"][0] == pytest.approx(20, abs=1e-6) and e["pair-only"][0] == pytest.approx(55, abs=1e-6)
    assert e["oracle-video"][0] == pytest.approx(5, abs=1e-6)  # video 1 is closest to the truth
    assert e["interpose-dmed"][0] == pytest.approx(50, abs=1e-6)  # lowest D_med alone: video 0
    assert min(abs(e["random-video"][0] - x) for x in (50, 5, 20)) < 1e-6
    assert sorted(row["curve"]) == [1, 2, 3] and row["oracle_curve"][1][0] == pytest.approx(50, abs=1e-6)
    failed = score_pair(pair, None)  # the pipeline found no pose at all: a failure for each method
    assert failed["errors"]["interpose"] == (180.0, 180.0)
    s = summarise([(1.0, 2.0), (10.0, 40.0), (180.0, 180.0)])
    assert s["MRE"] == pytest.approx(191 / 3) and s["acc@5"] == pytest.approx(1 / 3)
    assert s["acc@30"] == pytest.approx(1 / 3) and s["R_acc@30"] == pytest.approx(2 / 3) and s["pairs"] == 3


def test_classical_two_view_solve_on_an_overlapping_pair():
    from backend.data.splits import heldout_seeds
    from backend.data.synth import render_batch

    b = render_batch(heldout_seeds(1, start=1), frames=16, height=160, width=160, dynamic=False, motion="dolly+pan")
    c2w = b.c2w[0].double().numpy()
    T_gt = np.linalg.inv(np.linalg.inv(c2w[0]) @ c2w[15])
    T = classical_pose(b.rgb[0, 0].numpy(), b.rgb[0, 15].numpy(), b.K[0, 0].double().numpy())
    r, t = pose_errors(T, T_gt)
    assert r < 2 and t < 5  # 0.3 and 1.2 deg on this clip
    flat = np.full((64, 64, 3), 128, np.uint8)
    assert not np.isfinite(classical_pose(flat, flat, np.eye(3))).any()  # nothing to match: no pose


def test_hololens_pairs_are_wide(tmp_path):
    from backend.eval.datasets import find_hololens
    from backend.eval.pair_pose import HOLOLENS_COVIS, HOLOLENS_MIN_ROTATION, hololens_pairs

    if find_hololens() is None:
        pytest.skip("hololens-000 is not in ../shared/data")
    p = next(hololens_pairs(1))
    assert p.info["rotation_deg"] >= HOLOLENS_MIN_ROTATION
    assert HOLOLENS_COVIS[0] <= p.info["covisibility"] < HOLOLENS_COVIS[1]
    assert p.a.shape == (360, 540, 3) and np.isfinite(p.T_gt).all()


def test_eval_command_checks_its_arguments(capsys):
    from backend.__main__ import main

    assert main(["eval", "pair-pose", "--pairs", "0"]) == 2
    assert "--pairs" in capsys.readouterr().err
    assert main(["eval", "pair-pose", "--data", "hololens", "--real-video", "--pairs", "1", "--videos", "0"]) == 2
    assert "--real-video" in capsys.readouterr().err
