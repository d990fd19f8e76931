"""Removing old job and upload directories without ever touching one that is in use.

Both live under the server's data directory as ``<root>/<16 hex id>/``. A directory is a
candidate only if its name is an id, it is a real directory (not a symlink) and it is not in
``protected`` (queued/running jobs, and the uploads they read) and older than ``min_age_s``
(the claim window: an upload no job has named yet, see ``config.Retention``). Candidates beyond
the newest ``keep`` or older than ``max_age_s`` go: renamed to ``.trash-<id>`` first (atomic; a
reader sees the whole directory or none), then deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Iterable, Optional

from .uploads import is_id


def _age_key(d: Path, meta_name: str) -> float:
    """When the directory's content was last final: its metadata's 'finished'/'created', else mtime."""
    try:
        meta = json.loads((d / meta_name).read_text())
        t = meta.get("finished") or meta.get("created_ts") or meta.get("created")
        if isinstance(t, (int, float)):
            return float(t)
    except (OSError, ValueError):
        pass
    try:
        return d.stat().st_mtime
    except OSError:
        return 0.0


def process_started(pid: Optional[int] = None) -> Optional[float]:
    """When process ``pid`` (default: this one) started, in seconds since the epoch (None
    without psutil or when there is no such process)."""
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # ImportError, psutil.NoSuchProcess, AccessDenied
        return None


def is_active_elsewhere(d: Path, meta_name: str) -> bool:
    """A job another live server process (sharing this data dir) still runs or queues."""
    try:
        meta = json.loads((d / meta_name).read_text())
    except (OSError, ValueError):
        return False
    pid = meta.get("pid")
    if meta.get("state") not in ("queued", "running") or not isinstance(pid, int) or pid == os.getpid():
        return False
    started = meta.get("pid_started")
    if isinstance(started, (int, float)):
        # A pid is reused after its process ends (a container's server is often the same pid
        # every time): only the same pid *and* start time is the same server.
        now_started = process_started(pid)
        if now_started is not None:
            return abs(now_started - started) < 1.0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but not ours (EPERM), or a platform without signal 0
        return True
    return True


def sweep(root: Path, keep: int, max_age_s: float, protected: Iterable[str],
          meta_name: str, now: Optional[float] = None, min_age_s: float = 0.0) -> list[str]:
    """Remove old id directories under ``root``; return the removed ids. Directories younger
    than ``min_age_s`` are never removed (nor counted in ``keep``)."""
    root = Path(root)
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    protected = set(protected)
    candidates = []
    for d in root.iterdir():
        if not is_id(d.name) or d.is_symlink() or not d.is_dir() or d.name in protected:
            continue
        if is_active_elsewhere(d, meta_name):
            continue
        t = _age_key(d, meta_name)
        if now - t < min_age_s:
            continue
        candidates.append((t, d))
    candidates.sort(key=lambda item: item[0], reverse=True)  # newest first
    removed = []
    for rank, (t, d) in enumerate(candidates):
        if rank < keep and now - t <= max_age_s:
            continue
        trash = root / f".trash-{d.name}"
        try:
            os.replace(d, trash)
        except OSError:
            continue
        shutil.rmtree(trash, ignore_errors=True)
        removed.append(d.name)
    # Leftovers of a crash mid-removal, or of an upload abandoned for an hour (dot-prefixed,
    # never an id, so never a live directory's name).
    for d in root.iterdir():
        if not d.is_dir() or d.is_symlink():
            continue
        if d.name.startswith(".trash-") or (d.name.endswith(".partial") and now - _newest_mtime(d) > 3600):
            shutil.rmtree(d, ignore_errors=True)
    return removed


def _newest_mtime(d: Path) -> float:
    times = [d.stat().st_mtime]
    for f in d.iterdir():
        try:
            times.append(f.stat().st_mtime)
        except OSError:
            pass
    return max(times)
