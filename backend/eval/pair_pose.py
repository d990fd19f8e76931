"""``python -m backend eval pair-pose``: relative pose of wide-baseline image pairs, every method
on the same pairs in one run (InterPose Tables 1-2: MRE, MTE, accuracy at 5/15/30 deg, AUC@30).

Methods (one generation per pair serves all the video methods: candidate i is the same video
whatever n is, so the first n candidates of an N-video run are exactly an n-video run):

- ``interpose``: the pipeline's answer with ``--videos`` N (lowest D_total, its medoid pose);
- ``interpose-dmed``: the same videos ranked by D_med alone (eq. 8 without eq. 9's pull toward the
  pair-only pose: tells whether that pull helps when the pair-only estimate is poor);
- ``pair-only``: the pose estimator on {A, B} alone (``--videos 0``);
- ``random-video``: the medoid of one video drawn at random among the N (no selection);
- ``oracle-video``: the video whose medoid is closest to the truth (the best selection can do);
- ``classical``: SIFT + ratio test + essential matrix (RANSAC) + cheirality, known K (OpenCV);
- ``real-video`` (synthetic, ``--real-video``): InterPose's subsets and medoid on the true
  rendered video from A to B: what a perfect generator would give this estimator.

Plus the curve of InterPose (and the oracle) against n = 1..N, and the error per reliability grade.
Data: ``synthetic-wide`` (``backend.data.pairs``: held-out scenes, rotation 30-120 deg,
co-visibility 5-50 % from ground-truth depth) or ``hololens`` (pairs of hololens-000 frames with
rotation >= 30 deg and co-visibility 5-40 % from the headset's depth, :func:`hololens_pairs`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import numpy as np

from .common import EvalError, fmt

DATA = ("synthetic-wide", "hololens")
METHODS = ("interpose", "interpose-dmed", "pair-only", "random-video", "oracle-video", "classical", "real-video")
HOLOLENS_MIN_ROTATION = 30.0
HOLOLENS_COVIS = (0.05, 0.40)
# Real time-of-flight depth is noisier than the renderer's: 10 % agreement counts as the same surface.
HOLOLENS_DEPTH_TOLERANCE = 0.10
HOLOLENS_STEP = 8  # frames between the first images of two pairs (the walk is 373 frames)


@dataclass
class EvalPair:
    name: str
    a: np.ndarray  # (H, W, 3) uint8
    b: np.ndarray
    K: np.ndarray  # (3, 3), both images
    T_gt: np.ndarray  # (4, 4) InterPose T_rel: B's world-to-camera in A's camera
    info: dict = field(default_factory=dict)
    video: Optional[Callable[[int], np.ndarray]] = None  # frames -> the real video from A to B


# ----------------------------------------------------------------------------------------
# Pairs


def synthetic_pairs(count: int, size: int = 128, textures=None, start: int = 0,
                    device: str = "cpu") -> Iterator[EvalPair]:
    from ..data.pairs import inbetween_video, wide_pairs

    for p in wide_pairs(count, size, size, str(textures) if textures else None, start, device):
        yield EvalPair(f"seed {p.seed}", p.rgb[0], p.rgb[1], p.K, p.relative_pose, p.info(),
                       video=lambda n, p=p: inbetween_video(p, n, device)[0])


def hololens_pairs(count: Optional[int] = None, root: Optional[str] = None,
                   step: int = HOLOLENS_STEP) -> Iterator[EvalPair]:
    """Wide-baseline pairs of hololens-000: for first frames i = 0, step, 2 step, ... the first
    later frame j whose rotation from i is >= 30 deg and whose co-visibility (from the headset's
    depth, at half resolution) is 5-40 %."""
    import torch
    from PIL import Image

    from ..data.pairs import covisibility, rotation_angle_deg
    from ..geometry.cameras import resize_intrinsics
    from .datasets import HOLOLENS, find_hololens, load_hololens

    folder = find_hololens(root)
    if folder is None:
        raise EvalError(f"{HOLOLENS} not found ({root or '../shared/data, /work/shared/data'}); give --root")
    files, c2w, K = load_hololens(folder)
    depth_dir = folder / "depth"
    K_half = resize_intrinsics(torch.as_tensor(K), 0.5)
    cache: dict = {}

    def depth(i):
        if i not in cache:
            d = np.asarray(Image.open(depth_dir / f"{files[i].stem}.png")).astype(np.float64) / 1000.0
            d = d[::2, ::2]
            cache[i] = torch.as_tensor(np.where(d > 0, d, np.inf))
        return cache[i]

    found = 0
    for i in range(0, len(files), step):
        for j in range(i + 1, len(files)):
            if rotation_angle_deg(c2w[i, :3, :3], c2w[j, :3, :3]) < HOLOLENS_MIN_ROTATION:
                continue
            a_to_b = torch.as_tensor(np.linalg.inv(c2w[j]) @ c2w[i])
            cv = (covisibility(depth(i), depth(j), K_half, a_to_b, HOLOLENS_DEPTH_TOLERANCE)
                  + covisibility(depth(j), depth(i), K_half, torch.linalg.inv(a_to_b), HOLOLENS_DEPTH_TOLERANCE)) / 2
            if HOLOLENS_COVIS[0] <= cv < HOLOLENS_COVIS[1]:
                rel = np.linalg.inv(c2w[i]) @ c2w[j]
                a, b = (np.asarray(Image.open(files[x]).convert("RGB")) for x in (i, j))
                yield EvalPair(f"frames {i}-{j}", a, b, K, np.linalg.inv(rel),
                               {"frames": [i, j], "rotation_deg": rotation_angle_deg(np.eye(3), rel[:3, :3]),
                                "covisibility": cv})
                found += 1
                break
        if count is not None and found >= count:
            return


# ----------------------------------------------------------------------------------------
# The classical peer


def classical_pose(a: np.ndarray, b: np.ndarray, K: np.ndarray, ratio: float = 0.8, min_side: int = 256) -> np.ndarray:
    """SIFT + Lowe's ratio test + essential matrix (RANSAC, 1 px) + cheirality with known K:
    T_rel (4x4, unit translation) or NaN when too few matches. Images smaller than ``min_side``
    are upscaled (integer factor, K follows): SIFT finds a few dozen keypoints on 128 px renders."""
    import cv2

    nan = np.full((4, 4), np.nan)
    scale = max(1, int(math.ceil(min_side / min(a.shape[:2]))))
    K = np.asarray(K, np.float64).copy()
    if scale > 1:
        a, b = (cv2.resize(x, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) for x in (a, b))
        K[:2, :2] *= scale
        K[:2, 2] = (K[:2, 2] + 0.5) * scale - 0.5
    sift = cv2.SIFT_create(nfeatures=4000)
    (ka, da), (kb, db) = (sift.detectAndCompute(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), None) for x in (a, b))
    if da is None or db is None or len(ka) < 5 or len(kb) < 5:
        return nan
    good = [m for m, n in (p for p in cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2) if len(p) == 2)
            if m.distance < ratio * n.distance]
    if len(good) < 8:
        return nan
    pa = np.float64([ka[m.queryIdx].pt for m in good])
    pb = np.float64([kb[m.trainIdx].pt for m in good])
    E, mask = cv2.findEssentialMat(pa, pb, K, method=cv2.RANSAC, prob=0.999, threshold=1.0)
    if E is None or E.shape[0] < 3:
        return nan
    _, R, t, _ = cv2.recoverPose(E[:3], pa, pb, K, mask=mask)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t[:, 0]  # x_B = R x_A + t: B's world-to-camera in A's camera
    return T


# ----------------------------------------------------------------------------------------
# Scoring


def pose_errors(T, T_gt) -> tuple[float, float]:
    """(rotation error, translation-direction error) in degrees; a missing pose fails at 180."""
    import torch

    from ..geometry.metrics import FAILED_DEG, rotation_errors_deg, translation_angle_errors_deg

    T = np.asarray(T, np.float64)
    if not np.isfinite(T).all():
        return FAILED_DEG, FAILED_DEG
    P, G = torch.as_tensor(T), torch.as_tensor(np.asarray(T_gt, np.float64))
    return float(rotation_errors_deg(P[:3, :3], G[:3, :3])), float(translation_angle_errors_deg(P[:3, 3], G[:3, 3]))


def summarise(errors: list) -> dict:
    """Errors [(rot, transl)] -> InterPose's metrics plus accuracy of max(rot, transl)."""
    from ..geometry.metrics import auc_at

    e = np.asarray(errors, np.float64).reshape(-1, 2)
    if not len(e):
        return {"pairs": 0}
    mx = e.max(1)
    out = {"MRE": float(e[:, 0].mean()), "MTE": float(e[:, 1].mean()),
           "median_rot": float(np.median(e[:, 0])), "median_transl": float(np.median(e[:, 1]))}
    for th in (5, 15, 30):
        out[f"acc@{th}"] = float((mx < th).mean())
        out[f"R_acc@{th}"] = float((e[:, 0] < th).mean())
        out[f"t_acc@{th}"] = float((e[:, 1] < th).mean())
    out["AUC@30"] = auc_at(e[:, 0], e[:, 1], 30)
    out["pairs"] = int(len(e))
    return out


def _medoid_pose(c) -> np.ndarray:
    return c.poses[c.medoid] if c.medoid >= 0 else np.full((4, 4), np.nan)


def score_pair(pair: EvalPair, result, real=None, seed: int = 0) -> dict:
    """Every method's errors on one pair from one pipeline run (``result``: PairPoseResult with N
    candidates or None when it failed) and, optionally, the real-video run (PairPoseResult)."""
    from ..geometry.interpose import select_video

    out: dict = {"name": pair.name, "info": pair.info, "errors": {}, "curve": {}, "oracle_curve": {}}
    nan = np.full((4, 4), np.nan)
    if result is None:
        for m in ("interpose", "interpose-dmed", "pair-only", "random-video", "oracle-video"):
            out["errors"][m] = pose_errors(nan, pair.T_gt)
        return out
    err = lambda T: pose_errors(T, pair.T_gt)  # noqa: E731
    pair_T = result.pair_T
    out["errors"]["pair-only"] = err(pair_T)
    cands = result.candidates
    if cands:
        out["errors"]["interpose"] = err(result.T)
        by_dmed = select_video([c.poses for c in cands], None)
        out["errors"]["interpose-dmed"] = err(by_dmed.pose.numpy() if by_dmed.video >= 0 else pair_T)
        rng = np.random.default_rng([seed, 0x5A11])
        out["errors"]["random-video"] = err(_medoid_pose(cands[int(rng.integers(len(cands)))]))
        per_video = [err(_medoid_pose(c)) for c in cands]
        for n in range(1, len(cands) + 1):
            sel = select_video([c.poses for c in cands[:n]], pair_T if np.isfinite(pair_T).all() else None)
            out["curve"][n] = err(sel.pose.numpy() if sel.video >= 0 else pair_T)
            out["oracle_curve"][n] = min(per_video[:n], key=lambda e: max(e))
        out["errors"]["oracle-video"] = out["oracle_curve"][len(cands)]
        out["d_total"], out["top_agreement"] = result.scores.get("d_total"), result.scores.get("top_agreement")
        out["reliability"] = result.scores.get("reliability")
        out["d_med_per_video"] = [c.d_med if math.isfinite(c.d_med) else None for c in cands]
        out["error_per_video"] = per_video
    if real is not None:
        out["errors"]["real-video"] = err(real.T)
        out["real_d_total"], out["real_reliability"] = real.scores.get("d_total"), real.scores.get("reliability")
    return out


# ----------------------------------------------------------------------------------------
# The run


def evaluate(pairs, pipe, real_pipe=None, classical: bool = True, log=print, budget_s: Optional[float] = None) -> dict:
    """Run ``pipe`` (a PairPosePipeline with N videos) on every pair, plus the classical solve and
    (``real_pipe``: a PairPosePipeline whose generator is :class:`RealVideo`) the real video.
    ``budget_s``: start no pair after that many seconds (the pairs done are scored)."""
    rows, times = [], {m: [] for m in METHODS}
    start = time.perf_counter()
    for i, pair in enumerate(pairs):
        if budget_s is not None and time.perf_counter() - start > budget_s:
            log(f"time budget of {budget_s:.0f} s spent: stopping after {i} pairs")
            break
        t0 = time.perf_counter()
        try:
            result = pipe(pair.a, pair.b, K=pair.K, generated_cameras=False)
        except ValueError as e:  # no pose at all: every method of the pipeline fails on this pair
            log(f"  {pair.name}: {e}")
            result = None
        dt = time.perf_counter() - t0
        real = None
        if real_pipe is not None and pair.video is not None:
            t1 = time.perf_counter()
            real_pipe.generator.source = pair.video
            try:
                real = real_pipe(pair.a, pair.b, K=pair.K, generated_cameras=False)
            except ValueError:
                real = None
            times["real-video"].append(time.perf_counter() - t1)
        row = score_pair(pair, result, real, seed=i)
        if result is not None:
            times["pair-only"].append(result.timings.get("pair-only", math.nan))
        times["interpose"].append(dt)
        if classical:
            t1 = time.perf_counter()
            row["errors"]["classical"] = pose_errors(classical_pose(pair.a, pair.b, pair.K), pair.T_gt)
            times["classical"].append(time.perf_counter() - t1)
        rows.append(row)
        log(f"[{i + 1}] {pair.name} " + ", ".join(f"{m} {e[0]:.1f}/{e[1]:.1f}" for m, e in row["errors"].items())
            + (f"; D_total {row['d_total']:.1f} ({row['reliability']})" if row.get("d_total") is not None else "")
            + f"; {dt:.0f} s")
    methods = [m for m in METHODS if any(m in r["errors"] for r in rows)]
    summary = {m: summarise([r["errors"][m] for r in rows if m in r["errors"]]) for m in methods}
    for m in methods:
        ts = [t for t in times[m] if math.isfinite(t)]
        summary[m]["s_per_pair"] = float(np.mean(ts)) if ts else None
    n_max = max((len(r["curve"]) for r in rows), default=0)
    curve = {n: {"interpose": summarise([r["curve"][n] for r in rows if n in r["curve"]]),
                 "oracle": summarise([r["oracle_curve"][n] for r in rows if n in r["oracle_curve"]])}
             for n in range(1, n_max + 1)}
    grades = {}
    for method, key in (("interpose", "reliability"), ("real-video", "real_reliability")):
        if any(r.get(key) for r in rows):
            grades[method] = {g: summarise([r["errors"][method] for r in rows if r.get(key) == g])
                              for g in ("high", "medium", "low")}
    return {"rows": rows, "summary": summary, "curve": curve, "grades": grades}


class RealVideo:
    """A "generator" that returns the true video from A to B (synthetic pairs only): InterPose
    with a perfect generator, to tell the generator's share of the error from the estimator's."""

    name = "real-video"
    model_id = "synthetic renderer"

    def __init__(self, max_frames: int = 16):
        self.max_frames = max_frames
        self.source: Optional[Callable[[int], np.ndarray]] = None

    def interpolate(self, first, last, frames, seed=0, prompt="", progress=None):
        import torch

        from ..pipelines.common import resize_frames

        video = self.source(frames)
        side = first.shape[0]
        if video.shape[1:3] != (side, side):  # the pipeline's views: centred squares at ``side``
            h, w = video.shape[1:3]
            s = min(h, w)
            video = video[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
            video = resize_frames(torch.as_tensor(video), side).numpy()
        # asked for B->A, the real video runs the other way
        d0, d1 = (float(np.abs(video[i].astype(np.float32) - first).mean()) for i in (0, -1))
        return video[::-1].copy() if d1 < d0 else video


# ----------------------------------------------------------------------------------------
# Tables


def table(summary: dict) -> str:
    head = "| method | MRE | MTE | acc@5 | acc@15 | acc@30 | R_acc@30 | t_acc@30 | AUC@30 | pairs | s/pair |"
    lines = [head, "|" + "---|" * 11]
    for m, s in summary.items():
        if not s.get("pairs"):
            continue
        lines.append(f"| {m} | {fmt(s['MRE'], 1)} | {fmt(s['MTE'], 1)} | {fmt(s['acc@5'], 1, True)} | "
                     f"{fmt(s['acc@15'], 1, True)} | {fmt(s['acc@30'], 1, True)} | {fmt(s['R_acc@30'], 1, True)} | "
                     f"{fmt(s['t_acc@30'], 1, True)} | {fmt(s['AUC@30'], 3)} | {s['pairs']} | "
                     f"{fmt(s.get('s_per_pair'), 1)} |")
    return "\n".join(lines)


def curve_table(curve: dict) -> str:
    lines = ["| videos n | InterPose MRE | MTE | AUC@30 | oracle video MRE | MTE | AUC@30 |", "|" + "---|" * 7]
    for n, c in curve.items():
        i, o = c["interpose"], c["oracle"]
        lines.append(f"| {n} | {fmt(i['MRE'], 1)} | {fmt(i['MTE'], 1)} | {fmt(i['AUC@30'], 3)} | "
                     f"{fmt(o['MRE'], 1)} | {fmt(o['MTE'], 1)} | {fmt(o['AUC@30'], 3)} |")
    return "\n".join(lines)


def grade_table(grades: dict) -> str:
    lines = ["| method | reliability | pairs | MRE | MTE | acc@30 |", "|---|---|---|---|---|---|"]
    for method, per_grade in grades.items():
        for g, s in per_grade.items():
            lines.append(f"| {method} | {g} | {s.get('pairs', 0)} | {fmt(s.get('MRE'), 1)} | {fmt(s.get('MTE'), 1)} | "
                         f"{fmt(s.get('acc@30'), 1, True)} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------
# Command line (``eval/cli.py`` adds the subcommand)


def add_parser(sub, common: Callable) -> None:
    from ..pipelines.pair_pose import DEFAULT_VIDEOS, RANDOM_SUBSETS, SUBSET_LEFT_OUT

    p = sub.add_parser("pair-pose", help="relative pose of wide-baseline image pairs (InterPose Table 1)",
                       description="InterPose, pair-only, a random video, the oracle video and a classical "
                                   "two-view solve on the same wide-baseline pairs; MRE, MTE, accuracy at 5/15/30 "
                                   "deg of max(rot, transl), AUC@30, the curve against n videos.")
    p.add_argument("--data", choices=DATA, default="synthetic-wide")
    p.add_argument("--pairs", type=int, default=100, help="number of pairs (default 100; hololens: all found if fewer)")
    p.add_argument("--videos", type=int, default=DEFAULT_VIDEOS, help=f"videos per pair N (default {DEFAULT_VIDEOS})")
    p.add_argument("--frames", type=int, help="frames per video (default: the model's window)")
    p.add_argument("--k", type=int, default=None,
                   help=f"frames per subset (default: a video's frames but {SUBSET_LEFT_OUT})")
    p.add_argument("--subsets", type=int, default=RANDOM_SUBSETS, help="random subsets per video (+1 uniform)")
    p.add_argument("--steps", type=int, default=25, help="denoising steps per video")
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--estimator", default="unified", help="pose estimator role: unified or colmap")
    p.add_argument("--size", type=int, default=128, help="synthetic-wide: image side in pixels")
    p.add_argument("--textures", help="synthetic-wide: photo textures folder or 'none' (default: ../shared/textures)")
    p.add_argument("--start", type=int, default=0, help="synthetic-wide: first pair scene offset")
    p.add_argument("--root", help="hololens: the clip folder")
    p.add_argument("--real-video", action="store_true",
                   help="synthetic-wide: also InterPose on the true rendered video (a perfect generator)")
    p.add_argument("--no-classical", action="store_true", help="skip the SIFT two-view solve")
    p.add_argument("--budget-s", type=float, help="start no new pair after this many seconds (score the pairs done)")
    common(p)


def run(args, finish) -> int:
    from ..pipelines.pair_pose import PairPosePipeline
    from ..pipelines.pair_roles import make_roles
    from .datasets import find_textures

    if args.pairs < 1 or args.videos < 0:
        raise EvalError("--pairs must be >= 1 and --videos >= 0")
    try:
        gen, est = make_roles("unified", args.estimator, model_path=args.model, device=args.device,
                              steps=args.steps, guidance=args.guidance)
        pipe = PairPosePipeline(gen, est, videos=args.videos, frames=args.frames, k=args.k,
                                random_subsets=args.subsets)
        frames = pipe.frames_per_video() if args.videos else (args.frames or gen.max_frames)
        k = pipe.subset_size(frames)
    except ValueError as e:
        raise EvalError(str(e)) from None
    real_pipe = None
    if args.data == "synthetic-wide":
        textures = find_textures(args.textures)
        pairs = synthetic_pairs(args.pairs, args.size, textures, args.start, args.device)
        desc = (f"{args.pairs} held-out wide-baseline synthetic pairs (backend/data/pairs.py, scene offset "
                f"{args.start}, {args.size}x{args.size}, {'photo textures' if textures else 'procedural materials'}; "
                "rotation 30-120 deg, co-visibility 5-50 %)")
        if args.real_video:
            real_pipe = PairPosePipeline(RealVideo(frames), est, videos=1, frames=frames, k=args.k,
                                         random_subsets=args.subsets)
    else:
        if args.real_video:
            raise EvalError("--real-video needs rendered pairs (--data synthetic-wide)")
        pairs = hololens_pairs(args.pairs, args.root)
        desc = (f"up to {args.pairs} pairs of hololens-000 (rotation >= {HOLOLENS_MIN_ROTATION:g} deg, co-visibility "
                f"{100 * HOLOLENS_COVIS[0]:g}-{100 * HOLOLENS_COVIS[1]:g} % from the headset depth)")
    print(f"eval pair-pose: {desc}; N = {args.videos} videos of {frames} frames, {args.steps} steps, guidance "
          f"{args.guidance}, k = {k}, {args.subsets}+1 subsets; estimator {args.estimator}; device {args.device}",
          flush=True)
    t0 = time.perf_counter()
    res = evaluate(pairs, pipe, real_pipe, classical=not args.no_classical, log=lambda s: print(s, flush=True),
                   budget_s=args.budget_s)
    total = time.perf_counter() - t0
    n_pairs = len(res["rows"])
    notes = [f"Data: {desc.replace(str(args.pairs), str(n_pairs), 1)}"
             + (f" (as many as fit in a {args.budget_s:.0f} s budget)" if args.budget_s and n_pairs < args.pairs
                else "")
             + ". Intrinsics given to every method.",
             "Every method on the same pairs; accuracy: fraction of pairs with max(rotation, translation-direction) "
             "error under the threshold; errors in degrees, a failed estimate counts 180. "
             + (f"Generation: {args.videos} videos per pair of {frames} frames, {args.steps} steps, guidance "
                f"{args.guidance}; " if args.videos else "No generated videos; ")
             + (f"subsets k = {k} of {frames} frames, {args.subsets} random + 1 uniform; "
                if args.videos or real_pipe is not None else "")
             + f"model {args.model or 'parallax-tiny (shipped)'}; whole run {total:.0f} s."]
    text = (table(res["summary"]) + "\n\nError against the number of videos n (the first n candidates of each "
            "pair):\n\n" + curve_table(res["curve"]) + "\n\nError by reliability grade (the rule in "
            "backend/geometry/interpose.py):\n\n"
            + grade_table(res["grades"]))
    finish(args, f"Pose from an image pair ({args.data})", text, notes,
           {"data": args.data, "pairs": n_pairs, "videos": args.videos, "frames": frames, "steps": args.steps,
            "guidance": args.guidance, "k": k, "subsets": args.subsets, "estimator": args.estimator,
            "total_s": total, **res})
    return 0
