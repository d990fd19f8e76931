"""The solve's quality plot (backend/plots.py): a PNG of the panel's size from the per-frame
scores, and a clear error when the scores are not there."""

from __future__ import annotations

import struct
import sys
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from backend.plots import QUALITY_SIZE_PX, PlotError, quality_plot, quality_title  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _scores(n=24, unsolved=(5, 6, 7, 19)):
    solved = [i not in unsolved for i in range(n)]
    return {"frame_solved": solved,
            "frame_reprojection_error_px": [0.2 + 0.02 * i if s else None for i, s in enumerate(solved)],
            "frame_tracks": [300 + 5 * i if s else 0 for i, s in enumerate(solved)]}


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_quality_plot_is_a_png_of_the_panel_size():
    png = quality_plot(_scores())
    assert _png_size(png) == QUALITY_SIZE_PX == (640, 240)
    assert _png_size(quality_plot(_scores(n=1000, unsolved=range(400, 420)), size_px=(800, 300))) == (800, 300)
    # what the title says: the mean over solved frames and the solved fraction
    assert quality_title(_scores()) == "mean reprojection error 0.44 px, 20/24 frames solved (83 %)"


def test_unsolved_frames_show_in_the_image():
    """The red marking of unsolved frames is drawn: the same scores with every frame solved
    give an image with no strong red pixels, with frames 5-7 and 19 unsolved one with many."""
    import numpy as np
    from io import BytesIO
    from matplotlib.image import imread

    def red(png):
        rgb = imread(BytesIO(png))[..., :3]
        return int(((rgb[..., 0] > 0.75) & (rgb[..., 1] < 0.35) & (rgb[..., 2] < 0.35)).sum())

    assert red(quality_plot(_scores(unsolved=()))) == 0
    assert red(quality_plot(_scores())) > 20
    assert np.isfinite(red(quality_plot(_scores(unsolved=range(24)))))  # nothing solved still draws


def test_missing_or_inconsistent_scores_fail_clearly():
    with pytest.raises(PlotError, match="no per-frame frame_tracks"):
        quality_plot({k: v for k, v in _scores().items() if k != "frame_tracks"})
    with pytest.raises(PlotError, match="no per-frame frame_reprojection_error_px, frame_tracks, frame_solved"):
        quality_plot({"confidence": 0.9})
    bad = _scores()
    bad["frame_tracks"] = bad["frame_tracks"][:-1]
    with pytest.raises(PlotError, match="different lengths"):
        quality_plot(bad)
    bad = _scores()
    bad["frame_reprojection_error_px"][0] = float("nan")
    with pytest.raises(PlotError, match=r"frame_reprojection_error_px\[0\] is nan"):
        quality_plot(bad)


def test_plots_module_imports_no_matplotlib_until_drawing():
    code = "import sys, backend.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
