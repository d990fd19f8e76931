"""Persistent worker processes for scene sampling and packing (``workers=k`` in ``synth``).

The pools are spawned, never forked: the workers import numpy only and never touch CUDA, and a
script using them needs the usual ``if __name__ == "__main__":`` guard. They live until
:func:`shutdown_pools` (also run at exit); the next call starts them again.
"""

from __future__ import annotations

import atexit
import threading

_POOLS: dict = {}
_POOLS_LOCK = threading.Lock()


def process_pool(workers: int):
    """The persistent pool of ``workers`` spawned processes (they import numpy only, never CUDA)."""
    with _POOLS_LOCK:
        if workers not in _POOLS:
            import concurrent.futures
            import multiprocessing

            _POOLS[workers] = concurrent.futures.ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"))
        return _POOLS[workers]


def shutdown_pools() -> None:
    """End the sampling worker processes (``workers=k``); the next call starts them again."""
    while _POOLS:
        _POOLS.popitem()[1].shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown_pools)
