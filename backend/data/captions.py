"""Captions of the synthetic clips: a small grammar over the camera motion, the objects that are
really in view and the moving ones (numpy only: Blender imports it too).

:func:`make_caption` is given the pixel counts each renderer saw, so a caption only names what
is in the clip; its wording is drawn from the seed, so a clip's caption is stable. Example:
``the camera dollies toward a red-and-white checkered sphere beside a blue cylinder in a room
with grey brick walls; a yellow box bounces``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .scene import SceneSpec

_MOTION_VERBS = {
    ("orbit", "left"): ["orbits left around", "circles to the left around", "arcs left around"],
    ("orbit", "right"): ["orbits right around", "circles to the right around", "arcs right around"],
    ("dolly", "in"): ["dollies toward", "pushes in on", "moves closer to"],
    ("dolly", "out"): ["dollies away from", "pulls back from", "backs away from"],
    ("truck", "left"): ["trucks left past", "slides left past", "moves sideways to the left past"],
    ("truck", "right"): ["trucks right past", "slides right past", "moves sideways to the right past"],
    ("pedestal", "up"): ["rises above", "pedestals up over", "lifts up over"],
    ("pedestal", "down"): ["sinks toward", "pedestals down toward", "lowers toward"],
    ("crane", "up"): ["cranes up over", "booms up above", "cranes upward, still framing"],
    ("crane", "down"): ["cranes down toward", "booms down toward", "cranes downward, still framing"],
    ("pan", "left"): ["pans left across", "swings left across", "pans to the left over"],
    ("pan", "right"): ["pans right across", "swings right across", "pans to the right over"],
    ("tilt", "up"): ["tilts up from", "tilts upward over", "angles up from"],
    ("tilt", "down"): ["tilts down to", "tilts downward onto", "angles down onto"],
    ("roll", "clockwise"): ["rolls clockwise while framing", "tilts its horizon clockwise over"],
    ("roll", "counterclockwise"): ["rolls counterclockwise while framing", "tips its horizon counterclockwise over"],
    ("handheld", ""): ["shakes slightly, handheld, over", "wobbles handheld over", "drifts handheld over"],
    ("static", ""): ["holds still on", "stays fixed on", "looks steadily at"],
}
# Intransitive forms for the second and third parts of a combined motion.
_SHORT_VERBS = {
    ("orbit", "left"): ["orbits left", "circles left"], ("orbit", "right"): ["orbits right", "circles right"],
    ("dolly", "in"): ["dollies in", "pushes in"], ("dolly", "out"): ["dollies out", "pulls back"],
    ("truck", "left"): ["trucks left", "slides left"], ("truck", "right"): ["trucks right", "slides right"],
    ("pedestal", "up"): ["rises", "pedestals up"], ("pedestal", "down"): ["sinks", "pedestals down"],
    ("crane", "up"): ["cranes up"], ("crane", "down"): ["cranes down"],
    ("pan", "left"): ["pans left", "turns left"], ("pan", "right"): ["pans right", "turns right"],
    ("tilt", "up"): ["tilts up", "angles upward"], ("tilt", "down"): ["tilts down", "angles downward"],
    ("roll", "clockwise"): ["rolls clockwise"], ("roll", "counterclockwise"): ["rolls counterclockwise"],
    ("handheld", ""): ["shakes a little, handheld", "wobbles as if handheld"],
    ("static", ""): ["holds still"],
}
_OBJECT_VERBS = {"linear": ["slides across the floor", "moves in a straight line", "glides along"],
                 "circular": ["circles around", "moves in a circle", "travels around a loop"],
                 "bouncing": ["bounces", "hops up and down", "bounces up and down"],
                 "rotating": ["spins", "rotates in place", "turns around"]}


def _article(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def caption_min_pixels(spec: SceneSpec) -> int:
    """Pixels (over the whole clip) an object needs before a caption may name it: 0.1% of them."""
    return max(4, int(round(1e-3 * spec.frames * spec.height * spec.width)))


def make_caption(spec: SceneSpec, visible: Optional[np.ndarray] = None, min_pixels: Optional[int] = None) -> str:
    """A caption naming only objects that are really in the clip.

    ``visible``: per-primitive pixel counts over the clip from a renderer (objects under
    ``min_pixels``, default :func:`caption_min_pixels`, are never named). Without counts, every
    primitive counts as visible. The wording is drawn from the seed, so a clip's caption is stable.
    """
    rng = np.random.default_rng([spec.seed, 0xCA9])
    n = len(spec.prims)
    min_pixels = caption_min_pixels(spec) if min_pixels is None else min_pixels
    counts = np.full(n, 10 ** 6) if visible is None else np.asarray(visible)
    shown = [i for i in np.argsort(-counts, kind="stable") if counts[i] >= min_pixels]
    moving = [i for i in shown if spec.prims[i].moving]
    static = [i for i in shown if not spec.prims[i].moving]
    k = int(rng.integers(1, 4))
    named = static[:k] if static else []
    obj = lambda i: _article(f"{spec.prims[i].material.words()} {spec.prims[i].noun()}")  # noqa: E731

    # Main phrase: camera motion + the objects it frames; further motions as short clauses.
    parts = spec.motion_parts or [("static", "")]
    verb = _MOTION_VERBS[parts[0]][rng.integers(len(_MOTION_VERBS[parts[0]]))]
    if named:
        joiner = [" beside ", " next to ", " and ", " near "][rng.integers(4)]
        things = obj(named[0]) + (joiner + " and ".join(obj(i) for i in named[1:]) if len(named) > 1 else "")
    else:  # nothing to frame: an intransitive verb ("the camera pans left in a room with ...")
        verb = _SHORT_VERBS[parts[0]][rng.integers(len(_SHORT_VERBS[parts[0]]))]
        things = ""
    if spec.setting == "room":
        place = [f"in a room with {spec.walls.words()} walls", f"in a room with {_article(spec.floor.words())} floor",
                 f"inside a room with {spec.walls.words()} walls"][rng.integers(3)]
    else:
        place = [f"on {_article(spec.floor.words())} ground under a blue sky", "outdoors under an open sky",
                 f"on an open {spec.floor.words()} plain"][rng.integers(3)]
    subject = ["the camera", "the camera", "a camera", "the view"][rng.integers(4)]
    text = " ".join(x for x in (subject, verb, things, place) if x)
    extra = [_SHORT_VERBS[p][rng.integers(len(_SHORT_VERBS[p]))] for p in parts[1:]]
    if extra:
        text += [", while it also ", " and ", ", as it "][rng.integers(3)] + " and ".join(extra)
    for i in moving[:2]:
        m = spec.prims[i].motion.split("+")[0]
        verb = _OBJECT_VERBS[m][rng.integers(len(_OBJECT_VERBS[m]))]
        text += f"; {obj(i)} {verb}"
    return text
