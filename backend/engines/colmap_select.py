"""Choosing between COLMAP models: how well each explains the clip's verified two-view matches.

A mapper can return a wrong model that looks fine by its own measures: on 10 hololens-000
frames with known K, incremental mapping drifted to 33.5 deg of rotation error with a mean
reprojection error of 0.60 px and *more* point observations (1279) than GLOMAP's correct
model (1271). Those measures only judge the tracks a model kept. The matches COLMAP verified
between frame pairs are the same evidence for every model, so each model is scored on them
instead: a match supports a model when it lies on the epipolar line the model's relative pose
predicts (Sampson distance, with the model's own camera). A frame the model did not place
supports nothing, so a model that places more frames is preferred unless its poses are worse.

Measured on the case above: GLOMAP 2212 of 2293 matches within 2 px, incremental 2108; on a
rendered dolly-in clip, GLOMAP 0.12 px median Sampson distance, the ground truth 0.11 px, the
drifting incremental model 0.42 px.

The same rule judges cameras that are not a COLMAP model (:func:`pinhole_support`: per-frame
K and c2w, as the unified model's bundle holds them), so ``auto`` can set them beside COLMAP's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Support of one match: 1 - (d / TAU)^2 for a Sampson distance d below TAU pixels, else 0 (a
# truncated quadratic, as in MSAC): near-exact matches count fully, so a model that fits all
# matches loosely scores below one that fits them tightly.
TAU_PX = 2.0


@dataclass
class VerifiedMatches:
    """The database's verified matches, as normalised-coordinate-ready keypoints per pair."""

    keypoints: dict  # image name -> (N, 2) keypoints, COLMAP pixel convention
    pairs: list  # (name_a, name_b, (M, 2) int inlier match indices)

    @property
    def total(self) -> int:
        return sum(len(m) for _, _, m in self.pairs)


def read_verified_matches(pycolmap, database) -> VerifiedMatches:
    db = pycolmap.Database.open(str(database))
    try:
        names = {im.image_id: im.name for im in db.read_all_images()}
        pair_ids, geometries = db.read_two_view_geometries()
        pairs, used = [], set()
        for pair_id, geometry in zip(pair_ids, geometries):
            matches = np.asarray(geometry.inlier_matches, dtype=np.int64).reshape(-1, 2)
            if len(matches) == 0:
                continue
            a, b = pycolmap.pair_id_to_image_pair(pair_id)
            pairs.append((names[a], names[b], matches))
            used.update((a, b))
        keypoints = {names[i]: np.asarray(db.read_keypoints(i), dtype=np.float64)[:, :2] for i in used}
    finally:
        db.close()
    return VerifiedMatches(keypoints, pairs)


@dataclass
class PinholeCameras:
    """Any engine's cameras, by image name, to score on the verified matches like a COLMAP model.

    ``views`` maps an image name to (K, c2w): K 3x3 in the bundle's pixel convention (pixel
    centres at integers: COLMAP's keypoints are shifted by half a pixel to meet it), c2w 4x4
    OpenCV camera-to-world. A frame the engine did not place is absent (or has c2w None)."""

    views: dict

    @classmethod
    def from_bundle(cls, bundle, names: list) -> "PinholeCameras":
        """The cameras of ``bundle`` (a :class:`backend.bundle.Bundle`), frame i named ``names[i]``.
        Lens distortion, if any, is ignored: the frames are scored as pinhole."""
        views = {}
        for cam in bundle.cameras or []:
            if cam.c2w is None or not np.all(np.isfinite(cam.c2w)):
                continue
            K = np.array([[cam.fx, 0.0, cam.cx], [0.0, cam.fy, cam.cy], [0.0, 0.0, 1.0]])
            views[names[cam.index]] = (K, np.asarray(cam.c2w, dtype=np.float64))
        return cls(views)


@dataclass
class _View:
    w2c: np.ndarray  # 4x4 world-to-camera
    focal: float  # mean focal length in pixels, to turn normalised distances into pixels
    rays: object  # (N, 2) COLMAP-convention keypoints -> (N, 3) homogeneous normalised coordinates


def epipolar_support(rec, verified: VerifiedMatches, tau_px: float = TAU_PX) -> float:
    """Sum over all verified matches of the truncated-quadratic support under ``rec``'s poses
    (``rec``: a pycolmap Reconstruction, its cameras' own distortion models undistorting)."""
    by_name = {img.name: img for img in rec.images.values() if img.has_pose}

    def view(name):
        img = by_name.get(name)
        if img is None:
            return None
        cam = rec.cameras[img.camera_id]
        return _View(_w2c(img), cam.mean_focal_length(), lambda xy, cam=cam: _rays(cam, xy))

    return _support(verified, view, tau_px)


def pinhole_support(cameras: PinholeCameras, verified: VerifiedMatches, tau_px: float = TAU_PX) -> float:
    """:func:`epipolar_support` of per-frame pinhole cameras (:class:`PinholeCameras`), so a
    model that is not a COLMAP reconstruction (the unified model's) is judged on the same matches
    by the same rule."""

    def view(name):
        K, c2w = cameras.views.get(name, (None, None))
        if c2w is None:
            return None
        K = np.asarray(K, dtype=np.float64)
        K_inv = np.linalg.inv(K)

        def rays(xy, K_inv=K_inv):
            # COLMAP puts pixel centres at +0.5, the bundle's K at integers
            xy = np.asarray(xy, dtype=np.float64) - 0.5
            return np.concatenate([xy, np.ones((len(xy), 1))], axis=1) @ K_inv.T

        return _View(np.linalg.inv(np.asarray(c2w, dtype=np.float64)), 0.5 * (K[0, 0] + K[1, 1]), rays)

    return _support(verified, view, tau_px)


def _support(verified: VerifiedMatches, view, tau_px: float) -> float:
    """The support sum, with ``view(name)`` giving a frame's :class:`_View` or None if not placed."""
    views, score = {}, 0.0
    for name_a, name_b, matches in verified.pairs:
        for name in (name_a, name_b):
            if name not in views:
                views[name] = view(name)
        va, vb = views[name_a], views[name_b]
        if va is None or vb is None:
            continue  # a frame the model left out explains none of its matches
        x1 = va.rays(verified.keypoints[name_a][matches[:, 0]])
        x2 = vb.rays(verified.keypoints[name_b][matches[:, 1]])
        b_from_a = vb.w2c @ np.linalg.inv(va.w2c)
        R, t = b_from_a[:3, :3], b_from_a[:3, 3]
        norm = np.linalg.norm(t)
        if norm < 1e-12:
            continue  # no baseline: no epipolar geometry to test
        E = _skew(t / norm) @ R
        # Sampson distance in normalised coordinates, to pixels with the pair's mean focal length
        Ex1, Etx2 = x1 @ E.T, x2 @ E
        num = np.sum(x2 * Ex1, axis=1) ** 2
        den = Ex1[:, 0] ** 2 + Ex1[:, 1] ** 2 + Etx2[:, 0] ** 2 + Etx2[:, 1] ** 2
        f = 0.5 * (va.focal + vb.focal)
        d2 = num / np.maximum(den, 1e-300) * f * f
        d2 = np.where(np.isfinite(d2), d2, np.inf)  # a keypoint a distorted camera cannot undistort supports nothing
        score += float(np.clip(1.0 - d2 / tau_px ** 2, 0.0, None).sum())
    return score


def pick(tried: dict, verified: VerifiedMatches):
    """(mapper name, Reconstruction, scores) of the model with the most epipolar support, or
    None. Ties (to 0.1 %) go to the mapper tried first. ``scores`` maps "mapper/model id"
    to the support of every model, for the bundle's record."""
    candidates, scores = [], {}
    for order, (name, found) in enumerate(tried.items()):
        for model_id, rec in found.items():
            support = epipolar_support(rec, verified)
            scores[f"{name}/{model_id}"] = round(support, 1)
            candidates.append((support, -order, name, rec))
    if not candidates:
        return None
    top = max(c[0] for c in candidates)
    near = [c for c in candidates if c[0] >= top * 0.999]
    support, _, name, rec = max(near, key=lambda c: (c[1], c[0]))
    return name, rec, scores


def _rays(camera, xy: np.ndarray) -> np.ndarray:
    """Homogeneous normalised coordinates (undistorted by the camera's own model)."""
    uv = np.asarray(camera.cam_from_img(xy), dtype=np.float64).reshape(-1, 2)
    return np.concatenate([uv, np.ones((len(uv), 1))], axis=1)


def _w2c(image) -> np.ndarray:
    m = np.eye(4)
    m[:3, :] = image.cam_from_world().matrix()
    return m


def _skew(t: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])
