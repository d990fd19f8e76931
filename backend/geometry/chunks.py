"""Long clips in bounded memory: overlapping chunks of windows, each aligned on its own, chained
by a similarity (DESIGN section 6, Geo4D on long videos).

A chunk is a run of consecutive sliding windows spanning at most ``chunk_frames`` frames; the
next chunk begins with the previous chunk's last window, so two neighbouring chunks share that
window's frames. Each chunk is aligned in its own first-frame world (``align4d``), then mapped
into the clip's world by the Sim(3) that takes its shared frames' points onto the previous
chunk's (confidence-weighted robust Umeyama, as V2C chains its windows). Memory is one chunk's
windows and alignment, whatever the clip's length.
"""

from __future__ import annotations

import torch

from .procrustes import robust_umeyama, similarity_matrix


def plan_chunks(starts: list[int], window: int, chunk_frames: int) -> list[list[int]]:
    """Window indices of each chunk, in order. ``starts``: the sliding windows' first frames
    (``alignment.sliding_window_starts``), each window ``window`` frames long. A chunk holds the
    windows that end within ``chunk_frames`` of its first window's start (at least two when
    there are two left, so the plan always advances); chunk k + 1 starts with chunk k's last
    window."""
    if chunk_frames < window:
        raise ValueError(f"chunks of {chunk_frames} frames cannot hold a window of {window}")
    chunks, first = [], 0
    while True:
        last = first
        while last + 1 < len(starts) and starts[last + 1] + window - starts[first] <= chunk_frames:
            last += 1
        if last == first and first + 1 < len(starts):
            last = first + 1  # a chunk must advance: take the next window even if it overflows
        chunks.append(list(range(first, last + 1)))
        if last == len(starts) - 1:
            return chunks
        first = last


def chain_similarity(world_points: torch.Tensor, chunk_points: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sim(3) (4x4, float64) taking a chunk's coordinates onto the clip's world, from the same
    frames' points in both (..., 3) and their weights (...). Falls back to every point weighing
    alike when fewer than 16 have weight (an untrained model's confidence)."""
    src = chunk_points.reshape(-1, 3).double()
    dst = world_points.reshape(-1, 3).double()
    w = weights.reshape(-1).double()
    ok = torch.isfinite(src).all(-1) & torch.isfinite(dst).all(-1)
    w = torch.where(ok, w, torch.zeros_like(w))
    if (w > 0).sum() < 16:
        w = ok.double()
    s, R, t, _ = robust_umeyama(torch.where(ok[:, None], src, 0.0), torch.where(ok[:, None], dst, 0.0), w)
    return similarity_matrix(s, R, t)
