"""``python -m backend eval v2c|t2vc|contact-sheet``: evaluate engines and the unified model.

    python -m backend eval v2c --engines unified,colmap --data heldout --clips 32 --json out.json
    python -m backend eval v2c --engines unified,colmap --data cycles --root data/cycles_heldout
    python -m backend eval v2c --engines unified,colmap --data hololens --known-k
    python -m backend eval t2vc --videos 32
    python -m backend eval contact-sheet --prompts 8 --out docs/img/t2v_contact_sheet.png
    python -m backend eval pair-pose --data synthetic-wide|hololens --pairs 100 --videos 4
    python -m backend eval 4d --data heldout-dynamic|hololens --clips 16 --frames 48
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from .common import EvalError, engine_options, hardware, resolve_device, write_json

DATA = ("heldout", "cycles", "hololens")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="unified model checkpoint folder or hub id (default: the shipped parallax-tiny)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--threads", type=int, help="torch CPU threads (on a small shared machine 1 is often fastest)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write every figure (per clip too) as JSON")
    p.add_argument("--markdown", type=Path, metavar="MD", help="append the table, with date and hardware, to a markdown file")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="{v2c,t2vc,contact-sheet,pair-pose,4d}", required=True)

    v = sub.add_parser("v2c", help="V2C camera accuracy of engines on the same clips (JOG3R Table 1)",
                       description="Run camera engines on the same clips and score them pair by pair like "
                                   "JOG3R Table 1 (rot/transl err, RRA@5, RTA@5, mAA@30, registered frames, s/clip).")
    v.add_argument("--engines", default="unified,colmap", help="comma-separated engine names (default unified,colmap)")
    v.add_argument("--data", choices=DATA, default="heldout",
                   help="heldout: synthetic held-out seeds rendered now; cycles: the Cycles set in --root; "
                        "hololens: hololens-000 windows (strides 1,2,4,8 from frames 0,120,240)")
    v.add_argument("--root", help="cycles: the folder tools.cycles_set wrote; hololens: the clip folder")
    v.add_argument("--clips", type=int, help="number of clips/windows (default: heldout 32, cycles/hololens all)")
    v.add_argument("--start", type=int, default=0, help="heldout: first held-out seed offset")
    v.add_argument("--frames", type=int, default=16, help="heldout: frames per clip")
    v.add_argument("--size", type=int, default=128, help="heldout: frame height and width in pixels")
    v.add_argument("--textures", help="heldout: photo texture folder, or 'none' (default: ../shared/textures if present)")
    v.add_argument("--known-k", action="store_true", help="give the engines the true intrinsics")
    v.add_argument("--option", action="append", default=[], metavar="[ENGINE:]KEY=VALUE",
                   help="solve option for one engine (unified:align=false) or all (KEY=VALUE); repeatable")
    v.add_argument("--warmup", type=int, help="untimed solves of the first clip per model engine "
                                              "(default 1 on CUDA, 0 on CPU)")
    _common(v)

    t = sub.add_parser("t2vc", help="T2V+C cameras vs V2C on the generated videos (JOG3R sec. 4.3)",
                       description="Generate videos with T2V+C from held-out captions, solve them again with V2C, "
                                   "and report how far the two camera sets differ (pairwise relative poses).")
    t.add_argument("--videos", type=int, default=32, help="number of videos / held-out captions (default 32)")
    t.add_argument("--steps", type=int, default=25, help="denoising steps (default 25)")
    t.add_argument("--guidance", type=float, default=5.0, help="classifier-free guidance scale (default 5)")
    t.add_argument("--frames", type=int, help="frames per video (default: the model's window)")
    t.add_argument("--start", type=int, default=0, help="first held-out seed offset for the captions")
    t.add_argument("--seed", type=int, default=0, help="noise seed of the first video (video i uses seed + i)")
    t.add_argument("--warmup", type=int, help="untimed generations first (default 1 on CUDA, 0 on CPU)")
    _common(t)

    c = sub.add_parser("contact-sheet", help="a PNG grid of T2V videos with their prompts",
                       description="Generate one video per prompt (caption-generator vocabulary) and lay them out "
                                   "as rows of frames with the prompt under each row.")
    c.add_argument("--prompts", type=int, default=8, help="number of prompts / rows (default 8)")
    c.add_argument("--out", type=Path, default=Path("docs/img/t2v_contact_sheet.png"), help="PNG path")
    c.add_argument("--frames-shown", type=int, default=6, help="frames per row, evenly spaced (default 6)")
    c.add_argument("--scale", type=int, default=2, help="pixel upscale of the frames on the sheet (default 2)")
    c.add_argument("--colors", type=int, default=256, help="palette colours of the PNG, 0 for full colour (default 256)")
    c.add_argument("--steps", type=int, default=25, help="denoising steps (default 25)")
    c.add_argument("--guidance", type=float, default=5.0)
    c.add_argument("--frames", type=int, help="frames per video (default: the model's window)")
    c.add_argument("--start", type=int, default=0, help="first held-out seed offset for the prompts")
    c.add_argument("--seed", type=int, default=0)
    _common(c)

    from .pair_pose import add_parser as _pair_pose_parser

    _pair_pose_parser(sub, _common)

    d = sub.add_parser("4d", help="dynamic reconstruction (Geo4D): ours vs point-map-only vs chained V2C vs colmap",
                       description="Reconstruct the same clips with every method and score video depth (Abs Rel, "
                                   "delta<1.25 after one scale and shift per clip, in depth), trajectories (ATE, "
                                   "RPE-T, RPE-R after Sim(3)), the dynamic mask (IoU) and seconds per frame.")
    d.add_argument("--data", choices=("heldout-dynamic", "hololens"), default="heldout-dynamic",
                   help="heldout-dynamic: held-out synthetic seeds with 1-4 moving objects, rendered now; "
                        "hololens: hololens-000 (frames 0, 120, 240 at stride 2; ToF depth)")
    d.add_argument("--root", help="hololens: the clip folder (default ../shared/data/hololens-000)")
    d.add_argument("--clips", type=int, help="number of clips (default: heldout-dynamic 16, hololens all 3)")
    d.add_argument("--frames", type=int, default=48, help="frames per clip (default 48)")
    d.add_argument("--start", type=int, default=0, help="heldout-dynamic: first held-out seed offset")
    d.add_argument("--size", type=int, default=128, help="heldout-dynamic: frame height and width in pixels")
    d.add_argument("--textures", help="heldout-dynamic: photo texture folder, or 'none' (default: ../shared/textures "
                                      "if present)")
    d.add_argument("--methods", default=",".join(("ours", "pointmap-only", "v2c-chained", "colmap")),
                   help="comma-separated subset of ours,pointmap-only,v2c-chained,colmap (default all)")
    d.add_argument("--iterations", type=int, default=500, help="Adam iterations of the joint alignment (default 500)")
    _common(d)


def main(args) -> int:
    try:
        if args.threads is not None:
            if args.threads < 1:
                raise EvalError("--threads must be at least 1")
            import torch

            torch.set_num_threads(args.threads)
        args.device = resolve_device(args.device)
        if args.model and not Path(args.model).exists():
            looks_like_hub_id = args.model.count("/") == 1 and not args.model.startswith((".", "/", "~"))
            if not looks_like_hub_id:
                raise EvalError(f"--model {args.model}: no such folder (give a checkpoint folder or a hub id)")
        return {"v2c": run_v2c, "t2vc": run_t2vc, "contact-sheet": run_contact_sheet,
                "pair-pose": run_pair_pose, "4d": run_4d}[args.what](args)
    except EvalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _header(title: str, lines: list[str]) -> str:
    return "\n".join([f"## {title}", "", f"Measured {dt.date.today().isoformat()} by `python -m backend "
                      f"{' '.join(sys.argv[1:]) if sys.argv[1:2] == ['eval'] else 'eval'}` on {hardware()}.",
                      *lines, ""])


def _finish(args, title: str, table: str, notes: list[str], payload: dict) -> None:
    text = _header(title, notes) + "\n" + table + "\n"
    print()
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        old = args.markdown.read_text().rstrip("\n") + "\n\n" if args.markdown.exists() else ""
        args.markdown.write_text(old + text)
        print(f"appended to {args.markdown}")
    if args.json:
        write_json(args.json, {"command": "eval " + args.what, "date": dt.datetime.now().isoformat(timespec="seconds"),
                               "hardware": hardware(), "device": args.device, **payload})


def _warmup(args) -> int:
    if args.warmup is not None:
        if args.warmup < 0:
            raise EvalError("--warmup must be >= 0")
        return args.warmup
    return 1 if args.device.startswith("cuda") else 0


# ----------------------------------------------------------------------------------------


def run_v2c(args) -> int:
    from . import datasets, v2c

    engines = v2c.check_engines(args.engines)
    options = engine_options(args.option, engines)
    if args.clips is not None and args.clips < 1:
        raise EvalError("--clips must be at least 1")
    if args.data == "heldout" and (args.frames < 2 or args.size < 16):
        raise EvalError("held-out clips need --frames >= 2 and --size >= 16")
    if args.root and args.data == "heldout":
        raise EvalError("--root is for --data cycles or hololens (held-out clips are rendered in memory)")
    if args.data == "heldout":
        count = 32 if args.clips is None else args.clips
        textures = datasets.find_textures(args.textures)
        clips = datasets.heldout_clips(count, args.frames, args.size, args.size, textures, args.start, args.device)
        desc = (f"{count} held-out synthetic clips (seeds from offset {args.start}), {args.frames} frames "
                f"{args.size}x{args.size}, {'photo textures from ' + str(textures) if textures else 'procedural materials'}")
        data_info = {"clips": count, "start": args.start, "frames": args.frames, "size": args.size,
                     "textures": textures}
    elif args.data == "cycles":
        folders = datasets.cycles_folders(args.root)
        count = len(folders) if args.clips is None else min(args.clips, len(folders))
        clips = datasets.cycles_clips(args.root, count)
        desc = f"{count} clips of the Cycles domain-shift set in {args.root}"
        data_info = {"clips": count, "root": args.root}
    else:
        root = datasets.find_hololens(args.root)
        if root is None:
            raise EvalError(f"{datasets.HOLOLENS} not found ({args.root or '../shared/data, /work/shared/data'}); "
                            "give its folder with --root")
        n_win = len(datasets.window_indices(len(datasets.load_hololens(root)[0])))
        count = n_win if args.clips is None else min(args.clips, n_win)
        clips = datasets.hololens_clips(str(root), count)
        desc = f"{count} windows of 16 frames of {datasets.HOLOLENS} (strides 1,2,4,8 from frames 0,120,240)"
        data_info = {"clips": count, "root": root}
    print(f"eval v2c: {', '.join(engines)} on {desc}; intrinsics {'given' if args.known_k else 'estimated'}; "
          f"device {args.device}", flush=True)

    built = {}
    load_s = {}
    for name in engines:
        built[name], load_s[name] = v2c.make_engine(name, args.device, args.model)
        if load_s[name] > 0.01:
            print(f"{name}: model loaded in {load_s[name]:.1f} s", flush=True)
    t0 = time.perf_counter()
    results = v2c.evaluate(built, clips, known_k=args.known_k, options=options, warmup=_warmup(args),
                           log=lambda s: print(s, flush=True))
    total = time.perf_counter() - t0
    for name, res in results.items():
        res["summary"]["load_s"] = load_s[name]
        res["options"] = options[name]
    notes = [f"Data: {desc}. Intrinsics {'given (the true K)' if args.known_k else 'estimated by each engine'}.",
             "Pairwise metrics over all frame pairs of each clip (pairs with no true baseline judged on rotation "
             "only; unregistered frames fail their pairs), averaged over clips; accuracies in percent.",
             f"Engine options: {options}; model {args.model or 'parallax-tiny (shipped)'}; device {args.device}; "
             f"whole run {total:.0f} s."]
    extra = {}
    best_of = v2c.oracle(results)
    if best_of is not None:  # what a perfect per-clip chooser between colmap and unified would reach
        extra["oracle"] = best_of
        notes.append(f"Oracle (the better of colmap and unified per clip, by ground truth): mAA@30 "
                     f"{100 * best_of['mean']:.2f} over {best_of['clips']} clips (colmap better or equal on "
                     f"{best_of['picked']['colmap']}, unified on {best_of['picked']['unified']}).")
    choices = v2c.auto_choices(results)
    if choices is not None:
        extra["auto_choices"] = choices
        notes.append("auto kept: " + ", ".join(f"{k} on {n} clips" for k, n in choices["kept"].items()) + ".")
        if "oracle" in choices:  # auto beside its own candidates, on the very same solves
            notes.append("auto's own candidates, same solves: mAA@30 " + ", ".join(
                f"{c} {100 * v:.2f}" for c, v in choices["candidates"].items()) + f", per-clip better of them "
                f"(oracle) {100 * choices['oracle']:.2f}, auto's choice {100 * choices['auto']:.2f}.")
    _finish(args, f"V2C ({args.data})", v2c.table(results), notes,
            {"data": args.data, "data_info": data_info, "known_k": args.known_k, "engines": results,
             "model": args.model, "total_s": total, **extra})
    return 0


def run_t2vc(args) -> int:
    from . import t2vc

    res = t2vc.evaluate_t2vc(args.videos, args.model, args.device, args.steps, args.guidance, args.frames,
                             args.start, args.seed, warmup=_warmup(args), log=lambda s: print(s, flush=True))
    notes = [f"{args.videos} held-out captions (offset {args.start}); {res['frames']} frames "
             f"{res['size']}x{res['size']}, {args.steps} steps, guidance {args.guidance}; model {res['model']}.",
             "Differences are pairwise over all frame pairs of a video: T2V+C cameras (from the last denoising "
             "pass) vs V2C on the generated frames (the reference), averaged over videos."]
    _finish(args, "T2V+C self-consistency", t2vc.table(res), notes, res)
    return 0


def run_contact_sheet(args) -> int:
    from .contact_sheet import make_contact_sheet

    res = make_contact_sheet(args.prompts, args.out, args.frames_shown, args.model, args.device, args.steps,
                             args.guidance, args.frames, args.start, args.seed, args.scale, args.colors,
                             log=lambda s: print(s, flush=True))
    if args.json:
        write_json(args.json, {"command": "eval contact-sheet", "hardware": hardware(), "device": args.device, **res})
    return 0


def run_pair_pose(args) -> int:
    from . import pair_pose

    return pair_pose.run(args, _finish)


def run_4d(args) -> int:
    from . import datasets, fourd, v2c

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in fourd.METHODS]
    if unknown or not methods or len(set(methods)) != len(methods):
        raise EvalError(f"--methods {args.methods}: give a subset of {','.join(fourd.METHODS)}, each once")
    if args.frames < 2 or args.iterations < 1:
        raise EvalError("--frames must be at least 2 and --iterations at least 1")
    if args.data == "heldout-dynamic":
        count = 16 if args.clips is None else args.clips
        textures = datasets.find_textures(args.textures)
        clips = fourd.heldout_dynamic_clips(count, args.frames, args.size, textures, args.start, args.device)
        from ..data.splits import heldout_seeds

        seeds = heldout_seeds(count, start=args.start)
        desc = (f"{count} held-out synthetic clips with moving objects (seeds {seeds[0]}-{seeds[-1]}), "
                f"{args.frames} frames {args.size}x{args.size}, "
                f"{'photo textures from ' + str(textures) if textures else 'procedural materials'}")
    else:
        clips = fourd.hololens_clips(args.root, args.clips, args.frames)
        desc = f"hololens-000, {args.frames} frames at stride {fourd.HOLOLENS_STRIDE} from frames 0, 120, 240"
    print(f"eval 4d: {', '.join(methods)} on {desc}; device {args.device}", flush=True)
    from ..pipelines.reconstruct import Reconstructor
    from .common import unified_model

    reconstructor = Reconstructor(model=unified_model(args.model, args.device), device=args.device)
    engines = {}
    if "v2c-chained" in methods:
        engines["v2c-chained"], _ = v2c.make_engine("unified", args.device, args.model)
    if "colmap" in methods:
        engines["colmap"], _ = v2c.make_engine("colmap", args.device, args.model)
    t0 = time.perf_counter()
    results = fourd.evaluate(clips, methods, reconstructor, engines, iterations=args.iterations,
                             log=lambda s: print(s, flush=True))
    total = time.perf_counter() - t0
    notes = [f"Data: {desc}.",
             "Depth: Abs Rel and delta<1.25 in depth after one least-absolute-deviation scale and shift per clip, "
             "at the frames' resolution (sky / missing depth excluded). Trajectory: ATE, RPE-T, RPE-R after Sim(3) on "
             "the frames a method registered. Dynamic IoU at the model's map size. Means over clips.",
             f"ours = multi-modal alignment (Geo4D weights 1/2/0.005/0.015), pointmap-only = the same with the "
             f"other weights 0, {args.iterations} joint iterations; model {args.model or 'parallax-tiny (shipped)'}; "
             f"device {args.device}; whole run {total:.0f} s."]
    _finish(args, f"Dynamic reconstruction ({args.data})", fourd.table(results), notes,
            {"data": args.data, "methods": results, "iterations": args.iterations, "total_s": total,
             "frames": args.frames})
    return 0
