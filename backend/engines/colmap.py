"""The classical peer engine: COLMAP through pycolmap (SIFT, sequential matching, GLOMAP or incremental SfM).

It is the baseline every benchmark reports beside the learned engines, and a user-selectable
engine for real footage. Output is a result bundle (``backend.bundle``) in Parallax's
conventions:

- cameras: OpenCV camera-to-world, world = the first frame's camera. When frame 0 is not
  registered, the first registered frame is the world instead, and ``bundle.source`` says so.
  The scale is set so that the median depth of the world frame's points is 1.
- intrinsics: pixels, pixel centres at integers (COLMAP puts the first pixel's centre at 0.5,
  so ``c = c_colmap - 0.5``). Frames COLMAP could not register get ``c2w = None``: a pose
  is never invented. With one camera per clip, their intrinsics are the clip's.
- points: per frame, the 3D points observed in that frame (world coordinates, colour), with
  ``conf = (1 - 1/track_length) / (1 + reprojection error in px)`` in [0, 1).
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Optional

import numpy as np

from ..bundle import Bundle, CameraFrame, PointFrame
from ..io_video import check_solvable, load_clip
from .colmap_select import pick, read_verified_matches
from ..runtime import Cancelled, Progress
from .base import EngineError, NothingRegistered, TooFewFrames

MIN_FRAMES = 3
# Frames smaller than this (larger side, px) get a lower SIFT contrast threshold: at COLMAP's
# default (0.0067) a 256x192 synthetic frame yields a few hundred features and mapping fails
# often (measured mAA@30 0.71 -> 1.00 on one orbit clip); on 540x360 real footage the lower
# threshold only tripled the time (v2c_real mean 0.33 -> 0.28).
SMALL_FRAME = 400
SMALL_FRAME_PEAK_THRESHOLD = 0.002
MAPPERS = ("auto", "global", "incremental")
# Two-view verification: COLMAP labels a pair "planar or panoramic" when a homography explains
# 80 % of the essential matrix's inliers (within 4 px), and then both mappers take its relative
# pose from the homography. Forward motion over short baselines (a dolly) has under 4 px of
# parallax between neighbours, so every pair got that label and the poses came out rotated
# (rendered dolly-in clips, known K: mAA@30 0.00 -> 1.00 with the label off; pan clips also
# improved, 0.94/0.74 -> 0.96/1.00). With known K, 1.0 keeps every pair calibrated unless the
# homography explains more. Without K the label stays: near-pure rotations then feed degenerate
# fundamental matrices to the focal self-calibration (hololens-000 start 240 stride 2: focal
# 517 instead of 496 px, mAA@30 0.89 -> 0.12).
MAX_H_INLIER_RATIO = {"known K": 1.0, "estimated K": 0.8}
# Auto with estimated intrinsics runs incremental mapping only when GLOMAP left frames out.
AUTO_ALWAYS_BOTH = False
STAGES = {"load": 0.03, "write": 0.05, "features": 0.42, "matching": 0.15, "mapping": 0.3, "convert": 0.05}


class ColmapEngine:
    """pycolmap SfM over a clip. ``solve`` returns a Bundle (task "solve", engine "colmap")."""

    name = "colmap"

    def solve(self, frames, progress=None, *, K: Optional[np.ndarray] = None, mapper: str = "auto",
              camera_model: Optional[str] = None, calibrate: bool = True, start: int = 0, stride: int = 1,
              max_frames: Optional[int] = None, max_image_size: int = 1600, max_num_features: int = 8192,
              peak_threshold: Optional[float] = None, overlap: int = 10, fps: Optional[float] = None,
              seed: int = 0, num_threads: int = -1, mapper_threads: int = 1,
              workdir: Optional[os.PathLike] = None, verbose: bool = False) -> Bundle:
        """Solve the cameras of ``frames`` (list of (H, W, 3) uint8, a list of image paths, or a
        video / image-folder path). ``progress``: a :class:`backend.runtime.Progress` or a plain
        ``callback(fraction, label)`` (returning False cancels).

        Options:
          K: known intrinsics, 3x3 (or (F, 3, 3), all equal) in our convention; they are held
             fixed. Without K, one camera is estimated for the whole clip.
          mapper: "global" (GLOMAP, pycolmap.global_mapping), "incremental", or "auto" (default):
             GLOMAP, plus incremental mapping when K is known or GLOMAP left frames out; the
             model that best explains the verified two-view matches wins
             (:mod:`.colmap_select`; ties go to GLOMAP). GLOMAP alone got rotations right but
             unstable translations on short synthetic clips; incremental alone often failed to
             start on real handheld footage; and each mapper's own figures (frames placed,
             point observations, reprojection error) picked a model drifting by 33 deg on real
             footage, so they do not decide.
          camera_model: COLMAP model when K is not given. Default SIMPLE_PINHOLE: the bundle is
             pinhole, and on 16-frame windows a radial term drifted to nonsense (k = 0.7-0.9).
             Any other model's extra parameters are recorded in ``source["colmap_camera"]``.
          calibrate: without K, self-calibrate the focal length from the view graph
             (pycolmap.calibrate_view_graph) before mapping.
          start, stride, max_frames: which frames of the input to use.
          max_image_size, max_num_features, peak_threshold: SIFT settings (peak_threshold
             None = COLMAP's default, or 0.002 for frames under 400 px).
          overlap: sequential matching window (each frame is matched with the next ``overlap``
             frames, plus frames 2^k ahead beyond the window for loop-closing pairs).
          seed: COLMAP's random seed (RANSAC, mapping). Runs are still not bit-identical:
             GLOMAP's result varies a little between runs (worst on near-degenerate windows).
          num_threads, mapper_threads: threads for SIFT/matching (-1 = all) and for mapping.
          workdir: keep COLMAP's database and model there (default: a temporary folder).
        """
        import pycolmap

        if mapper not in MAPPERS:
            raise EngineError(f"mapper must be one of {', '.join(MAPPERS)}, got {mapper!r}")
        if mapper in ("global", "auto") and not hasattr(pycolmap, "global_mapping"):
            mapper = "incremental"  # pycolmap older than 3.12 has no GLOMAP
        if not verbose:
            pycolmap.logging.minloglevel = 3  # COLMAP logs much (even "errors" we report ourselves)
        prog = Progress.of(progress).staged(STAGES)

        prog.stage("load")
        frames, indices, clip_fps, source_name = _load(frames, start, stride, max_frames)
        n, (h, w) = len(frames), frames[0].shape[:2]
        K_fixed = _shared_K(K, n)

        with tempfile.TemporaryDirectory(prefix="parallax-colmap-") as tmp:
            root = Path(workdir) if workdir is not None else Path(tmp)
            images, database, sparse = root / "images", root / "database.db", root / "sparse"
            images.mkdir(parents=True, exist_ok=True)
            sparse.mkdir(parents=True, exist_ok=True)
            if database.exists():
                database.unlink()

            names = [f"{i:06d}.png" for i in range(n)]
            _write_images(frames, images, names, prog.stage("write"))

            step = prog.stage("features")
            reader = pycolmap.ImageReaderOptions()
            if K_fixed is not None:
                reader.camera_model = "PINHOLE"
                fx, fy, cx, cy = K_fixed[0, 0], K_fixed[1, 1], K_fixed[0, 2], K_fixed[1, 2]
                # COLMAP puts pixel centres at +0.5
                reader.camera_params = ",".join(repr(float(v)) for v in (fx, fy, cx + 0.5, cy + 0.5))
            else:
                reader.camera_model = camera_model or "SIMPLE_PINHOLE"
            extraction = pycolmap.FeatureExtractionOptions()
            extraction.max_image_size = max_image_size
            extraction.num_threads = num_threads
            extraction.sift.max_num_features = max_num_features
            if peak_threshold is None and max(w, h) < SMALL_FRAME:
                peak_threshold = SMALL_FRAME_PEAK_THRESHOLD
            if peak_threshold is not None:
                extraction.sift.peak_threshold = peak_threshold
            _run(step, pycolmap.extract_features, database, images, image_names=names,
                 camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader, extraction_options=extraction)

            step = prog.stage("matching")
            matching = pycolmap.FeatureMatchingOptions()
            matching.num_threads = num_threads
            verification = pycolmap.TwoViewGeometryOptions()
            verification.ransac.random_seed = seed  # reproducible two-view verification
            verification.max_H_inlier_ratio = MAX_H_INLIER_RATIO["known K" if K_fixed is not None else "estimated K"]
            # COLMAP's quadratic_overlap *replaces* the window (offsets 1, 2, 4, 8, ... only: 49
            # pairs instead of 105 on 16 frames), so match the window, then the quadratic
            # offsets; pairs matched already are skipped by COLMAP.
            for k, quadratic in enumerate((False, True)):
                pairing = pycolmap.SequentialPairingOptions()
                pairing.overlap = overlap if not quadratic else max(1, int(np.ceil(np.log2(n))))
                pairing.quadratic_overlap = quadratic
                if quadratic and 2 ** (pairing.overlap - 1) <= overlap:
                    break
                _run(step, pycolmap.match_sequential, database, matching_options=matching, pairing_options=pairing,
                     verification_options=verification, seed=seed, at=k / 2)

            if K_fixed is None and calibrate and hasattr(pycolmap, "calibrate_view_graph"):
                # Self-calibrate the focal length from the fundamental matrices of all pairs
                # before mapping: COLMAP's prior (1.2 x the larger side) can be 30 % off, and
                # short clips with small baselines do not correct it in bundle adjustment.
                calibration = pycolmap.ViewGraphCalibrationOptions()
                calibration.random_seed = seed
                _run(step, pycolmap.calibrate_view_graph, database, calibration, seed=seed, cancellable=False)

            step = prog.stage("mapping")
            runs = ["global", "incremental"] if mapper == "auto" else [mapper]
            tried = {}
            for k, name in enumerate(runs):
                if name == "incremental" and mapper == "auto" and K_fixed is None and not AUTO_ALWAYS_BOTH and \
                        tried["global"] and max(r.num_reg_images() for r in tried["global"].values()) == n:
                    break  # GLOMAP placed every frame
                out = sparse / name
                out.mkdir(exist_ok=True)
                tried[name] = _map(pycolmap, step, name, database, images, out, K_fixed is not None, seed,
                                   mapper_threads, n, k, len(runs))
            best = pick(tried, read_verified_matches(pycolmap, database)) if any(tried.values()) else None

            prog.stage("convert")
            if best is None or best[1].num_reg_images() < 2:
                raise NothingRegistered(f"nothing registered: COLMAP found no consistent geometry in {n} frames "
                                        "(too little texture, too little camera motion, or unrelated frames)")
            used, rec, support = best
            cameras, points, info = _to_parallax(rec, names, K_fixed, w, h)
            info["mappers_tried"] = {name: {"models": len(found),
                                            "registered": max((r.num_reg_images() for r in found.values()), default=0)}
                                     for name, found in tried.items()}
            info["epipolar_support"] = support
            models = tried[used]

        prog.done()
        reg = sum(c.c2w is not None for c in cameras)
        return Bundle(
            task="solve", width=w, height=h, frame_count=n, fps=float(fps or clip_fps), engine=self.name,
            model_id=f"pycolmap {pycolmap.__version__} {'GLOMAP' if used == 'global' else 'incremental'}",
            source={"input": source_name, "frame_indices": indices, "mapper": used, "mapper_option": mapper, **info},
            scores={"registered": reg, "registered_fraction": reg / n, "models": len(models),
                    "points": int(rec.num_points3D()),
                    "mean_reprojection_error_px": float(rec.compute_mean_reprojection_error()),
                    "mean_track_length": float(rec.compute_mean_track_length()) if rec.num_points3D() else 0.0},
            timings={**prog.timings, "total": round(sum(prog.timings.values()), 3)},
            frames=frames, cameras=cameras, points=points)


# ----------------------------------------------------------------------------------------
# Input


def _load(frames, start: int, stride: int, max_frames: Optional[int]):
    clip = load_clip(frames, start=start, stride=stride, max_frames=max_frames)
    if len(clip.frames) < MIN_FRAMES:
        raise TooFewFrames(f"too few frames: got {len(clip.frames)}, structure from motion needs at least {MIN_FRAMES}")
    check_solvable(clip, MIN_FRAMES)
    return clip.frames, clip.indices, clip.fps, clip.source


def _shared_K(K, n: int) -> Optional[np.ndarray]:
    """One 3x3 K from a 3x3 or (F, 3, 3) input (COLMAP gets one camera per clip)."""
    if K is None:
        return None
    K = np.asarray(K, dtype=np.float64)
    if K.shape == (3, 3):
        return K
    if K.ndim == 3 and K.shape[1:] == (3, 3) and len(K) in (1, n):
        if np.abs(K - K[0]).max() > 1e-6 * max(1.0, np.abs(K[0]).max()):
            raise EngineError("the colmap engine takes one K for the whole clip; the given per-frame K differ")
        return K[0]
    raise EngineError(f"K must be 3x3 or ({n}, 3, 3), got shape {K.shape}")


def _write_images(frames, folder: Path, names, prog: Progress) -> None:
    from PIL import Image

    for k, (frame, name) in enumerate(zip(frames, names)):
        Image.fromarray(frame).save(folder / name, compress_level=1)
        prog((k + 1) / len(frames))


# ----------------------------------------------------------------------------------------
# Running pycolmap with progress and cancel


def _run(prog: Progress, fn, *args, seed: int = 0, cancellable: bool = True, at: float = 0.0,
         pending: Optional[list] = None, **kwargs):
    """Run a blocking pycolmap call in a worker thread while polling the progress callback.
    ``at`` is the fraction of ``prog`` reported meanwhile, or ``pending[0]`` once a COLMAP
    callback has set it (how far the mapper got).

    pycolmap releases the GIL while it works, so the caller's callback keeps being asked
    (every 0.25 s) whether to go on; a ``False`` trips COLMAP's cancellation token, and the
    call returns at its next check. GLOMAP takes no token: it is cancelled when it returns.
    """
    import pycolmap

    token = pycolmap.CancellationToken() if cancellable else None
    if token is not None:
        kwargs["cancellation_token"] = token
    result, error = {}, {}

    def work():
        try:
            pycolmap.set_random_seed(seed)  # COLMAP's random generator is per thread
            result["value"] = fn(*args, **kwargs)
        except BaseException as e:  # re-raised in the caller's thread
            error["value"] = e

    thread = threading.Thread(target=work, name=f"colmap-{fn.__name__}", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.25)
            prog(pending[0] if pending and pending[0] is not None else at)
    except Cancelled:
        if token is not None:
            token.cancel()
        thread.join()
        raise
    if "value" in error:
        raise EngineError(f"COLMAP failed in {fn.__name__}: {error['value']}") from error["value"]
    if token is not None and token.is_cancelled:
        raise Cancelled(f"cancelled during {fn.__name__}")
    return result.get("value")


def _map(pycolmap, prog: Progress, mapper: str, database, images, out, fixed_intrinsics: bool, seed: int,
         threads: int, n: int, k: int, runs: int) -> dict:
    """One mapper's models (dict id -> Reconstruction; empty when it found none)."""
    if mapper == "global":
        options = _global_options(pycolmap, fixed_intrinsics, seed, threads)
        models = _run(prog, pycolmap.global_mapping, database, images, out, options, seed=seed, cancellable=False,
                      at=k / runs)
    else:
        options = _incremental_options(pycolmap, fixed_intrinsics, seed, threads)
        placed, pending = [0], [None]

        def next_image():  # called by COLMAP's thread after each registration
            placed[0] += 1
            pending[0] = (k + min(placed[0] / n, 1.0)) / runs

        models = _run(prog, pycolmap.incremental_mapping, database, images, out, options, seed=seed,
                      next_image_callback=next_image, at=k / runs, pending=pending)
    return dict(models or {})


def _global_options(pycolmap, fixed_intrinsics: bool, seed: int, num_threads: int):
    o = pycolmap.GlobalPipelineOptions()
    o.random_seed = seed
    o.num_threads = num_threads
    o.min_model_size = MIN_FRAMES
    o.mapper.random_seed = seed
    o.mapper.global_positioning.use_gpu = False  # this build is CPU-only; avoid a failed GPU probe
    o.mapper.bundle_adjustment.ceres.use_gpu = False
    if fixed_intrinsics:
        ba = o.mapper.bundle_adjustment
        ba.refine_focal_length = ba.refine_principal_point = ba.refine_extra_params = False
    return o


def _incremental_options(pycolmap, fixed_intrinsics: bool, seed: int, num_threads: int):
    o = pycolmap.IncrementalPipelineOptions()
    o.random_seed = seed
    o.num_threads = num_threads
    o.min_model_size = MIN_FRAMES  # the default (10) drops whole short clips
    o.mapper.random_seed = seed
    # Video frames are close together: COLMAP's photo-collection defaults (16 deg and 100
    # inliers for the first pair) often find no initial pair in a 16-frame window.
    o.mapper.init_min_tri_angle = 4.0
    o.mapper.init_min_num_inliers = 50
    o.mapper.abs_pose_min_num_inliers = 15
    if fixed_intrinsics:
        o.ba_refine_focal_length = o.ba_refine_principal_point = o.ba_refine_extra_params = False
        o.mapper.abs_pose_refine_focal_length = o.mapper.abs_pose_refine_extra_params = False
    return o


# ----------------------------------------------------------------------------------------
# COLMAP model -> Parallax cameras and points


def _to_parallax(rec, names, K_fixed, w: int, h: int):
    """Cameras (world = first registered frame's camera, median depth 1) and per-frame points."""
    by_name = {img.name: img for img in rec.images.values()}
    registered = [i for i, nm in enumerate(names) if nm in by_name and by_name[nm].has_pose]
    ref = registered[0]

    w2c = {}
    for i in registered:
        m = np.eye(4)
        m[:3, :] = by_name[names[i]].cam_from_world().matrix()
        w2c[i] = m
    to_ref = w2c[ref]  # COLMAP world -> the reference camera, our world

    # All 3D points, once, as arrays; then per frame an index list.
    ids = np.array(list(rec.points3D.keys()), dtype=np.int64)
    row = {int(pid): k for k, pid in enumerate(ids)}
    pts = list(rec.points3D.values())
    xyz = np.array([p.xyz for p in pts], dtype=np.float64).reshape(-1, 3)
    rgb = np.array([p.color for p in pts], dtype=np.uint8).reshape(-1, 3)
    err = np.array([p.error for p in pts], dtype=np.float64)
    track = np.array([p.track.length() for p in pts], dtype=np.float64)
    conf = (1.0 - 1.0 / np.maximum(track, 1.0)) / (1.0 + np.maximum(err, 0.0))
    xyz_ref = xyz @ to_ref[:3, :3].T + to_ref[:3, 3]

    seen = {i: np.array([row[int(p.point3D_id)] for p in by_name[names[i]].points2D if p.has_point3D()],
                        dtype=np.int64) for i in registered}
    depths = xyz_ref[seen[ref], 2] if len(seen[ref]) else xyz_ref[:, 2]
    depths = depths[depths > 0]
    scale = 1.0 / float(np.median(depths)) if len(depths) else 1.0

    cam = rec.cameras[by_name[names[ref]].camera_id]
    if K_fixed is not None:
        fx, fy, cx, cy = K_fixed[0, 0], K_fixed[1, 1], K_fixed[0, 2], K_fixed[1, 2]
    else:
        fx, fy = cam.focal_length_x, cam.focal_length_y
        cx, cy = cam.principal_point_x - 0.5, cam.principal_point_y - 0.5

    cameras, points = [], []
    empty = PointFrame(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), np.zeros((0,), np.float16))
    for i in range(len(names)):
        if i in w2c:
            c2w = to_ref @ np.linalg.inv(w2c[i])
            c2w[:3, 3] *= scale
            c2w[3] = (0, 0, 0, 1)
            k = seen[i]
            points.append(PointFrame((xyz_ref[k] * scale).astype(np.float32), rgb[k], conf[k].astype(np.float16)))
        else:
            c2w = None
            points.append(empty)
        cameras.append(CameraFrame(index=i, c2w=c2w, fx=float(fx), fy=float(fy), cx=float(cx), cy=float(cy)))

    info = {
        "world_frame": ref,
        "world": ("frame 0's camera" if ref == 0 else
                  f"frame {ref}'s camera (frame 0 was not registered; the first registered frame is the world)"),
        "scale": "median depth of the world frame's points is 1",
        "intrinsics": "given (held fixed)" if K_fixed is not None else "estimated (one camera for the clip)",
        "colmap_camera": {"model": cam.model_name, "params": [float(v) for v in cam.params],
                          "params_info": cam.params_info, "pixel_centre": 0.5},
        "unregistered_frames": [i for i in range(len(names)) if i not in w2c],
    }
    return cameras, points, info
