"""Metrics against hand-computed cases and against evo (ATE / RPE)."""

import math

import numpy as np
import pytest
import torch

from backend.geometry.metrics import ate_rpe, pair_pose_metrics, pairwise_metrics, video_depth_metrics
from backend.geometry.rotations import axis_angle_to_matrix

TOL = 1e-9


def rot(axis, degrees):
    v = torch.tensor(axis, dtype=torch.float64)
    return axis_angle_to_matrix(v / v.norm() * math.radians(degrees))


def pose(R=None, c=(0, 0, 0)):
    T = torch.eye(4, dtype=torch.float64)
    if R is not None:
        T[:3, :3] = R
    T[:3, 3] = torch.tensor(c, dtype=torch.float64)
    return T


def three_frames(angle=10.5):
    gt = torch.stack([pose(c=(0, 0, 0)), pose(c=(1, 0, 0)), pose(c=(2, 0, 0))])
    pred = gt.clone()
    pred[2, :3, :3] = rot((0, 1, 0), angle)  # frame 2 turned about y around its own centre
    return pred, gt


def test_pairwise_hand_case():
    # pairs (0,1): 0/0 deg; (0,2) and (1,2): 10.5 deg rotation, and the relative translation
    # R_2^T (c_i - c_2) turns by the same 10.5 deg.
    pred, gt = three_frames()
    m = pairwise_metrics(pred.numpy(), gt.numpy())
    assert m["pairs"] == 3 and m["registered"] == 3
    assert abs(m["rot_err"] - 21.0 / 3) < 1e-9
    assert abs(m["transl_err"] - 21.0 / 3) < 1e-9
    assert abs(m["RRA@5"] - 1 / 3) < TOL and abs(m["RTA@5"] - 1 / 3) < TOL
    # max errors [0, 10.5, 10.5]: 1/3 below thresholds 1..10, all below 11..30
    assert abs(m["mAA@30"] - (10 / 3 + 20) / 30) < TOL


def test_pairwise_unregistered_frames_fail():
    pred, gt = three_frames()
    pred[1] = float("nan")
    m = pairwise_metrics(pred, gt)
    assert m["registered"] == 2
    assert abs(m["rot_err"] - (180 + 10.5 + 180) / 3) < 1e-9
    assert m["RRA@5"] == 0 and m["RTA@5"] == 0
    assert abs(m["mAA@30"] - (20 / 3) / 30) < TOL  # only pair (0,2), below 11..30


def test_pairwise_invariant_to_similarity_and_perfect():
    g = torch.Generator().manual_seed(0)
    F = 6
    gt = torch.stack([pose(rot(torch.randn(3, generator=g).tolist(), 30 * torch.rand(1, generator=g).item()),
                           torch.randn(3, generator=g).tolist()) for _ in range(F)])
    S = pose(rot((1, 2, 3), 40), (5, -2, 1))
    pred = S @ gt
    pred[:, :3, 3] *= 3.0  # world scale change: directions unchanged
    m = pairwise_metrics(pred, gt)
    assert m["rot_err"] < 1e-6 and m["transl_err"] < 1e-5
    assert m["RRA@5"] == 1 and m["RTA@5"] == 1 and m["mAA@30"] == 1 and m["pairs"] == 15


def test_translation_error_is_sign_invariant():
    # a relative translation pointing backwards is "at 180 deg" but counts as 0 (PoseDiffusion ambiguity)
    gt = torch.stack([pose(c=(0, 0, 0)), pose(c=(1, 0, 0))])
    pred = torch.stack([pose(c=(0, 0, 0)), pose(c=(-1, 0, 0))])
    m = pairwise_metrics(pred, gt)
    assert m["transl_err"] < 1e-6 and m["rot_err"] < 1e-9


def test_pure_rotation_pairs_are_judged_on_rotation_only():
    # frames 0 and 1 share a centre (a pan): their pair has no translation direction; frame 2
    # is moved. The predicted pan is off by 4 deg and frame 2's translation by 10.5 deg.
    gt = torch.stack([pose(c=(0, 0, 0)), pose(rot((0, 0, 1), 20), (0, 0, 0)), pose(c=(1, 0, 0))])
    pred = gt.clone()
    pred[1, :3, :3] = rot((0, 0, 1), 24)
    pred[2, :3, 3] = torch.tensor([math.cos(math.radians(10.5)), math.sin(math.radians(10.5)), 0.0],
                                  dtype=pred.dtype)
    m = pairwise_metrics(pred, gt)
    assert m["pairs"] == 3 and m["translation_pairs"] == 2
    assert abs(m["rot_err"] - 4.0 * 2 / 3) < 1e-6  # pairs (0,1) and (1,2) carry the 4 deg
    # pair (0,2): 10.5 deg; pair (1,2): the direction seen from camera 1, also 10.5 deg
    assert abs(m["transl_err"] - 10.5) < 1e-6
    # max errors [4 (rotation only), 10.5, 10.5]
    assert abs(m["mAA@30"] - ((30 - 4) / 3 + 2 * 20 / 3) / 30) < TOL
    # perfect poses of a static clip score 1, not the 90 deg of an undefined direction
    still = torch.stack([pose(c=(0, 0, 0))] * 4)
    assert pairwise_metrics(still, still)["mAA@30"] == 1.0


def test_pair_pose_hand_case():
    r_deg = [3.5, 10.5, 20.5, 40.5]
    t_deg = [2.5, 170.5, 25.5, 60.5]  # 170.5 deg is 9.5 deg sign-invariantly
    axes = [(1, 0, 0), (0, 1, 0), (1, 1, 0), (0, 1, 1)]
    R_gt = torch.eye(3, dtype=torch.float64).expand(4, 3, 3)
    t_gt = torch.tensor([[0, 0, 1.0]] * 4, dtype=torch.float64)
    R_pred = torch.stack([rot(a, d) for a, d in zip(axes, r_deg)])
    t_pred = torch.stack([rot((1, 0, 0), d) @ t_gt[0] for d in t_deg]) * 7.0
    m = pair_pose_metrics(R_pred.numpy(), t_pred.numpy(), R_gt.numpy(), t_gt.numpy())
    assert abs(m["MRE"] - np.mean(r_deg)) < 1e-9
    assert abs(m["MTE"] - np.mean([2.5, 9.5, 25.5, 60.5])) < 1e-9
    assert (m["R_acc@5"], m["R_acc@15"], m["R_acc@30"]) == (0.25, 0.5, 0.75)
    assert (m["t_acc@5"], m["t_acc@15"], m["t_acc@30"]) == (0.25, 0.5, 0.75)
    # max(r, t) = [3.5, 10.5, 25.5, 60.5]
    assert abs(m["AUC@30"] - (7 * 0.25 + 15 * 0.5 + 5 * 0.75) / 30) < TOL
    # a missing prediction fails
    R_pred[0] = float("nan")
    m2 = pair_pose_metrics(R_pred, t_pred, R_gt, t_gt)
    assert abs(m2["MRE"] - (180 + 10.5 + 20.5 + 40.5) / 4) < 1e-9 and m2["R_acc@5"] == 0


def test_ate_rpe_hand_case_unaligned():
    gt = torch.stack([pose(c=(0, 0, 0)), pose(c=(1, 0, 0)), pose(c=(2, 0, 0))])
    pred = gt.clone()
    pred[1, 1, 3] = 0.1
    pred[2, :3, :3] = rot((0, 0, 1), 2.0)
    m = ate_rpe(pred, gt, align=False)
    assert abs(m["ATE"] - 0.1 / math.sqrt(3)) < 1e-12
    assert abs(m["RPE_T"] - 0.1) < 1e-12  # both steps off by 0.1
    assert abs(m["RPE_R"] - math.sqrt(2.0)) < 1e-9  # steps 0 and 2 deg -> rmse sqrt(4 / 2)


def test_ate_rpe_similarity_invariant():
    g = torch.Generator().manual_seed(1)
    gt = torch.stack([pose(rot(torch.randn(3, generator=g).tolist(), 20), torch.randn(3, generator=g).tolist())
                      for _ in range(8)])
    S = pose(rot((1, 0, 1), 70), (1, 2, 3))
    pred = S @ gt
    pred[:, :3, 3] *= 0.3
    m = ate_rpe(pred, gt)
    assert m["ATE"] < 1e-9 and m["RPE_T"] < 1e-9 and m["RPE_R"] < 1e-5


def test_ate_rpe_matches_evo():
    evo_traj = pytest.importorskip("evo.core.trajectory")
    from evo import main_ape, main_rpe
    from evo.core.metrics import PoseRelation, Unit

    rng = np.random.default_rng(3)
    F = 20
    gt = []
    for f in range(F):
        T = pose(rot((0.1, 1, 0.2), 3 * f), (0.3 * f, 0.05 * f ** 1.5, np.sin(f / 3)))
        gt.append(T)
    gt = torch.stack(gt)
    noise = torch.stack([pose(rot(rng.normal(size=3).tolist(), rng.uniform(0, 4)), (0.05 * rng.normal(size=3)).tolist())
                         for _ in range(F)])
    pred = pose(rot((1, 1, 1), 50), (3, 1, 2)) @ (gt @ noise)
    pred[:, :3, 3] *= 2.5
    ours = ate_rpe(pred.numpy(), gt.numpy())

    def traj(T):
        return evo_traj.PoseTrajectory3D(poses_se3=[t for t in T.numpy()], timestamps=np.arange(F, dtype=float))

    ape = main_ape.ape(traj(gt), traj(pred), PoseRelation.translation_part, align=True, correct_scale=True)
    kw = dict(delta=1, delta_unit=Unit.frames, rel_delta_tol=0.01, all_pairs=True, align=True, correct_scale=True)
    rpe_t = main_rpe.rpe(traj(gt), traj(pred), PoseRelation.translation_part, **kw)
    rpe_r = main_rpe.rpe(traj(gt), traj(pred), PoseRelation.rotation_angle_deg, **kw)
    assert ours["ATE"] > 1e-3  # a non-trivial case
    assert abs(ours["ATE"] - ape.stats["rmse"]) < 1e-8
    assert abs(ours["RPE_T"] - rpe_t.stats["rmse"]) < 1e-8
    assert abs(ours["RPE_R"] - rpe_r.stats["rmse"]) < 1e-6


def test_video_depth_hand_cases():
    gt = np.ones((1, 2, 2))
    pred = np.array([[[1.0, 1.0], [1.0, 2.0]]])
    # L1 scale: pred-weighted median of gt/pred = [1,1,1,.5] weights [1,1,1,2] -> 1
    m = video_depth_metrics(pred, gt, align="scale")
    assert abs(m["scale"] - 1) < 1e-12
    assert abs(m["abs_rel"] - 0.25) < 1e-12 and abs(m["delta1.25"] - 0.75) < 1e-12
    # scale and shift in L1: exact on four points, the fifth (no leverage) a gt outlier; the
    # L1 optimality condition holds there (the outlier's subgradient is spanned by the others).
    gt = np.array([1.0, 2, 3, 4, 50])
    pred = 0.5 * np.array([1.0, 2, 3, 4, 5]) - 3.0
    m = video_depth_metrics(torch.tensor(pred), torch.tensor(gt), align="scale_shift")
    assert abs(m["scale"] - 2) < 1e-6 and abs(m["shift"] - 6) < 1e-6
    assert abs(m["abs_rel"] - 45 / 50 / 5) < 1e-6 and abs(m["delta1.25"] - 0.8) < 1e-9
    # a mask drops the outlier; scale-only alignment of an exactly scaled clip is perfect
    mask = np.array([1, 1, 1, 1, 0], bool)
    gt[4] = 5.0
    m = video_depth_metrics(3 * gt + 100 * (~mask), gt, mask=mask, align="scale")
    assert m["pixels"] == 4 and m["abs_rel"] < 1e-12 and m["delta1.25"] == 1
    # invalid gt (0) is ignored; no alignment: abs_rel of 10% too deep everywhere is 0.1
    m = video_depth_metrics(np.array([1.1, 2.2, 5.0]), np.array([1.0, 2.0, 0.0]), align="none")
    assert m["pixels"] == 2 and abs(m["abs_rel"] - 0.1) < 1e-12 and m["delta1.25"] == 1
