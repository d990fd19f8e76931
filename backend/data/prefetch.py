"""Run a producer ahead of its consumer in one background thread.

The synthetic data engine spends CPU time per batch (numpy scene sampling, packing, decoding
photos) before the GPU can render it. :class:`Prefetcher` runs that work for the next batches
while the caller renders the current one, so the two overlap. It is plain
``concurrent.futures``: results come back in order, an exception raised by the producer is
re-raised in the consumer (and stops the prefetcher), and :meth:`Prefetcher.close` (or leaving a
``with`` block, or abandoning the iteration) cancels what has not started and joins the thread.

Determinism: the producer must be a pure function of its job (the engine's are: a batch depends
only on its seeds and arguments), so prefetched results are bit-identical to direct calls.
The producer holds the GIL only while it runs Python; numpy, PIL and a process pool it waits on
(``workers`` in ``backend.data.synth``) release it.
"""

from __future__ import annotations

import collections
import concurrent.futures
from typing import Callable, Generic, Hashable, Iterable, Iterator, Optional, TypeVar

J = TypeVar("J")
R = TypeVar("R")

THREAD_NAME = "parallax-prefetch"


class Prefetcher(Generic[J, R]):
    """``produce(job)`` for each job of ``jobs``, up to ``depth`` jobs ahead of the consumer.

    Iterate it (``for result in Prefetcher(produce, jobs)``) to get the results in job order.
    ``depth=0`` runs everything in the caller's thread (no background work at all). ``threads``
    (at most ``depth``) background threads run jobs side by side: worth it when ``produce`` mostly
    waits (on worker processes), not when it computes in Python (the GIL serialises that).
    """

    def __init__(self, produce: Callable[[J], R], jobs: Iterable[J], depth: int = 2, threads: int = 1):
        self._produce = produce
        self._jobs = iter(jobs)
        self._depth = max(0, int(depth))
        self._pending: collections.deque = collections.deque()
        n_threads = max(1, min(int(threads), self._depth))
        self._pool = (concurrent.futures.ThreadPoolExecutor(n_threads, thread_name_prefix=THREAD_NAME)
                      if self._depth else None)
        self._closed = False

    def __iter__(self) -> Iterator[R]:
        return self

    def __next__(self) -> R:
        if self._closed:
            raise StopIteration
        if self._pool is None:
            try:
                return self._produce(next(self._jobs))
            except BaseException:
                self.close()
                raise
        self._fill()
        if not self._pending:
            self.close()
            raise StopIteration
        future = self._pending.popleft()
        try:
            result = future.result()
        except BaseException:
            self.close()  # a failed producer stops the stream; the error goes to the consumer
            raise
        self._fill()  # keep `depth` jobs in flight while the consumer works on this result
        return result

    def _fill(self) -> None:
        while len(self._pending) < self._depth:
            try:
                job = next(self._jobs)
            except StopIteration:
                return
            self._pending.append(self._pool.submit(self._produce, job))

    def close(self) -> None:
        """Cancel jobs not started, wait for the running one, end the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for f in self._pending:
            f.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "Prefetcher[J, R]":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort when a caller forgets close()
        try:
            if not self._closed and self._pool is not None:
                for f in self._pending:
                    f.cancel()
                self._pool.shutdown(wait=False, cancel_futures=True)
        except Exception:
            pass


class Lookahead(Generic[R]):
    """One keyed job computed ahead: ``submit(key, fn, *args)`` starts ``fn(*args)`` in the
    background; ``take(key)`` returns its result if ``key`` is what was submitted (re-raising the
    job's exception), else None (and drops the stale job). For callers whose next request can be
    predicted but is not known to be coming (the trainer's next seeds)."""

    def __init__(self):
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._key: Optional[Hashable] = None
        self._future: Optional[concurrent.futures.Future] = None

    def submit(self, key: Hashable, fn: Callable[..., R], *args) -> None:
        self._drop()
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=THREAD_NAME)
        self._key, self._future = key, self._pool.submit(fn, *args)

    def take(self, key: Hashable) -> Optional[R]:
        if self._future is None or key != self._key:
            self._drop()
            return None
        future, self._key, self._future = self._future, None, None
        return future.result()

    def _drop(self) -> None:
        if self._future is not None:
            self._future.cancel()  # a running job finishes in the background; its result is dropped
        self._key, self._future = None, None

    def close(self) -> None:
        """Drop any pending job and end the thread (waits for a running job). Idempotent."""
        self._drop()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> "Lookahead[R]":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
