"""Camera utilities, Procrustes, focal and PnP on synthetic ground truth."""

import pytest
import torch

from backend.geometry import cameras as C
from backend.geometry.focal import estimate_focal
from backend.geometry.pnp import pose_from_pointmap_pnp
from backend.geometry.procrustes import pose_from_pointmaps, robust_umeyama, umeyama
from backend.geometry.rotations import axis_angle_to_matrix, deg, matrix_to_quat, quat_to_matrix, relative_rotation_angle
from backend_tests.synthetic_geometry import corrupt, make_clip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_rotation_conversions_round_trip():
    g = torch.Generator().manual_seed(0)
    R = axis_angle_to_matrix(torch.randn(64, 3, generator=g, dtype=torch.float64) * 2)
    assert torch.allclose(quat_to_matrix(matrix_to_quat(R)), R, atol=1e-12)
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(64, 3, 3), atol=1e-12)


def test_camera_round_trips():
    clip = make_clip(4, 24, 32, seed=1)
    c2w, K, depth = clip["c2w"], clip["K"], clip["depth"]
    assert torch.allclose(C.invert_pose(C.c2w_to_w2c(c2w)), c2w, atol=1e-12)
    assert torch.allclose(C.c2w_to_w2c(c2w) @ c2w, torch.eye(4, dtype=c2w.dtype).expand_as(c2w), atol=1e-12)
    # OpenCV -> OpenGL: the camera looks down -z, y up; the flip is its own inverse
    gl = C.opencv_to_opengl(c2w)
    assert torch.allclose(gl[:, :3, 2], -c2w[:, :3, 2]) and torch.allclose(C.opengl_to_opencv(gl), c2w)
    # depth -> world point map -> project back: pixels and depth reproduce exactly
    Xw = C.depth_to_pointmap(depth, K, c2w)
    uv, z = C.project_world(Xw.reshape(4, -1, 3), c2w, K)
    grid = C.pixel_grid(24, 32, dtype=c2w.dtype).reshape(-1, 2)
    assert torch.allclose(uv, grid.expand_as(uv), atol=1e-9)
    assert torch.allclose(C.pointmap_to_depth(Xw, c2w), depth, atol=1e-9)
    assert torch.allclose(z.reshape(depth.shape), depth, atol=1e-9)


def test_intrinsics_resize_and_crop():
    K = C.intrinsics_matrix(100.0, 110.0, 31.5, 23.5)  # 64 x 48 image, centred
    X = torch.tensor([[[0.3, -0.2, 2.0], [-1.0, 0.5, 3.0]]], dtype=torch.float64)
    uv, _ = C.project(X, K[None])
    # halving the image: pixel u maps to (u + 0.5) / 2 - 0.5, and the centre stays the centre
    K2 = C.resize_intrinsics(K, 0.5)
    uv2, _ = C.project(X, K2[None])
    assert torch.allclose(uv2, (uv + 0.5) * 0.5 - 0.5, atol=1e-12)
    assert abs(K2[0, 2] - 15.5) < 1e-12 and abs(K2[1, 2] - 11.5) < 1e-12
    K3 = C.crop_intrinsics(K, 10, 4)
    uv3, _ = C.project(X, K3[None])
    assert torch.allclose(uv3, uv - torch.tensor([10.0, 4.0], dtype=torch.float64), atol=1e-12)


def test_umeyama_exact_and_weighted():
    g = torch.Generator().manual_seed(2)
    src = torch.randn(3, 100, 3, generator=g, dtype=torch.float64)
    R = axis_angle_to_matrix(torch.randn(3, 3, generator=g, dtype=torch.float64))
    s, t = torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64), torch.randn(3, 3, generator=g, dtype=torch.float64)
    dst = s[:, None, None] * src @ R.transpose(-1, -2) + t[:, None]
    s2, R2, t2 = umeyama(src, dst)  # batched
    assert torch.allclose(s2, s, atol=1e-10) and torch.allclose(R2, R, atol=1e-10) and torch.allclose(t2, t, atol=1e-10)
    # zero weights ignore corrupted points exactly
    bad = dst.clone()
    bad[:, :30] += 5.0
    w = torch.ones(3, 100, dtype=torch.float64)
    w[:, :30] = 0
    s3, R3, t3 = umeyama(src, bad, w)
    assert torch.allclose(R3, R, atol=1e-10) and torch.allclose(s3, s, atol=1e-10)
    # and the robust version finds the same from unit weights
    s4, R4, t4, wr = robust_umeyama(src, bad)
    assert deg(relative_rotation_angle(R4, R)).max() < 1e-3 and torch.allclose(s4, s, rtol=1e-4)
    assert wr[:, :30].max() < 0.01 and wr[:, 30:].min() > 0.99


def _noisy_frame(seed=3, rel_noise=0.01, outliers=0.2):
    """Frame 5 of a clip: its own-camera point map and its map in frame 0's camera (scaled)."""
    clip = make_clip(6, 96, 128, focal=150.0, seed=seed)
    g = torch.Generator().manual_seed(seed)
    f = 5
    scale = 0.37  # a network's pair prediction comes at its own scale
    X_self, _ = corrupt(clip["X_cam"][f], rel_noise, outliers, g)
    X_ref, _ = corrupt(scale * clip["X_world"][f], rel_noise, outliers, g)
    return clip, f, scale, X_self, X_ref


def test_focal_from_noisy_pointmap_with_outliers():
    # 1% relative Gaussian noise and 20% outliers; tolerance: focal within 1.5%
    clip, f, _, X_self, _ = _noisy_frame()
    focal = estimate_focal(X_self)
    assert abs(focal / clip["focal"] - 1) < 0.015, float(focal)
    # the plain least-squares start alone is visibly worse (why Weiszfeld is there)
    f0 = estimate_focal(X_self, n_iters=0)
    assert abs(focal / clip["focal"] - 1) < abs(f0 / clip["focal"] - 1)


def test_pose_from_pointmaps_procrustes_with_outliers():
    # both maps: 1% noise, 20% outliers (36% of pixels bad in one or the other).
    # tolerance: rotation < 0.3 deg, centre within 1% of the mean depth, scale within 2%
    clip, f, scale, X_self, X_ref = _noisy_frame()
    c2w, s = pose_from_pointmaps(X_self, X_ref)
    gt = clip["c2w"][f]
    assert deg(relative_rotation_angle(c2w[:3, :3], gt[:3, :3])) < 0.3
    assert (c2w[:3, 3] / scale - gt[:3, 3]).norm() < 0.01 * clip["depth"][f].mean()
    assert abs(s / scale - 1) < 0.02


def test_pose_from_pointmap_pnp_ransac_with_outliers():
    # PnP-RANSAC with the focal estimated from the own-camera map. Noise 0.3% (not 1%): this camera
    # faces a wall 5 m away with a 46 deg field of view, where rotation and sideways translation
    # trade off (at 1% noise the rotation error is ~1.5 deg for any PnP; Procrustes is unaffected).
    # 20% outliers. Tolerance: rotation < 0.5 deg, centre within 2% of the mean depth.
    clip, f, scale, X_self, X_ref = _noisy_frame(rel_noise=0.003)
    focal = float(estimate_focal(X_self))
    K = C.intrinsics_matrix(focal, focal, 63.5, 47.5)
    c2w, inlier_frac = pose_from_pointmap_pnp(X_ref, K)
    gt = clip["c2w"][f]
    assert c2w is not None and 0.3 < inlier_frac < 0.85  # 80% good points, less those whose noise exceeds the threshold
    assert deg(relative_rotation_angle(c2w[:3, :3], gt[:3, :3])) < 0.5
    assert (c2w[:3, 3] / scale - gt[:3, 3]).norm() < 0.02 * clip["depth"][f].mean()
