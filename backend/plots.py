"""Figures an engine draws of its result, as PNG bytes for the bundle's ``plots/`` part.

``quality_plot(scores)`` is the solve's per-frame quality: reprojection error per frame (bars,
pixels), the track count per frame (a line, right axis), the frames with no solution marked in
red along the bottom, and the mean error and solved fraction in the title. It is drawn for the
add-on's panel, where it is shown about 640 px wide, so it is drawn at that size (no scaling
blur) with fonts that stay legible there.

matplotlib is imported when a figure is drawn (never at import time), and draws on an Agg
canvas without pyplot: the backend runs headless, often in a worker thread or process, and must
not open a window, touch a display or share pyplot's global figures.
"""

from __future__ import annotations

import io
import math
from typing import Optional

QUALITY_KEYS = ("frame_reprojection_error_px", "frame_tracks", "frame_solved")
QUALITY_SIZE_PX = (640, 240)
_DPI = 100
_ERROR_COLOUR, _TRACK_COLOUR, _UNSOLVED_COLOUR = "#3b6fb6", "#e08a1e", "#d62728"


class PlotError(ValueError):
    """The scores cannot be drawn: a key is missing or the per-frame lists disagree."""


def _per_frame(scores: dict) -> tuple[list, list, list]:
    missing = [k for k in QUALITY_KEYS if not isinstance(scores.get(k), list)]
    if missing:
        raise PlotError(f"the solve's scores have no per-frame {', '.join(missing)}: nothing to plot "
                        f"(the quality plot needs {', '.join(QUALITY_KEYS)})")
    errors, tracks, solved = (scores[k] for k in QUALITY_KEYS)
    if not (len(errors) == len(tracks) == len(solved)) or not solved:
        raise PlotError(f"per-frame scores of different lengths (errors {len(errors)}, tracks {len(tracks)}, "
                        f"solved {len(solved)}) or none at all")
    clean = []
    for i, e in enumerate(errors):
        if e is not None and not (isinstance(e, (int, float)) and math.isfinite(e) and e >= 0):
            raise PlotError(f"frame_reprojection_error_px[{i}] is {e!r}, expected a number of pixels or None")
        clean.append(None if e is None else float(e))
    return clean, [int(t) for t in tracks], [bool(s) for s in solved]


def _ranges(flags: list) -> list[tuple[int, int]]:
    """[(first, last)] of the runs of True in ``flags``."""
    out, start = [], None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append((start, i - 1))
            start = None
    return out


def quality_title(scores: dict) -> str:
    """"mean reprojection error 0.31 px, 15/16 frames solved (94 %)". The mean is the solve's own
    ``mean_reprojection_error_px`` (over all observations, what the panel's summary line says)
    when the scores have it, else the mean of the frames' means."""
    errors, _, solved = _per_frame(scores)
    done = [e for e, s in zip(errors, solved) if s and e is not None]
    overall = scores.get("mean_reprojection_error_px")
    if not isinstance(overall, (int, float)) or isinstance(overall, bool):
        overall = sum(done) / len(done) if done else None
    mean = f"mean reprojection error {overall:.2f} px" if overall is not None else "no reprojection error"
    n = len(solved)
    return f"{mean}, {sum(solved)}/{n} frames solved ({100.0 * sum(solved) / n:.0f} %)"


def quality_plot(scores: dict, size_px: tuple[int, int] = QUALITY_SIZE_PX, frame_numbers: Optional[list] = None) -> bytes:
    """The per-frame solve quality as PNG bytes of ``size_px`` (width, height).

    ``scores``: a solve bundle's scores, with the per-frame lists ``frame_reprojection_error_px``
    (pixels, None where unsolved), ``frame_tracks`` and ``frame_solved``. ``frame_numbers``: the
    frame labels of the x axis (default 0..n-1). Raises :class:`PlotError` naming what is
    missing or inconsistent."""
    errors, tracks, solved = _per_frame(scores)
    n = len(solved)
    xs = list(frame_numbers) if frame_numbers is not None else list(range(n))
    if len(xs) != n:
        raise PlotError(f"{len(xs)} frame numbers for {n} frames")

    from matplotlib import ticker
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global figure state, safe in threads

    width, height = size_px
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)  # Agg, whatever backend the process chose: headless, no window
    ax = fig.add_subplot(1, 1, 1)
    tr = ax.twinx()
    pos = list(range(n))
    bars = [e if (s and e is not None) else 0.0 for e, s in zip(errors, solved)]
    ax.bar(pos, bars, width=0.8 if n < 200 else 1.0, color=_ERROR_COLOUR, linewidth=0, label="reprojection error")
    tr.plot(pos, tracks, color=_TRACK_COLOUR, linewidth=1.2, marker="." if n <= 60 else None, markersize=3,
            label="tracks")
    top = max([b for b in bars] + [0.0])
    ax.set_ylim(0, max(top * 1.3, 1.0))  # headroom for the legend
    tr.set_ylim(0, max(max(tracks) * 1.3, 1.0))
    unsolved = [not s for s in solved]
    for first, last in _ranges(unsolved):
        ax.axvspan(first - 0.5, last + 0.5, color=_UNSOLVED_COLOUR, alpha=0.18, linewidth=0)
    if any(unsolved):
        ax.scatter([i for i in pos if unsolved[i]], [0.0] * sum(unsolved), marker="x", color=_UNSOLVED_COLOUR,
                   s=22, zorder=5, clip_on=False, label="not solved")
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_xlabel("frame", fontsize=8, labelpad=1)
    ax.set_ylabel("error (px)", fontsize=8, color=_ERROR_COLOUR)
    tr.set_ylabel("tracks", fontsize=8, color=_TRACK_COLOUR)
    ax.tick_params(labelsize=7)
    tr.tick_params(labelsize=7)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=12, integer=True))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(
        lambda v, _: str(xs[int(v)]) if 0 <= int(v) < n and float(v).is_integer() else ""))
    ax.set_title(quality_title(scores), fontsize=9)
    handles = [h for a in (ax, tr) for h in a.get_legend_handles_labels()[0]]
    ax.legend(handles=handles, fontsize=7, loc="upper left", ncol=3, frameon=False, borderaxespad=0.2)
    fig.subplots_adjust(left=0.08, right=0.91, top=0.88, bottom=0.18)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=_DPI)
    return out.getvalue()
