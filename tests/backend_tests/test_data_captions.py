"""Captions of the synthetic data engine name only what is in the clip, with varied wording."""

from __future__ import annotations

import re

import numpy as np

from backend.data import captions as cap
from backend.data import scene as sc
from backend.data.synth import render_batch

NOUNS = ("cube", "box", "sphere", "cylinder", "cone", "capsule", "torus")
SEEDS = list(range(40, 52))


def _phrases(table):
    return {k: [p.split(",")[0] for p in v] for k, v in table.items()}


def test_captions_name_only_visible_objects_and_real_motions():
    kw = dict(frames=3, height=24, width=32)
    batch = render_batch(SEEDS, **kw)
    motion_phrases = _phrases(cap._MOTION_VERBS)
    short_phrases = _phrases(cap._SHORT_VERBS)
    for i, seed in enumerate(SEEDS):
        spec = sc.sample_scene(seed, **kw)
        caption = batch.captions[i]
        assert caption == cap.make_caption(spec, np.bincount(batch.object_ids[i].numpy().ravel().astype(int) + 2,
                                                              minlength=len(spec.prims) + 2)[2:])
        ids = batch.object_ids[i].numpy()
        visible = [j for j in range(len(spec.prims)) if (ids == j).sum() >= cap.caption_min_pixels(spec)]
        # Remove every phrase that names a visible object; no object noun may remain.
        rest = caption
        for j in sorted(visible, key=lambda j: -len(spec.prims[j].material.words())):
            p = spec.prims[j]
            rest = rest.replace(f"{p.material.words()} {p.noun()}", "<obj>")
        for noun in NOUNS:
            assert not re.search(rf"\b{noun}\b", rest), (caption, noun, [spec.prims[j].noun() for j in visible])
        # Every camera motion of the label is worded, and no motion of another kind is.
        parts = spec.motion_parts
        assert batch.motions[i] == spec.motion
        for k, part in enumerate(parts):
            table = motion_phrases if k == 0 else short_phrases
            assert any(ph in caption for ph in table[part]), (caption, part)
        for other, phrases in motion_phrases.items():
            if other[0] not in {p[0] for p in parts}:
                assert not any(ph in caption for ph in phrases), (caption, other)
        # A moving object in the caption really moves, with the verb of its motion.
        for clause in caption.split("; ")[1:]:
            j = next(j for j in visible if clause.startswith(cap._article(
                f"{spec.prims[j].material.words()} {spec.prims[j].noun()}")))
            assert spec.prims[j].moving
            verbs = cap._OBJECT_VERBS[spec.prims[j].motion.split("+")[0]]
            assert any(clause.endswith(v) for v in verbs), clause


def test_captions_vary_in_wording():
    specs = [sc.sample_scene(s, frames=3, height=16, width=16) for s in range(60)]
    caps = [cap.make_caption(s) for s in specs]
    openings = {" ".join(c.split()[:3]) for c in caps}
    assert len(set(caps)) == len(caps)
    assert len(openings) >= 15
    assert len({c.split()[0] for c in caps}) >= 2  # "the" / "a"
