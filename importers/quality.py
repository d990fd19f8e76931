"""What an imported result says of its own quality, for the N-panel: summary lines, the frames
it could not solve, and the engine's per-frame plot as a Blender image.

Everything is computed at import and stored on the import's collection (``parallax_summary``,
``parallax_unsolved_frames``, ``parallax_quality_plot``), so the panel only reads properties
and never the bundle.
"""

from __future__ import annotations

from pathlib import Path

import bpy

PLOT = "quality"  # the bundle's plots["quality"]: per-frame reprojection error and solved state


def summary_lines(bundle, frame_start: int) -> list[str]:
    """``Bundle.summary()`` for the panel: its "not solved" line goes (the panel lists those
    frames itself, in scene frame numbers, from :func:`unsolved_frames`), and, when the engine
    recorded them, the worst frame's reprojection error and the ``auto`` engine's choice with
    its consistency scores come after; a generated shot says which models made it (:func:`roles_line`)."""
    lines = [line for line in bundle.summary() if not line.startswith("not solved:")]
    roles = roles_line(bundle.source or {})
    if roles:
        lines.append(roles)
    scores = bundle.scores or {}
    errors = scores.get("frame_reprojection_error_px")
    if isinstance(errors, list):
        measured = [(e, i) for i, e in enumerate(errors) if isinstance(e, (int, float))]
        if measured:
            worst, at = max(measured)
            lines.append(f"worst: frame {frame_start + at}, {worst:.2f} px")
    auto = scores.get("auto")
    if isinstance(auto, dict) and isinstance(auto.get("consistency"), dict):
        ranked = sorted(((v, k) for k, v in auto["consistency"].items() if isinstance(v, (int, float))),
                        reverse=True)
        if ranked:
            lines.append(f"auto chose {auto.get('chosen', ranked[0][1])}: consistency "
                         + ", ".join(f"{k} {v:.2f}" for v, k in ranked))
    return lines


def roles_line(source: dict) -> str | None:
    """Which model made a generated shot's frames and which its cameras, from the bundle's
    ``source["generator"]`` / ``["geometry"]`` (``{"name", "model_id"}``); None for other results."""

    def who(role) -> str:
        model = str(role.get("model_id") or role.get("name") or "?")
        model = Path(model).name if "/" in model or "\\" in model else model  # a folder: its name
        return model[:80]

    generator, geometry = source.get("generator"), source.get("geometry")
    if not isinstance(generator, dict):
        return None
    if not isinstance(geometry, dict):
        return f"frames by {who(generator)}, no cameras"
    if source.get("one_pass"):
        return f"frames and cameras by {who(generator)}, in one pass"
    return f"frames by {who(generator)}, cameras by {who(geometry)}"


def unsolved_frames(bundle, frame_start: int) -> list[int]:
    """Scene frame numbers of the frames without a solved camera."""
    return [frame_start + c.index for c in bundle.cameras or [] if c.c2w is None]


def load_plot(name: str, png: Path) -> bpy.types.Image:
    """The plot as an image (kept in the .blend, so the panel still shows it after the bundle
    folder moves), with its preview requested for the panel's icon."""
    image = bpy.data.images.load(str(png), check_existing=False)
    image.name = name
    image.pack()
    image.preview_ensure()
    return image
