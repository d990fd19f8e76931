"""Geo4D alignment terms and InterPose selection against hand-computed cases."""

import math

import torch

from backend.geometry.geo4d import (disparity_alignment_loss, fit_disparity_scale_shift, fit_trajectory_sim3,
                                    trajectory_alignment_loss, trajectory_smoothness_loss, window_is_reliable)
from backend.geometry.interpose import distance_matrix, frame_subsets, medoid, pose_distance, select_video, total_distance
from backend.geometry.rotations import axis_angle_to_matrix, make_transform
from backend_tests.synthetic_geometry import make_clip


def rz(degrees, t=(1.0, 0.0, 0.0)):
    R = axis_angle_to_matrix(torch.tensor([0, 0, math.radians(degrees)], dtype=torch.float64))
    return make_transform(R, torch.tensor(t, dtype=torch.float64))


def test_disparity_scale_shift_fit_and_loss():
    clip = make_clip(3, 12, 16, seed=0)
    disp = 1 / clip["depth"]
    pred = (disp - 0.05) / 2.5  # what a scale/shift-invariant head might output
    mask = torch.ones_like(pred)
    mask[:, :2] = 0
    pred_bad = pred.clone()
    pred_bad[:, :2] = 99.0  # masked pixels must not matter
    s, b = fit_disparity_scale_shift(pred_bad, disp, mask)  # one fit per frame
    assert torch.allclose(s, torch.full_like(s, 2.5), atol=1e-9) and torch.allclose(b, torch.full_like(b, 0.05), atol=1e-9)
    assert disparity_alignment_loss(clip["depth"], pred_bad, s, b, mask) < 1e-9
    # hand case: a constant 0.1 disparity offset gives an L1 loss of 0.1
    assert abs(disparity_alignment_loss(clip["depth"], pred, s, b + 0.1) - 0.1) < 1e-9


def test_trajectory_sim3_fit_and_loss():
    clip = make_clip(8, 8, 8, seed=4)
    glob = clip["c2w"]
    R = axis_angle_to_matrix(torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64))
    s, t = 0.4, torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    # a window's cameras = the global ones seen through the inverse similarity
    win = glob[2:6].clone()
    win[:, :3, :3] = R.T @ glob[2:6, :3, :3]
    win[:, :3, 3] = ((glob[2:6, :3, 3] - t) @ R) / s
    s2, R2, t2 = fit_trajectory_sim3(win, glob[2:6])
    assert abs(s2 - s) < 1e-9 and torch.allclose(R2, R, atol=1e-9) and torch.allclose(t2, t, atol=1e-9)
    frames = torch.arange(2, 6)[None]
    loss = trajectory_alignment_loss(glob, win[None], frames, s2[None], R2[None], t2[None])
    assert loss < 1e-9
    # hand case: shifting the global trajectory by 0.3 gives a centre error of 0.3 on every frame
    moved = glob.clone()
    moved[:, 0, 3] += 0.3
    loss = trajectory_alignment_loss(moved, win[None], frames, s2[None], R2[None], t2[None])
    assert abs(loss - 0.3) < 1e-9
    assert window_is_reliable(0.9, win, glob[2:6]) and not window_is_reliable(0.2, win, glob[2:6])


def test_trajectory_smoothness_hand_case():
    static = torch.stack([rz(0, (0, 0, 0))] * 4)
    assert trajectory_smoothness_loss(static) < 1e-12
    # three frames: a 90 deg turn (|Rz(90) - I|_F = 2) then a unit step along the new x axis
    traj = torch.stack([rz(0, (0, 0, 0)), rz(90, (0, 0, 0)), rz(90, (0, 1, 0))])
    assert abs(trajectory_smoothness_loss(traj) - (2.0 + 1.0)) < 1e-12


def test_pose_distance_hand_case():
    T1 = rz(0, (0, 0, 1))
    T2 = make_transform(axis_angle_to_matrix(torch.tensor([math.radians(10), 0, 0], dtype=torch.float64)),
                        torch.tensor([0, math.sin(math.radians(20)), -math.cos(math.radians(20))], dtype=torch.float64))
    # rotation 10 deg; translation 160 deg apart = 20 deg sign-invariantly
    assert abs(float(pose_distance(T1, T2)) - 30.0) < 1e-9


def test_medoid_total_distance_and_selection():
    angles = [0, 1, 3, 4, 40]
    poses = torch.stack([rz(a) for a in angles])
    D = distance_matrix(poses)
    assert abs(D[0, 4] - 40) < 1e-9 and abs(D[2, 3] - 1) < 1e-9
    i, d_med = medoid(poses)  # mean distances 48/4, 45/4, 43/4, 44/4, 148/4
    assert i == 2 and abs(d_med - 43 / 4) < 1e-9
    i, d_med, d_total = total_distance(poses, rz(10))
    assert abs(d_total - (43 / 4 + 7)) < 1e-9
    tight = torch.stack([rz(a) for a in (10, 10.5, 11)])  # medoid 10.5, D_med 0.5, D_total 1.0
    sel = select_video([poses, tight], rz(10))
    assert sel.video == 1 and torch.allclose(sel.pose, rz(10.5)) and abs(sel.d_total[1] - 1.0) < 1e-9


def test_frame_subsets():
    subsets = frame_subsets(25, k=5, n_random=10, seed=0)
    assert len(subsets) == 11 and subsets[-1] == [0, 6, 12, 18, 24]
    for s in subsets:
        assert len(set(s)) == 5 and s[0] == 0 and s[-1] == 24 and s == sorted(s)
