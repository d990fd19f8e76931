"""Scene descriptions -> flat numpy arrays for the ray caster (numpy only: no torch, so worker
processes that sample and pack scenes for ``backend.data.synth`` stay light and never touch CUDA).

``pack_arrays(specs, tex_index)`` lays out one render chunk: per-primitive rows (rotation,
position per frame, size, kind, material), per-clip room/lights/sky/cameras, all float32 except
indices and flags. ``sample_and_pack`` is the picklable worker job: seeds -> (specs, arrays).
"""

from __future__ import annotations

import numpy as np

from .materials import PATTERNS
from .primitives import KINDS
from .scene import SceneSpec, sample_scene


def spec_materials(spec: SceneSpec) -> list:
    """One material per primitive, then the floor, walls and ceiling: the packed row order."""
    return [p.material for p in spec.prims] + [spec.floor, spec.walls, spec.ceiling_material]


MAT_FIELDS = 20  # pattern, a(3), b(3), scale, axis(3), photo, rot, offset(2), gain(3), pad(2)


def _pack_material(m, tex_index) -> np.ndarray:
    v = np.zeros(MAT_FIELDS, np.float64)
    v[0] = PATTERNS.index(m.pattern)
    v[1:4] = np.asarray(m.color_a) ** 2.2  # palette colours are display values; shade in linear light
    v[4:7] = np.asarray(m.color_b) ** 2.2
    v[7] = m.scale
    v[8:11] = m.axis
    if m.pattern == "photo":  # the photo's slot in the batch's atlas (None: in the sampled texture list)
        v[11] = m.photo_index if tex_index is None else tex_index.get(m.photo, 0)
    v[12] = m.rotation
    v[13:15] = m.offset
    v[15:18] = m.gain
    return v


def pack_arrays(specs: list[SceneSpec], tex_index: dict | None) -> dict:
    """The scene descriptions of one render chunk as flat numpy arrays (no torch, no device).

    tex_index: photo file -> slot in the batch's texture atlas; None stores each photo's index in
    the texture list it was sampled from (``Material.photo_index``), for :func:`remap_photos`
    once the batch's atlas is known (worker processes pack before the whole batch is sampled)."""
    B, F = len(specs), specs[0].frames
    N = max(1, max(len(s.prims) for s in specs))
    kind = np.full((B, N), -1, np.int64)
    radius2 = np.full((B, N), -1.0)  # bounding spheres, squared; -1: empty slot, never a candidate
    size = np.ones((B, N, 3))
    rot = np.tile(np.eye(3), (B, F, N, 1, 1))
    pos = np.zeros((B, F, N, 3))
    moving = np.zeros((B, N), bool)
    mats = np.zeros((B, N + 3, MAT_FIELDS))
    setting_open = np.zeros(B, bool)
    room = np.zeros((B, 3))
    ceiling = np.zeros(B, bool)
    light_kind = np.zeros((B, 2), np.int64)  # 0 none, 1 point, 2 sun
    light_vec = np.zeros((B, 2, 3))
    light_col = np.zeros((B, 2, 3))
    ambient = np.zeros((B, 3))
    sky = np.zeros((B, 2, 3))
    c2w_scene = np.zeros((B, F, 4, 4))
    K = np.zeros((B, 3, 3))
    for b, s in enumerate(specs):
        for i, p in enumerate(s.prims):
            kind[b, i] = KINDS.index(p.kind)
            size[b, i] = p.size
            rot[b, :, i] = p.rot
            pos[b, :, i] = p.pos
            moving[b, i] = p.moving
            radius2[b, i] = (p.radius * 1.001 + 1e-4) ** 2
        for j, m in enumerate(spec_materials(s)[:len(s.prims)]):
            mats[b, j] = _pack_material(m, tex_index)
        for j, m in enumerate((s.floor, s.walls, s.ceiling_material)):
            mats[b, N + j] = _pack_material(m, tex_index)
        setting_open[b] = s.setting == "open"
        room[b] = s.room_size
        ceiling[b] = s.ceiling
        for li, light in enumerate(s.lights[:2]):
            light_kind[b, li] = 1 if light.kind == "point" else 2
            light_vec[b, li] = light.vector
            light_col[b, li] = light.color
        ambient[b] = s.ambient
        sky[b, 0], sky[b, 1] = np.asarray(s.sky_horizon) ** 2.2, np.asarray(s.sky_top) ** 2.2
        c2w_scene[b] = s.c2w
        K[b] = s.K
    # Outputs live in the frame-0 camera: c2w_rel[f] = inv(c2w[0]) @ c2w[f], in float64.
    c2w_rel = np.linalg.inv(c2w_scene[:, :1]) @ c2w_scene
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    # Row-major flat copies: 1-D index_select is much faster than multi-index gathers.
    return dict(B=B, F=F, N=N,
                rot_rows=f32(rot.reshape(B * F * N, 9)), pos_rows=f32(pos.reshape(B * F * N, 3)),
                size_rows=f32(size.reshape(B * N, 3)), kind_rows=kind.reshape(-1),
                mat_rows=f32(mats.reshape(B * (N + 3), MAT_FIELDS)), moving_rows=moving.reshape(-1),
                radius2=f32(radius2), open=setting_open, room=f32(room), ceiling=ceiling, light_kind=light_kind,
                light_vec=f32(light_vec), light_col=f32(light_col), ambient=f32(ambient), sky=f32(sky),
                c2w_scene=f32(c2w_scene), c2w_rel=f32(c2w_rel), K=f32(K))


def remap_photos(arrays: dict, specs: list[SceneSpec], tex_index: dict) -> None:
    """In place: photo slots packed with ``tex_index=None`` -> slots in the batch's atlas."""
    lut = {m.photo_index: tex_index[m.photo] for s in specs for m in spec_materials(s) if m.pattern == "photo"}
    if not lut:
        return
    mat = arrays["mat_rows"]
    rows = np.nonzero(mat[:, 0] == PATTERNS.index("photo"))[0]
    mat[rows, 11] = [lut[int(i)] for i in mat[rows, 11]]


def sample_and_pack(sample_args: list[tuple]) -> tuple[list, dict]:
    """Worker job: ``sample_scene`` arguments per clip of one render chunk -> (specs, arrays packed
    with ``tex_index=None``)."""
    specs = [sample_scene(*a) for a in sample_args]
    return specs, pack_arrays(specs, None)
