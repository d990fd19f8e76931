"""Keeping a long-running server's resident memory flat (glibc malloc; no-ops elsewhere).

Measured (benchmarks/results/service.md): with glibc's defaults the server grew ~75% over its
first ten colmap jobs and then levelled off. Not a leak: every thread that calls malloc gets an
arena of its own (up to 8 per core), and memory freed into an arena stays mapped. Two knobs:

- ``limit_arenas``: ``mallopt(M_ARENA_MAX, n)`` before worker threads start (the add-on's
  client also sets ``MALLOC_ARENA_MAX=2`` for the process it starts; an explicit environment
  value always wins).
- ``trim``: ``malloc_trim(0)`` after each job returns the free pages of every arena to the
  system. Off with ``PARALLAX_MALLOC_TRIM=0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Optional

M_ARENA_MAX = -8  # from glibc's malloc.h
TRIM_ENV = "PARALLAX_MALLOC_TRIM"

_libc: Optional[ctypes.CDLL] = None
_looked = False


def _glibc() -> Optional[ctypes.CDLL]:
    global _libc, _looked
    if not _looked:
        _looked = True
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt"):  # musl has neither
                    _libc = libc
            except OSError:
                pass
    return _libc


def limit_arenas(n: int = 2) -> bool:
    """Cap glibc's malloc arenas at ``n`` unless MALLOC_ARENA_MAX is set. True if applied."""
    libc = _glibc()
    if libc is None or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return bool(libc.mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(n)))


def trim() -> bool:
    """Give free heap pages back to the system. True if glibc released any."""
    libc = _glibc()
    if libc is None or os.environ.get(TRIM_ENV, "1") == "0":
        return False
    return bool(libc.malloc_trim(ctypes.c_size_t(0)))
