"""What every command that writes one result bundle does around its work (``solve``,
``reconstruct``): refuse an ``--out`` Parallax may not replace before any work, print progress,
write the bundle (and ``--zip``) atomically, and turn failures into one line ``error: ...``
with exit status 1 (bad input, no result) or 130 (cancelled, interrupted)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

from .runtime import Cancelled


def run_to_bundle(args, work: Callable, summary: Callable) -> int:
    """``work(progress) -> Bundle`` with ``args.out``, ``args.zip`` and ``args.quiet`` handled;
    prints ``summary(bundle, seconds)`` and where the bundle went."""
    from .bundle import check_replaceable, check_zip_replaceable, write_bundle, zip_bundle

    try:
        # An --out that write_bundle would refuse (a folder of other files) is refused now,
        # not after the work: Parallax replaces only folders it wrote.
        check_replaceable(args.out)
        zip_path = Path(args.out).with_name(Path(args.out).name + ".zip")
        if args.zip:
            check_zip_replaceable(zip_path)
        if args.quiet:
            quiet_libraries()
        t0 = time.perf_counter()
        bundle = work(None if args.quiet else printer())
        out = write_bundle(bundle, args.out)
        if args.zip:
            zip_bundle(out, zip_path)
    except Cancelled:
        print("error: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\nerror: interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, ValueError, OSError) as e:  # EngineError, VideoError (a ValueError)
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 1
    print(summary(bundle, time.perf_counter() - t0))
    print(f"wrote {out}")
    return 0


def printer():
    """A progress callback printing a line per stage and per 5 %."""
    last = {"stage": None, "pct": -1}

    def progress(fraction: float, stage: str):
        pct = int(fraction * 100)
        if stage != last["stage"] or pct >= last["pct"] + 5:
            print(f"[{pct:3d}%] {stage}", flush=True)
            last.update(stage=stage, pct=pct)

    return progress


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def quiet_libraries() -> None:
    """--quiet also silences the libraries' own progress bars (checkpoint loading)."""
    import importlib
    import importlib.util

    for name in ("diffusers", "transformers"):
        if importlib.util.find_spec(name) is not None:
            logging = importlib.import_module(f"{name}.utils.logging")
            logging.disable_progress_bar()
            logging.set_verbosity_error()
    if importlib.util.find_spec("huggingface_hub") is not None:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
