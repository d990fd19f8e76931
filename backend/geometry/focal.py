"""Focal length from a point map expressed in its own camera (DUSt3R's recipe).

Each pixel p (relative to the principal point) and its 3D point X = (x, y, z) satisfy
p = f * (x / z, y / z) for a pinhole camera with square pixels. Least squares gives
f0 = sum(r . p) / sum(r . r) with r = (x/z, y/z); Weiszfeld iterations then minimise the sum of
unsquared 2D residuals |f r - p|, which tolerates outliers far better.
"""

from __future__ import annotations

import torch

from .cameras import default_principal_point, pixel_grid


def estimate_focal(pointmap: torch.Tensor, principal_point=None, weights: torch.Tensor | None = None,
                   n_iters: int = 10, n_robust: int = 5, min_depth: float = 1e-6) -> torch.Tensor:
    """Focal (pixels) of each point map (..., H, W, 3) given in its own camera frame.

    principal_point: (cx, cy) or tensor (..., 2); default the image centre.
    weights: (..., H, W) >= 0 (confidence, mask); points with z <= min_depth are ignored.
    n_robust: extra reweighting rounds with Cauchy weights at twice the robust residual scale
    (1.4826 * median): Weiszfeld's L1 fit still leans toward a large outlier fraction; a
    redescending weight removes that pull. 0 gives DUSt3R's estimator.
    Returns (...) focal lengths.
    """
    H, W = pointmap.shape[-3:-1]
    X = pointmap.double()
    if principal_point is None:
        principal_point = default_principal_point(H, W)
    pp = torch.as_tensor(principal_point, dtype=torch.float64, device=X.device)
    uv = pixel_grid(H, W, dtype=torch.float64, device=X.device)
    p = uv - pp[..., None, None, :]  # (..., H, W, 2)
    z = X[..., 2]
    valid = z > min_depth
    w = valid.double() if weights is None else weights.double() * valid
    r = X[..., :2] / torch.where(valid, z, torch.ones_like(z))[..., None]
    w, r, p = w.flatten(-2), r.flatten(-3, -2), p.expand(r.shape).flatten(-3, -2)
    rp, rr = (r * p).sum(-1), (r * r).sum(-1)
    f = (w * rp).sum(-1) / (w * rr).sum(-1).clamp_min(1e-300)
    for _ in range(n_iters):
        resid = (f[..., None, None] * r - p).norm(dim=-1)
        wi = w / resid.clamp_min(1e-8)
        f = (wi * rp).sum(-1) / (wi * rr).sum(-1).clamp_min(1e-300)
    for _ in range(n_robust):
        resid = (f[..., None, None] * r - p).norm(dim=-1)
        sigma = 1.4826 * torch.where(w > 0, resid, torch.nan).nanmedian(dim=-1).values
        wi = w / (1 + (resid / (2 * sigma[..., None]).clamp_min(1e-12)) ** 2)
        f = (wi * rp).sum(-1) / (wi * rr).sum(-1).clamp_min(1e-300)
    return f.to(pointmap.dtype)
