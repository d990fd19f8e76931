"""Camera conventions and pinhole maths (DESIGN section 2).

Conventions: OpenCV camera axes (x right, y down, z forward); ``c2w`` maps camera to world,
``w2c`` its inverse; intrinsics in pixels with pixel centres at integer coordinates (the
top-left pixel's centre is (0, 0)). All functions are batched over leading dimensions and
work on CPU and CUDA tensors; they keep the input dtype.
"""

from __future__ import annotations

import torch

# OpenCV (y down, z forward) <-> OpenGL / Blender camera (y up, looking down -z). Self-inverse.
CV_TO_GL = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


# ---------------------------------------------------------------------------------------------
# Extrinsics


def invert_pose(T: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid (..., 4, 4) transforms, in closed form (R^T, -R^T t)."""
    R, t = T[..., :3, :3], T[..., :3, 3:]
    Rt = R.transpose(-1, -2)
    out = torch.zeros_like(T)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    out[..., 3, 3] = 1
    return out


c2w_to_w2c = invert_pose
w2c_to_c2w = invert_pose


def opencv_to_opengl(c2w: torch.Tensor) -> torch.Tensor:
    """OpenCV-axes c2w -> OpenGL/Blender-axes c2w (same world): c2w @ diag(1, -1, -1, 1)."""
    return c2w @ CV_TO_GL.to(c2w)


opengl_to_opencv = opencv_to_opengl  # the axis flip is its own inverse


def relative_to_first(c2w: torch.Tensor) -> torch.Tensor:
    """Re-express (F, 4, 4) c2w in the first camera's frame (the bundle's world convention)."""
    return invert_pose(c2w[:1]) @ c2w


def transform_points(T: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Apply (..., 4, 4) transforms to points (..., N, 3) (or (..., H, W, 3) with T (..., 4, 4))."""
    shape = X.shape
    Xf = X.reshape(T.shape[:-2] + (-1, 3))  # X's leading dims must start with T's batch dims
    out = Xf @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]
    return out.reshape(shape)


def camera_centres(c2w: torch.Tensor) -> torch.Tensor:
    return c2w[..., :3, 3]


# ---------------------------------------------------------------------------------------------
# Intrinsics


def intrinsics_matrix(fx, fy, cx, cy) -> torch.Tensor:
    """Scalars or tensors (...) -> (..., 3, 3) K."""
    fx, fy, cx, cy = torch.broadcast_tensors(*[torch.as_tensor(v, dtype=torch.float64) if not isinstance(v, torch.Tensor)
                                               else v for v in (fx, fy, cx, cy)])
    K = torch.zeros(fx.shape + (3, 3), dtype=fx.dtype, device=fx.device)
    K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2], K[..., 2, 2] = fx, fy, cx, cy, 1
    return K


def default_principal_point(height: int, width: int) -> tuple[float, float]:
    """Image centre in the pixel-centres-at-integers convention."""
    return (width - 1) / 2.0, (height - 1) / 2.0


def resize_intrinsics(K: torch.Tensor, scale_x: float, scale_y: float | None = None) -> torch.Tensor:
    """K after resizing the image by (scale_x, scale_y) = new_size / old_size.

    Pixel centres sit at integers, so a coordinate maps as u' = (u + 0.5) * s - 0.5.
    """
    scale_y = scale_x if scale_y is None else scale_y
    K = K.clone()
    K[..., 0, 0] = K[..., 0, 0] * scale_x
    K[..., 0, 1] = K[..., 0, 1] * scale_x
    K[..., 1, 1] = K[..., 1, 1] * scale_y
    K[..., 0, 2] = (K[..., 0, 2] + 0.5) * scale_x - 0.5
    K[..., 1, 2] = (K[..., 1, 2] + 0.5) * scale_y - 0.5
    return K


def crop_intrinsics(K: torch.Tensor, left: float, top: float) -> torch.Tensor:
    """K after cropping away ``left`` columns and ``top`` rows: the principal point shifts."""
    K = K.clone()
    K[..., 0, 2] = K[..., 0, 2] - left
    K[..., 1, 2] = K[..., 1, 2] - top
    return K


# ---------------------------------------------------------------------------------------------
# Projection


def pixel_grid(height: int, width: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """(H, W, 2) pixel coordinates (u, v) = (column, row)."""
    v, u = torch.meshgrid(torch.arange(height, dtype=dtype, device=device),
                          torch.arange(width, dtype=dtype, device=device), indexing="ij")
    return torch.stack([u, v], -1)


def project(X_cam: torch.Tensor, K: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-frame points (..., N, 3) and K (..., 3, 3) -> pixels (..., N, 2), depth (..., N)."""
    z = X_cam[..., 2]
    zs = torch.where(z.abs() < eps, torch.full_like(z, eps), z)  # points on the camera plane
    x, y = X_cam[..., 0] / zs, X_cam[..., 1] / zs
    K = K[..., None, :, :]
    u = K[..., 0, 0] * x + K[..., 0, 1] * y + K[..., 0, 2]
    v = K[..., 1, 1] * y + K[..., 1, 2]
    return torch.stack([u, v], -1), z


def project_world(X_world: torch.Tensor, c2w: torch.Tensor, K: torch.Tensor):
    """World points (..., N, 3) seen by camera c2w (..., 4, 4), K -> pixels (..., N, 2), depth."""
    return project(transform_points(invert_pose(c2w), X_world), K)


def unproject(uv: torch.Tensor, depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Pixels (..., N, 2) with depths (..., N) -> camera-frame points (..., N, 3). K (..., 3, 3)."""
    K = K[..., None, :, :]
    y = (uv[..., 1] - K[..., 1, 2]) / K[..., 1, 1]
    x = (uv[..., 0] - K[..., 0, 2] - K[..., 0, 1] * y) / K[..., 0, 0]
    return torch.stack([x * depth, y * depth, depth], -1)


def depth_to_pointmap(depth: torch.Tensor, K: torch.Tensor, c2w: torch.Tensor | None = None) -> torch.Tensor:
    """Depth maps (..., H, W) -> point maps (..., H, W, 3), in camera frame or world if c2w given."""
    H, W = depth.shape[-2:]
    uv = pixel_grid(H, W, dtype=depth.dtype, device=depth.device).reshape(-1, 2)
    X = unproject(uv, depth.reshape(depth.shape[:-2] + (-1,)), K)
    if c2w is not None:
        X = transform_points(c2w, X)
    return X.reshape(depth.shape + (3,))


def pointmap_to_depth(X: torch.Tensor, c2w: torch.Tensor | None = None) -> torch.Tensor:
    """Point maps (..., H, W, 3) (world if c2w given, else camera frame) -> depth (z) (..., H, W)."""
    if c2w is not None:
        X = transform_points(invert_pose(c2w), X)
    return X[..., 2]
