"""Pose from an image pair: InterPose (Cai et al., DESIGN section 6) over Parallax's roles.

Given images A and B of one scene with little overlap, the relative pose of B from A:

1. **Views**: each image's centred square (what a square model sees), both at the smaller of the
   two squares' sides; known intrinsics follow the crop and the resize. Same-size images keep
   their full frames in the bundle; images of different sizes are answered on these squares.
2. **Pair-only**: the pose estimator on {A, B} alone, T_pair (``videos=0`` returns it).
3. **Candidates**: ``videos`` videos from A to B by the generator. Candidate i goes A->B when i
   is even and B->A when odd (reversed afterwards; InterPose: video models lean to one panning
   direction), with prompt i/2 of :data:`PROMPTS` (cycled) and seed ``seed + i``, so the first n
   candidates of a longer run are exactly the n of a shorter one.
4. **Poses per video**: ``random_subsets`` random subsets of ``k`` frames that always hold A and
   B, plus one uniform (``geometry.interpose.frame_subsets``); the estimator solves all subsets
   of a video in one call (one forward pass for the unified model) and each gives
   T^(j) = B's world-to-camera in A's camera (InterPose's T_rel = T_B T_A^-1).
5. **Selection** (``geometry.interpose``): D_med per video, D_total = D_med + dist(T_med, T_pair);
   the lowest D_total wins and its medoid pose is the answer.

The result bundle (task ``pair_pose``): frames 0 and 1 are A and B, A at the origin and B's
camera at baseline 1 (scale is unknown from images); ``scores`` hold D_med, D_total, the
agreement of the top candidates, the reliability grade and its rule, and a summary per candidate.
The selected video is a separate bundle in the ``generated/`` folder inside (task ``generate``,
``source.generated = true``): its frames are made up by the generator, not footage; its cameras
are the estimator's on the whole video, A at the origin, scaled to the same baseline 1.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..bundle import Bundle, CameraFrame
from ..io_video import MIN_CHANGE
from ..runtime import Progress
from .common import SquareCrop, resize_frames, square_crop

# Generic camera-motion prompts in the caption vocabulary the shipped model was trained on
# (backend/data/captions.py): both turning directions, as InterPose flips the input order.
PROMPTS = ("the camera orbits left around the objects", "the camera orbits right around the objects",
           "the camera pans left across the scene", "the camera pans right across the scene")
DEFAULT_VIDEOS = 4  # InterPose's n (2 prompts x 2 orders); the curve of error against n is in RESULTS.md
# Frames per subset, A and B included: all of a video but SUBSET_LEFT_OUT. InterPose uses k = 5
# with DUSt3R, which takes any set of views; the unified estimator was trained on dense 16-frame
# clips. On the real (rendered) 16-frame videos between 6 held-out pairs, medoid of 11 subsets,
# MRE / MTE in deg: k = 5 74.7 / 48.3, k = 9 55.2 / 19.7, k = 13 45.5 / 18.9; the whole video
# 42.4 / 22.0 and the pair alone 78.3 / 67.1 (2026-11-30, 2-core CPU).
SUBSET_LEFT_OUT = 3
RANDOM_SUBSETS = 10  # plus one uniform: m = 11
# Share of a video's progress spent generating. In the CPU evaluation (16 frames, 8 steps, no
# guidance) generating and solving the 11 subsets of 13 frames took about 45 s each; the default
# 25 steps with guidance do about 6x the generation work, hence 0.85.
GENERATION_SHARE = 0.85
# Progress weights of a video and of the selected video's cameras against the pair-only estimate
# (the CPU evaluation: 4 s pair-only, ~72 s a video, one 16-frame pass ~8 s for the cameras).
VIDEO_SHARE = 18.0
CAMERAS_SHARE = 2.0
TOP_CANDIDATES = 3  # the agreement score compares the medoids of the best three videos
# Two images whose centred squares differ by less than this mean grey level are the same picture
# (io_video's MIN_CHANGE for frames that do not change). Only near-exact duplicates: a render
# re-saved at another size differed by 0.35-6.2 after resampling, which a small real camera move
# can match, while the wide pairs' two views differ by 24-45.
IDENTICAL_DIFF = MIN_CHANGE
GENERATED_DIR = "generated"


# ----------------------------------------------------------------------------------------
# Input


@dataclass
class PairViews:
    """The two images as the pipeline sees them."""

    images: tuple  # (A, B) original (H, W, 3) uint8
    names: tuple  # where each came from
    views: tuple  # (A, B) centred squares at ``side`` px
    crops: tuple  # (SquareCrop A, SquareCrop B) in the originals
    side: int
    K_given: Optional[tuple] = None  # (K_A, K_B) in the originals' pixels, when the user gave them
    K_views: Optional[tuple] = None  # the same in the views' pixels

    @property
    def same_size(self) -> bool:
        return self.images[0].shape == self.images[1].shape


def read_image(image, name: str) -> np.ndarray:
    """An input image as (H, W, 3) uint8: a path to an image file or an array. Raises
    ValueError (VideoError) with a message naming the input when it is missing, not an image,
    too small or one flat colour."""
    from ..io_video import IMAGE_EXTENSIONS, Clip, VideoError, check_solvable, read_frames

    if image is None:
        raise VideoError(f"image {name} is missing: pose from a pair needs two images, A and B")
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise VideoError(f"{path}: no such file")
        if path.is_dir():
            raise VideoError(f"{path}: is a folder; give one image file for {name}")
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise VideoError(f"{path}: not an image file ({', '.join(IMAGE_EXTENSIONS)}); image {name} must be "
                             "a still picture")
        frame = read_frames(path).frames[0]
        source = str(path)
    else:
        frame = np.asarray(image)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise VideoError(f"image {name}: expected an (H, W, 3) uint8 array, got {frame.dtype} {frame.shape}")
        source = f"image {name}"
    check_solvable(Clip([frame], 24.0, source), min_frames=1, require_change=False)
    return frame


def _parse_K(K, n_images: int = 2) -> Optional[tuple]:
    if K is None:
        return None
    arr = np.asarray(K, dtype=np.float64)
    if arr.shape == (4,):  # fx, fy, cx, cy
        fx, fy, cx, cy = arr
        arr = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    if arr.shape == (3, 3):
        arr = np.stack([arr] * n_images)
    if arr.shape != (n_images, 3, 3) or not np.isfinite(arr).all() or (arr[:, 0, 0] <= 0).any() or \
            (arr[:, 1, 1] <= 0).any():
        raise ValueError(f"intrinsics must be fx, fy, cx, cy or a 3x3 matrix (or one per image) with positive "
                         f"focal lengths; got {np.asarray(K).tolist()}")
    return tuple(arr)


def prepare_views(image_a, image_b, K=None) -> PairViews:
    """Read and check both images; their centred squares at a common side and the intrinsics
    in those squares' pixels. ``K``: fx, fy, cx, cy (or 3x3) of both images' camera, or a
    (2, 3, 3) pair, in the images' pixels; None to estimate."""
    from ..geometry.cameras import crop_intrinsics, resize_intrinsics

    a, b = read_image(image_a, "A"), read_image(image_b, "B")
    names = tuple(str(x) if isinstance(x, (str, os.PathLike)) else f"image {n}"
                  for x, n in ((image_a, "A"), (image_b, "B")))
    K_given = _parse_K(K)
    if K_given is not None and a.shape != b.shape and np.allclose(K_given[0], K_given[1]):
        raise ValueError(f"the images have different sizes ({a.shape[1]}x{a.shape[0]} and {b.shape[1]}x{b.shape[0]}) "
                         "but one set of intrinsics was given: give one per image, or none to estimate them")
    crops = (square_crop(*a.shape[:2]), square_crop(*b.shape[:2]))
    side = min(c.side for c in crops)
    views = tuple(resize_frames(torch.from_numpy(np.array(img[c.top:c.top + c.side, c.left:c.left + c.side]))[None],
                                side)[0].numpy() for img, c in zip((a, b), crops))  # a copy: PIL's arrays are read-only
    K_views = None
    if K_given is not None:
        K_views = tuple(resize_intrinsics(crop_intrinsics(torch.as_tensor(k), c.left, c.top), side / c.side).numpy()
                        for k, c in zip(K_given, crops))
    return PairViews(images=(a, b), names=names, views=views, crops=crops, side=side, K_given=K_given,
                     K_views=K_views)


def identical(views: PairViews) -> bool:
    grey = [v.astype(np.float32).mean(-1) for v in views.views]
    return float(np.abs(grey[0] - grey[1]).mean()) < IDENTICAL_DIFF


# ----------------------------------------------------------------------------------------
# Candidates and the result


def candidate_plan(n: int, prompts=PROMPTS, seed: int = 0) -> list[dict]:
    """Order, prompt and seed of candidates 0..n-1 (a prefix of a longer plan is a shorter one)."""
    return [{"order": "AB" if i % 2 == 0 else "BA", "prompt": prompts[(i // 2) % len(prompts)], "seed": seed + i}
            for i in range(n)]


@dataclass
class Candidate:
    index: int
    order: str  # "AB": generated from A to B; "BA": from B to A, then reversed
    prompt: str
    seed: int
    frames: np.ndarray  # (F, h, w, 3) uint8, A first, B last
    subsets: list  # frame indices per subset
    poses: np.ndarray  # (m, 4, 4) T^(j): B's world-to-camera in A's camera, NaN where it failed
    K: list  # per subset, the estimator's (3, 3) intrinsics of A in the video's pixels
    medoid: int = -1
    d_med: float = math.inf
    d_total: float = math.inf

    def summary(self) -> dict:
        T = self.poses[self.medoid] if self.medoid >= 0 else None
        return {"index": self.index, "order": self.order, "prompt": self.prompt, "seed": self.seed,
                "subsets": len(self.subsets), "valid_subsets": int(np.isfinite(self.poses).all((1, 2)).sum()),
                "d_med": _finite(self.d_med), "d_total": _finite(self.d_total), "medoid_subset": self.medoid,
                **({"rotation_deg": _rotation_deg(T), "translation_dir": _direction(T)} if T is not None else {})}


@dataclass
class PairPoseResult:
    views: PairViews
    method: str  # "interpose", "pair-only" or "identical"
    T: np.ndarray  # (4, 4) the answer: B's world-to-camera in A's camera (InterPose's T_rel)
    K_views: tuple  # (K_A, K_B) of the answer, in the views' pixels
    pair_T: np.ndarray  # the pair-only estimate (NaN when it failed)
    candidates: list = field(default_factory=list)
    selected: int = -1
    notes: list = field(default_factory=list)
    scores: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    generated_c2w: Optional[np.ndarray] = None  # (F, 4, 4) cameras of the selected video, baseline 1
    generated_K: Optional[np.ndarray] = None  # (3, 3) in the video's pixels
    roles: dict = field(default_factory=dict)

    @property
    def c2w_b(self) -> np.ndarray:
        """B's camera-to-world with A at the origin and the baseline normalised to 1."""
        return normalised_c2w(self.T)


def normalised_c2w(T: np.ndarray) -> np.ndarray:
    c2w = np.linalg.inv(T)
    norm = np.linalg.norm(c2w[:3, 3])
    if norm > 1e-12:
        c2w[:3, 3] /= norm
    return c2w


def _finite(x):
    return float(x) if x is not None and math.isfinite(x) else None


def _rotation_deg(T) -> Optional[float]:
    if T is None or not np.isfinite(T).all():
        return None
    return float(np.degrees(np.arccos(np.clip((np.trace(T[:3, :3]) - 1) / 2, -1, 1))))


def _direction(T) -> Optional[list]:
    """Direction of B's centre from A (unit), the scale-free part of the translation."""
    if T is None or not np.isfinite(T).all():
        return None
    c = np.linalg.inv(T)[:3, 3]
    n = np.linalg.norm(c)
    return (c / n).tolist() if n > 1e-12 else [0.0, 0.0, 0.0]


# ----------------------------------------------------------------------------------------
# The pipeline


class PairPosePipeline:
    """``PairPosePipeline(generator, estimator, videos=4)(A, B, K=None, progress=None)`` ->
    :class:`PairPoseResult` (see the module docstring; the roles in ``pair_roles.py``).

    ``frames``: frames per generated video (default: the generator's most); ``k``, ``random_subsets``:
    InterPose's subset size (default: all frames but SUBSET_LEFT_OUT) and count (plus one uniform);
    ``seed``: of candidate 0."""

    def __init__(self, generator, estimator, videos: int = DEFAULT_VIDEOS, frames: Optional[int] = None,
                 k: Optional[int] = None, random_subsets: int = RANDOM_SUBSETS, seed: int = 0, prompts=PROMPTS):
        if videos < 0:
            raise ValueError(f"videos must be >= 0, got {videos}")
        if videos > 0 and generator is None:
            raise ValueError("generated videos need a generator (videos=0 is the pair-only estimate)")
        if k is not None and k < 3:
            raise ValueError(f"k (frames per subset) must be at least 3: A, B and one generated frame; got {k}")
        if random_subsets < 1:
            raise ValueError(f"random_subsets must be at least 1, got {random_subsets}")
        self.generator, self.estimator = generator, estimator
        self.videos, self.frames, self.k, self.random_subsets = int(videos), frames, k, int(random_subsets)
        self.seed, self.prompts = int(seed), tuple(prompts)

    def roles(self) -> dict:
        out = {"pose_estimator": {"name": self.estimator.name, "model_id": getattr(self.estimator, "model_id", "")}}
        if self.generator is not None and self.videos:
            out["generator"] = {"name": self.generator.name, "model_id": getattr(self.generator, "model_id", "")}
        return out

    def frames_per_video(self) -> int:
        most = int(self.generator.max_frames)
        n = int(self.frames or most)
        if not 3 <= n <= most:
            raise ValueError(f"frames per video must be 3 to {most} (the generator's most), got {n}")
        if self.subset_size(n) > n:
            raise ValueError(f"k = {self.k} frames per subset is more than the {n} frames of a video")
        return n

    def subset_size(self, frames: int) -> int:
        """k: as given, else all of a video's frames but SUBSET_LEFT_OUT (at least 3)."""
        return int(self.k) if self.k is not None else max(3, frames - SUBSET_LEFT_OUT)

    def __call__(self, image_a, image_b, K=None, progress=None, generated_cameras: bool = True) -> PairPoseResult:
        from ..geometry.interpose import pose_distance

        progress = Progress.of(progress)
        views = prepare_views(image_a, image_b, K)  # bad input fails here, before any model loads
        if identical(views):
            return self._identity(views)
        F = self.frames_per_video() if self.videos else 0
        n = self.videos
        share = {"pair": 1.0, "videos": VIDEO_SHARE * n, "cameras": CAMERAS_SHARE if n and generated_cameras else 0.0}
        total = sum(share.values())
        lo = 0.0

        def span(name, label):
            nonlocal lo
            p = progress.span(lo / total, (lo + share[name]) / total, label)
            lo += share[name]
            return p

        # 1. pair-only
        with progress.timed("pair-only"):
            pair = self.estimator.estimate([np.stack(views.views)], *self._K(views, views.side),
                                           progress=span("pair", "pair-only pose"))[0]
        pair_T = _inverse(pair.last)
        # 2-4. candidates
        cand_span = span("videos", "")
        candidates = []
        for i, plan in enumerate(candidate_plan(n, self.prompts, self.seed)):
            vp = cand_span.span(i / n, (i + 1) / n, f"video {i + 1}/{n}")
            candidates.append(self._candidate(i, plan, views, F, vp, progress))
        result = self._select(views, pair, pair_T, candidates)
        if candidates and result.selected >= 0 and generated_cameras:
            with progress.timed("generated cameras"):
                self._generated_cameras(result, span("cameras", "cameras of the selected video"))
        if n and math.isfinite(result.scores.get("d_total") or math.nan) and np.isfinite(pair_T).all():
            result.scores["pair_only_distance"] = float(pose_distance(result.T, pair_T))
        result.timings = {k: round(v, 4) for k, v in progress.timings.items()}
        result.roles = self.roles()
        progress(1.0, "done")
        return result

    # -- steps -------------------------------------------------------------------------------------
    def _K(self, views: PairViews, px: int, py: Optional[int] = None) -> tuple:
        """(K_first, K_last) for clips of ``px`` x ``py`` pixels made from the views, or Nones."""
        if views.K_views is None:
            return None, None
        from ..geometry.cameras import resize_intrinsics

        py = px if py is None else py
        return tuple(resize_intrinsics(torch.as_tensor(k), px / views.side, py / views.side).numpy()
                     for k in views.K_views)

    def _candidate(self, i: int, plan: dict, views: PairViews, F: int, vp: Progress, progress: Progress) -> Candidate:
        from ..geometry.interpose import frame_subsets

        first, last = views.views if plan["order"] == "AB" else views.views[::-1]
        with progress.timed("generation"):
            frames = np.asarray(self.generator.interpolate(first, last, F, seed=plan["seed"], prompt=plan["prompt"],
                                                           progress=vp.span(0.0, GENERATION_SHARE, "generating")))
        if plan["order"] == "BA":
            frames = frames[::-1].copy()
        if len(frames) != F:
            raise RuntimeError(f"generator {self.generator.name!r} returned {len(frames)} frames, asked for {F}")
        subsets = frame_subsets(F, self.subset_size(F), self.random_subsets, uniform=True, seed=self.seed + i)
        h, w = frames.shape[1:3]
        with progress.timed("pose estimation"):
            cams = self.estimator.estimate([frames[s] for s in subsets], *self._K(views, w, h),
                                           progress=vp.span(GENERATION_SHARE, 1.0, "poses"), last_only=True)
        poses = np.stack([_inverse(c.last) for c in cams])
        return Candidate(i, plan["order"], plan["prompt"], plan["seed"], frames, subsets, poses, [c.K for c in cams])

    def _select(self, views: PairViews, pair, pair_T: np.ndarray, candidates: list) -> PairPoseResult:
        from ..geometry.interpose import RELIABILITY_RULE, agreement, reliability, select_video

        notes = []
        if candidates:
            sel = select_video([c.poses for c in candidates], pair_T if np.isfinite(pair_T).all() else None)
            for c, med, dm, dt in zip(candidates, sel.medoids, sel.d_med, sel.d_total):
                c.medoid, c.d_med, c.d_total = med, dm, dt
            if not np.isfinite(pair_T).all():
                notes.append("the pair-only estimate failed: videos were ranked by D_med alone")
        else:
            sel = None
        if sel is not None and sel.video >= 0:
            best = candidates[sel.video]
            ranked = sorted((c for c in candidates if math.isfinite(c.d_total)), key=lambda c: c.d_total)
            top = agreement(np.stack([c.poses[c.medoid] for c in ranked[:TOP_CANDIDATES]])) \
                if len(ranked) > 1 else math.nan
            T = sel.pose.numpy()
            K_a = self._answer_K(views, best.K[best.medoid], best.frames.shape[2], best.frames.shape[1])
            scores = {"method": "interpose", "selected": sel.video, "d_med": _finite(best.d_med),
                      "d_total": _finite(best.d_total), "top_agreement": _finite(top),
                      "reliability": reliability(best.d_total, top)}
            method = "interpose"
        else:
            if candidates:
                notes.append("no generated video gave a pose: the answer is the pair-only estimate")
            if not np.isfinite(pair_T).all():
                raise ValueError("no pose could be estimated: the pose estimator found no confident points to place B "
                                 "from A (the images may show too little of one scene)")
            T, method = pair_T, "pair-only"
            K_a = self._answer_K(views, pair.K, views.side, views.side)
            scores = {"method": "pair-only", "selected": -1, "d_med": None, "d_total": None, "top_agreement": None,
                      "reliability": reliability(None, None)}
        K_views = views.K_views if views.K_views is not None else (K_a, K_a)
        scores.update({"reliability_rule": RELIABILITY_RULE, "videos": len(candidates),
                       "rotation_deg": _rotation_deg(T), "translation_dir": _direction(T), "baseline": 1.0,
                       "pair_only": {"rotation_deg": _rotation_deg(pair_T), "translation_dir": _direction(pair_T)},
                       "candidates": [c.summary() for c in candidates],
                       "intrinsics": "given" if views.K_given is not None else "estimated"})
        return PairPoseResult(views=views, method=method, T=T, K_views=K_views, pair_T=pair_T, candidates=candidates,
                              selected=scores["selected"], notes=notes, scores=scores)

    def _answer_K(self, views: PairViews, K_clip: np.ndarray, w: int, h: int) -> np.ndarray:
        from ..geometry.cameras import resize_intrinsics

        if views.K_views is not None:
            return views.K_views[0]
        K = torch.as_tensor(np.asarray(K_clip, np.float64))
        return resize_intrinsics(K, views.side / w, views.side / h).numpy()

    def _generated_cameras(self, result: PairPoseResult, progress: Progress) -> None:
        """The estimator on the whole selected video: its cameras for the generated bundle."""
        best = result.candidates[result.selected]
        h, w = best.frames.shape[1:3]
        cams = self.estimator.estimate([best.frames], *self._K(result.views, w, h), progress=progress)[0]
        c2w = cams.c2w.copy()
        norm = np.linalg.norm(c2w[-1, :3, 3]) if np.isfinite(c2w[-1]).all() else math.nan
        if math.isfinite(norm) and norm > 1e-12:
            c2w[:, :3, 3] /= norm
        result.generated_c2w, result.generated_K = c2w, cams.K

    def _identity(self, views: PairViews) -> PairPoseResult:
        from ..geometry.interpose import RELIABILITY_RULE

        T = np.eye(4)
        K = views.K_views if views.K_views is not None else (None, None)
        note = ("the two images are the same picture: the relative pose is the identity (no rotation, no "
                "baseline); nothing was generated")
        scores = {"method": "identical", "selected": -1, "d_med": None, "d_total": None, "top_agreement": None,
                  "reliability": "high", "reliability_rule": RELIABILITY_RULE, "videos": 0, "rotation_deg": 0.0,
                  "translation_dir": [0.0, 0.0, 0.0], "baseline": 0.0, "candidates": [],
                  "intrinsics": "given" if views.K_given is not None else "unknown"}
        return PairPoseResult(views=views, method="identical", T=T, K_views=K, pair_T=T, notes=[note], scores=scores,
                              roles=self.roles())


def _inverse(c2w: np.ndarray) -> np.ndarray:
    return np.linalg.inv(c2w) if np.isfinite(c2w).all() else np.full((4, 4), np.nan)


# ----------------------------------------------------------------------------------------
# Bundles


def _image_K(K_view: np.ndarray, crop: SquareCrop, side: int) -> np.ndarray:
    from ..geometry.cameras import crop_intrinsics, resize_intrinsics

    return crop_intrinsics(resize_intrinsics(torch.as_tensor(K_view), crop.side / side), -crop.left, -crop.top).numpy()


def _camera(i: int, c2w, K) -> CameraFrame:
    ok = c2w is not None and np.isfinite(c2w).all()
    return CameraFrame(index=i, c2w=np.asarray(c2w, np.float64) if ok else None, fx=float(K[0, 0]), fy=float(K[1, 1]),
                       cx=float(K[0, 2]), cy=float(K[1, 2]))


def _default_K(w: int, h: int) -> np.ndarray:
    """A 60 deg field of view across the longer side, for cameras nothing estimated: the
    identical-images answer, or a generated video whose estimate failed (its c2w are null then)."""
    f = 0.5 * max(w, h) / math.tan(math.radians(30))
    return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])


def result_bundles(result: PairPoseResult) -> tuple[Bundle, Optional[Bundle]]:
    """(the ``pair_pose`` bundle, the selected video's ``generate`` bundle or None)."""
    v = result.views
    c2w = [np.eye(4), result.c2w_b if result.method != "identical" else np.eye(4)]
    if v.same_size:
        frames = list(v.images)
        h, w = v.images[0].shape[:2]
        if v.K_given is not None:
            Ks = v.K_given
        elif result.K_views[0] is not None:
            Ks = tuple(_image_K(k, c, v.side) for k, c in zip(result.K_views, v.crops))
        else:
            Ks = (_default_K(w, h),) * 2
        view_note = None
    else:
        frames = list(v.views)
        h = w = v.side
        Ks = result.K_views if result.K_views[0] is not None else (_default_K(w, h),) * 2
        view_note = (f"the images have different sizes: the answer and these frames are their centred squares at "
                     f"{v.side} px")
    notes = list(result.notes) + ([view_note] if view_note else [])
    source = {"images": list(v.names), "sizes": [list(im.shape[1::-1]) for im in v.images],
              "model_view": [{"left": c.left, "top": c.top, "side": c.side} for c in v.crops], "view_side": v.side,
              "roles": result.roles, "notes": notes}
    gen = None
    if result.selected >= 0 and result.candidates:
        best = result.candidates[result.selected]
        gen_source = {"generated": True, "pair_bundle": "..", "candidate": best.index, "order": best.order,
                      "prompt": best.prompt, "seed": best.seed,
                      "note": "frames made by the generator between A (first) and B (last), not real footage; "
                              "cameras from the pose estimator on the whole video, A at the origin, baseline 1",
                      "roles": result.roles}
        source["generated"] = {"bundle": GENERATED_DIR, "candidate": best.index, "frames": len(best.frames),
                               "note": "the selected generated video (made up by the generator, not footage)"}
        fh, fw = best.frames.shape[1:3]
        cams = None
        if result.generated_c2w is not None:
            Kg = result.generated_K if np.isfinite(result.generated_K).all() else _default_K(fw, fh)
            cams = [_camera(i, c, Kg) for i, c in enumerate(result.generated_c2w)]
        gen = Bundle(task="generate", width=fw, height=fh, frame_count=len(best.frames), fps=8.0,
                     engine=result.roles.get("generator", {}).get("name", ""),
                     model_id=result.roles.get("generator", {}).get("model_id", ""), frames=list(best.frames),
                     cameras=cams, source=gen_source)
    main = Bundle(task="pair_pose", width=w, height=h, frame_count=2, fps=1.0, engine="interpose",
                  model_id=result.roles.get("pose_estimator", {}).get("model_id", ""), frames=frames,
                  cameras=[_camera(i, c, K) for i, (c, K) in enumerate(zip(c2w, Ks))], source=source,
                  scores=_json_safe(result.scores), timings=result.timings)
    return main, gen


def _json_safe(x):
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def check_output(out_dir) -> None:
    """Raise FileExistsError unless ``out_dir`` may receive a result (new, empty or a plain
    Parallax bundle). An earlier pair-pose result holds a ``generated/`` bundle, which
    ``backend.bundle.is_parallax_bundle`` does not accept yet: say so rather than call it a
    folder of somebody else's files."""
    from ..bundle import check_replaceable, is_parallax_bundle

    out = Path(out_dir)
    if (out / GENERATED_DIR).is_dir() and is_parallax_bundle(out / GENERATED_DIR):
        raise FileExistsError(f"{out}: holds an earlier pair-pose result (with its {GENERATED_DIR}/ video), which "
                              "Parallax does not replace yet; choose a new folder or remove that one")
    check_replaceable(out)


def write_result(result: PairPoseResult, out_dir) -> Path:
    """Write the pair bundle to ``out_dir`` and the selected video's bundle into its
    ``generated/`` folder (:func:`check_output` says which folders may be written)."""
    from ..bundle import write_bundle

    main, gen = result_bundles(result)
    check_output(out_dir)
    path = write_bundle(main, out_dir)
    if gen is not None:
        try:
            write_bundle(gen, path / GENERATED_DIR)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)  # ours, written a moment ago: no half result
            raise
    return path
