"""A contact sheet of T2V videos: one row of evenly spaced frames per prompt, the prompt below.

Prompts come from the synthetic engine's caption generator (``backend.data.captions.make_caption``
on held-out scene descriptions with a different camera motion each), so every word is one the
tiny model was trained on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np

from .common import EvalError, caption_encoder, unified_model

# One camera motion per row, the most distinct first.
SHEET_MOTIONS = ("orbit", "dolly", "truck", "pan", "crane", "tilt", "pedestal", "static",
                 "dolly+pan", "orbit+pedestal", "truck+tilt", "handheld")
PAD = 4
FONT_SIZE = 12
LINE_HEIGHT = 15
TEXT_LINES = 3


def sheet_prompts(count: int, start: int = 0) -> list[str]:
    """``count`` captions in the caption generator's words, each with its own camera motion."""
    from ..data.captions import make_caption
    from ..data.scene import sample_scene
    from ..data.splits import heldout_seeds

    if count < 1:
        raise EvalError("--prompts must be at least 1")
    seeds = heldout_seeds(count, start=start)
    return [make_caption(sample_scene(s, frames=16, height=64, width=64, motion=SHEET_MOTIONS[i % len(SHEET_MOTIONS)]))
            for i, s in enumerate(seeds)]


def sheet_size(prompts: int, frames_shown: int, cell: int) -> tuple[int, int]:
    """(width, height) in pixels of a sheet of square ``cell`` frames."""
    text_h = TEXT_LINES * LINE_HEIGHT + PAD
    return PAD + frames_shown * (cell + PAD), PAD + prompts * (cell + text_h + PAD)


def compose(videos: list, prompts: list[str], frames_shown: int = 6, scale: int = 2):
    """videos: list of (F, S, S, 3) uint8 -> a PIL image (frames upscaled ``scale`` times, nearest)."""
    from PIL import Image, ImageDraw, ImageFont

    S = videos[0].shape[1]
    cell = S * scale
    W, H = sheet_size(len(videos), frames_shown, cell)
    sheet = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=FONT_SIZE)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    y = PAD
    for video, prompt in zip(videos, prompts):
        cols = np.linspace(0, len(video) - 1, frames_shown).round().astype(int)
        for j, f in enumerate(cols):
            tile = Image.fromarray(np.asarray(video[f])).resize((cell, cell), Image.NEAREST)
            sheet.paste(tile, (PAD + j * (cell + PAD), y))
        lines = _wrap(prompt, font, W - 2 * PAD)
        for k, line in enumerate(lines):
            draw.text((PAD, y + cell + 2 + k * LINE_HEIGHT), line, fill="black", font=font)
        y += cell + TEXT_LINES * LINE_HEIGHT + PAD + PAD
    return sheet


def save_sheet(sheet, path: Path, colors: int = 256) -> None:
    """PNG; ``colors`` > 0 quantises to a palette (as the Cycles sheet: a few times smaller)."""
    from PIL import Image

    if colors:
        sheet = sheet.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    sheet.save(path, optimize=True)


def _wrap(text: str, font, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels, at most TEXT_LINES lines (the last ends in '...')."""
    words, lines, line = text.split(), [], ""
    for w in words:
        trial = f"{line} {w}".strip()
        if font.getlength(trial) <= width or not line:
            line = trial
        else:
            lines.append(line)
            line = w
    if line:
        lines.append(line)
    if len(lines) > TEXT_LINES:
        last = lines[TEXT_LINES - 1]
        while last and font.getlength(last + " ...") > width:
            last = last.rsplit(" ", 1)[0] if " " in last else last[:-1]
        lines = lines[:TEXT_LINES - 1] + [last + " ..."]
    return lines


def make_contact_sheet(count: int, out: Path, frames_shown: int = 6, model: Optional[str] = None,
                       device: str = "cpu", steps: int = 25, guidance: float = 5.0, frames: Optional[int] = None,
                       start: int = 0, seed: int = 0, scale: int = 2, colors: int = 256, log=print) -> dict:
    from ..pipelines.t2v import T2VPipeline

    if frames_shown < 1:
        raise EvalError("--frames-shown must be at least 1")
    if scale < 1:
        raise EvalError("--scale must be at least 1")
    if not 0 <= colors <= 256:
        raise EvalError("--colors must be between 0 (full colour) and 256")
    if steps < 1:
        raise EvalError("--steps must be at least 1")
    if Path(out).suffix.lower() != ".png":
        raise EvalError(f"--out {out}: the contact sheet is a PNG; give a path ending in .png")
    prompts = sheet_prompts(count, start)
    net = unified_model(model, device)
    pipe = T2VPipeline(model=net, model_path=model, device=device, text_encoder=caption_encoder(net, device))
    n = int(frames or pipe.model.config.num_frames)
    if not 1 <= n <= pipe.model.config.num_frames:
        raise EvalError(f"--frames must be between 1 and {pipe.model.config.num_frames}, got {n}")
    if frames_shown > n:
        raise EvalError(f"--frames-shown {frames_shown} is more than the {n} frames generated")
    videos, secs = [], []
    for i, p in enumerate(prompts):
        t0 = time.perf_counter()
        res = pipe(p, frames=n, steps=steps, guidance=guidance, seed=seed + i, camera=False)
        secs.append(time.perf_counter() - t0)
        videos.append(res["video"].numpy())
        log(f"[{i + 1}/{count}] {secs[-1]:.2f} s: {p}")
    sheet = compose(videos, prompts, frames_shown, scale)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_sheet(sheet, out, colors)
    log(f"wrote {out} ({sheet.width}x{sheet.height})")
    return {"out": str(out), "prompts": prompts, "size": [sheet.width, sheet.height], "s_per_video": secs,
            "steps": steps, "guidance": guidance, "frames": n, "frames_shown": frames_shown, "model": pipe.model_id}
