"""Prefetching in the synthetic data engine: same clips bit for bit, real overlap, errors reach the
consumer, and nothing keeps running afterwards (threads, worker processes)."""

from __future__ import annotations

import multiprocessing
import threading
import time

import numpy as np
import pytest
import torch

from backend.data.prefetch import THREAD_NAME, Lookahead, Prefetcher
from backend.data.synth import render_batch, render_stream, shutdown_pools

KEYS = ("rgb", "depth", "points", "rays", "c2w", "K", "dynamic_mask", "object_ids")
SMALL = dict(frames=3, height=16, width=20)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _prefetch_threads() -> list:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME) and t.is_alive()]


def _assert_same(a, b) -> None:
    for k in KEYS:
        x, y = getattr(a, k), getattr(b, k)
        assert x.dtype == y.dtype and x.shape == y.shape, k
        # bit-identical, NaN (sky points) included
        assert torch.equal(x.view(torch.int32) if x.dtype == torch.float32 else x,
                           y.view(torch.int32) if y.dtype == torch.float32 else y), k
    assert a.captions == b.captions and a.motions == b.motions and a.seeds == b.seeds


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """Six small random photos, so the photo-texture path (decoded in the prefetch thread) runs
    and a batch uses only some of them (atlas slots differ from the folder's indices)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return str(folder)


def test_stream_is_bit_identical_with_and_without_prefetch(photo_folder):
    batches = [[3, 4], [5], [6, 7]]
    direct = [render_batch(b, textures=photo_folder, **SMALL) for b in batches]
    for depth in (2, 0):
        streamed = list(render_stream(batches, textures=photo_folder, prefetch=depth, **SMALL))
        assert len(streamed) == 3
        for a, b in zip(streamed, direct):
            _assert_same(a, b)
    assert any(m.pattern == "photo" for s in [3, 4, 5, 6, 7]
               for m in _scene_materials(s, photo_folder)), "no photo material was exercised"
    assert not _prefetch_threads()


def _scene_materials(seed, folder):
    from backend.data.scene import sample_scene

    spec = sample_scene(seed, **SMALL, textures=folder)
    return [p.material for p in spec.prims] + [spec.floor, spec.walls]


def test_stream_with_worker_processes_is_identical_and_shuts_down(photo_folder):
    # workers=2: scenes are sampled and packed in spawned processes, photo slots remapped here
    batches = [[10, 11, 12, 13], [14, 15, 16, 17]]
    kw = dict(textures=photo_folder, chunk_rays=3 * 16 * 20 * 2, **SMALL)  # 2 clips per render chunk
    for b in batches:  # the remapping of photo slots is exercised: a batch uses some photos, not all
        used = sorted({m.photo_index for s in b for m in _scene_materials(s, photo_folder) if m.pattern == "photo"})
        assert used and used != list(range(len(used))), used
    try:
        streamed = list(render_stream(batches, workers=2, prefetch=2, **kw))  # 2 threads side by side
        assert multiprocessing.active_children(), "the pool was not used"
    finally:
        shutdown_pools()
    for a, b in zip(streamed, [render_batch(b, **kw) for b in batches]):
        _assert_same(a, b)
    assert not multiprocessing.active_children() and not _prefetch_threads()


def test_producer_runs_ahead_in_a_background_thread():
    # While the consumer works on result 0 (0.3 s), job 1 must already be produced elsewhere.
    log = {}

    def produce(job):
        log[job] = (threading.current_thread().name, time.perf_counter())
        return job * 10

    with Prefetcher(produce, range(3), depth=1) as pf:
        assert next(pf) == 0
        asked = time.perf_counter()
        time.sleep(0.3)  # "rendering"
        assert 1 in log and log[1][1] < asked + 0.3
        assert list(pf) == [10, 20]
    assert all(name.startswith(THREAD_NAME) for name, _ in log.values())
    assert not _prefetch_threads()


def test_producer_exception_reaches_the_consumer_and_stops_the_thread():
    def produce(job):
        if job == 2:
            raise ValueError("bad job 2")
        return job

    pf = Prefetcher(produce, range(5), depth=2)
    assert next(pf) == 0 and next(pf) == 1
    with pytest.raises(ValueError, match="bad job 2"):
        next(pf)
    assert not _prefetch_threads()
    with pytest.raises(StopIteration):  # a failed prefetcher is closed
        next(pf)
    # through the engine: a negative seed fails in numpy's seeding, in the background thread
    with pytest.raises(ValueError):
        for _ in render_stream([[1], [-5], [2]], prefetch=2, **SMALL):
            pass
    assert not _prefetch_threads()


def test_closing_early_cancels_pending_jobs_and_joins():
    started = []

    def slow(job):
        started.append(job)
        time.sleep(0.2)
        return job

    t0 = time.perf_counter()
    with Prefetcher(slow, range(100), depth=2) as pf:
        assert next(pf) == 0
    assert time.perf_counter() - t0 < 2.0  # waited for at most the running job
    assert len(started) <= 4 and not _prefetch_threads()
    # abandoning a render_stream generator also ends its thread
    gen = render_stream([[1], [2], [3], [4]], prefetch=2, **SMALL)
    next(gen)
    gen.close()
    assert not _prefetch_threads()


def test_lookahead_returns_only_the_submitted_key_and_reraises():
    with Lookahead() as la:
        la.submit("a", lambda x: x + 1, 1)
        assert la.take("b") is None  # a different request: the stale job is dropped
        assert la.take("a") is None
        la.submit("c", lambda: 7)
        assert la.take("c") == 7
        la.submit("d", lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            la.take("d")
    assert not _prefetch_threads()


def test_training_data_prefetches_the_next_step(monkeypatch):
    # The trainer's call pattern: train_seeds(k) then render(seeds) for k = 0, 1, ... The batch
    # of step 1 must be prepared in the background during step 0, and equal a direct render.
    from backend.train import data

    monkeypatch.delenv("PARALLAX_SYNTH_PREFETCH", raising=False)
    prepared_in = []
    real_prepare = data._prepare

    def spy(*args):
        prepared_in.append((args[0], threading.current_thread().name))
        return real_prepare(*args)

    monkeypatch.setattr(data, "_prepare", spy)
    try:
        outs = []
        for step in range(3):
            seeds = data.train_seeds(step, 0, 1, 2)
            outs.append((seeds, data.render(seeds, 3, 16, "cpu")))
    finally:
        data.close_prefetch()
    assert not _prefetch_threads()
    where = {seeds: name for seeds, name in prepared_in}
    s0, s1, s2 = (tuple(s) for s, _ in outs)
    assert where[s0] == "MainThread" and where[s1].startswith(THREAD_NAME) and where[s2].startswith(THREAD_NAME)
    for seeds, out in outs:
        ref = render_batch(seeds, frames=3, height=16, width=16)
        for k in ("rgb", "depth", "rays", "c2w", "K"):
            assert torch.equal(out[k], getattr(ref, k)), k
        assert torch.equal(out["points"].nan_to_num(), ref.points.nan_to_num())
        assert out["captions"] == ref.captions
    # switched off: everything in the caller's thread, same clips
    monkeypatch.setenv("PARALLAX_SYNTH_PREFETCH", "0")
    prepared_in.clear()
    seeds = data.train_seeds(1, 0, 1, 2)
    out = data.render(seeds, 3, 16, "cpu")
    assert [name for _, name in prepared_in] == ["MainThread"] and data._lookahead is None
    assert torch.equal(out["rgb"], outs[1][1]["rgb"])


def test_training_data_with_a_worker_process(monkeypatch):
    # PARALLAX_SYNTH_WORKERS=1 (the CUDA default): sampling and packing in a spawned process
    from backend.train import data

    monkeypatch.setenv("PARALLAX_SYNTH_WORKERS", "1")
    monkeypatch.delenv("PARALLAX_SYNTH_PREFETCH", raising=False)
    try:
        outs = []
        for step in range(2):
            seeds = data.train_seeds(step, 1, 2, 2)  # rank 1 of 2
            outs.append((seeds, data.render(seeds, 3, 16, "cpu")))
        assert multiprocessing.active_children()
    finally:
        data.close_prefetch()
        shutdown_pools()
    for seeds, out in outs:
        ref = render_batch(seeds, frames=3, height=16, width=16)
        assert torch.equal(out["rgb"], ref.rgb) and torch.equal(out["depth"], ref.depth)
        assert out["captions"] == ref.captions
    assert not multiprocessing.active_children() and not _prefetch_threads()
