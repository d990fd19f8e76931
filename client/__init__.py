"""Parallax client: the add-on's side of the process boundary (no bpy, no torch).

Scripting API (Blender's Python console, or any Python with requests and numpy)::

    from parallax import client            # inside Blender: the add-on's package name
    # import client                        # from a checkout, with the repo root on sys.path

    client.configure(python="/path/to/backend-venv/bin/python")  # once; default: $PARALLAX_PYTHON
    bundle_dir = client.run_job("solve", ["/footage/clip.mp4"], {"engine": "colmap"},
                                on_progress=lambda s: print(f"{s.progress:.0%} {s.stage}"))
    # -> Path of the unzipped result bundle; read it with backend.bundle.read_bundle

    handle = client.start_job("solve", ["/footage/clip.mp4"])   # non-blocking
    handle.poll()      # JobSnapshot(phase, progress, stage, message, eta_s, job_id, bundle_dir, error)
    handle.cancel()    # the server stops the job within a step
    handle.wait()      # -> bundle dir, or raises JobFailed / JobCancelled / BackendCrashed ...

    client.shutdown()  # stop the local backend (also done automatically at exit)

    client.list_frames("/footage/frames/")  # a frame folder's images in order (no ._* / hidden files)

``run_job`` / ``start_job`` start the local backend on first use and restart it after a
crash. For a remote backend pass ``client=client.Client(url, token)``. Lower-level pieces:
:class:`BackendProcess` (``client.process``), :class:`Client` (``client.api``), and the
exceptions in ``client.errors`` (all derive from :class:`ParallaxError`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Optional, Sequence

from .api import Client
from .errors import (BackendCrashed, BackendStartError, BackendUnavailable, InvalidResult, JobCancelled, JobFailed,
                     ParallaxError, RequestRejected)
from .files import list_frames, safe_upload_name
from .jobs import JobHandle, JobSnapshot, default_out_dir, start_job as _start_job
from .process import BackendProcess

__all__ = ["run_job", "start_job", "configure", "default_backend", "shutdown", "Client", "BackendProcess",
           "JobHandle", "JobSnapshot", "ParallaxError", "BackendStartError", "BackendUnavailable",
           "BackendCrashed", "RequestRejected", "JobFailed", "JobCancelled", "InvalidResult", "list_frames",
           "safe_upload_name", "default_out_dir"]

_lock = threading.Lock()
_backend: Optional[BackendProcess] = None
_backend_kwargs: dict = {}


def configure(python: Optional[str] = None, **kwargs) -> None:
    """Settings of the default local backend (BackendProcess arguments: python, root, host,
    extra_args, env, startup_timeout). Stops a running default backend so they take effect."""
    global _backend
    with _lock:
        _backend_kwargs.clear()
        _backend_kwargs.update(kwargs, python=python)
        old, _backend = _backend, None
    if old is not None:
        old.stop()


def default_backend() -> BackendProcess:
    """The shared local backend (created on first use, started lazily by the first job)."""
    global _backend
    with _lock:
        if _backend is None:
            _backend = BackendProcess(**_backend_kwargs)
        return _backend


def shutdown() -> None:
    """Stop the default local backend, if it runs."""
    with _lock:
        backend = _backend
    if backend is not None:
        backend.stop()


def start_job(task: str, inputs: Sequence[os.PathLike | str], params: Optional[dict] = None, *,
              on_progress: Optional[Callable[[JobSnapshot], None]] = None, backend: Optional[BackendProcess] = None,
              client: Optional[Client] = None, out_dir: Optional[os.PathLike] = None) -> JobHandle:
    """Start ``task`` on the files ``inputs`` with ``params``; return a JobHandle at once.

    ``on_progress(snapshot)`` runs on the job's thread: inside Blender do not touch bpy data
    from it; poll ``handle.poll()`` from a timer instead.
    """
    if client is None and backend is None:
        backend = default_backend()
    return _start_job(task, inputs, params, backend=backend, client=client, out_dir=out_dir,
                      on_progress=on_progress)


def run_job(task: str, inputs: Sequence[os.PathLike | str], params: Optional[dict] = None,
            on_progress: Optional[Callable[[JobSnapshot], None]] = None, *,
            backend: Optional[BackendProcess] = None, client: Optional[Client] = None,
            out_dir: Optional[os.PathLike] = None, timeout: Optional[float] = None) -> Path:
    """Run a job to the end and return the bundle directory (blocking).

    Raises RequestRejected (bad input/params, with the server's message), JobFailed,
    JobCancelled, BackendCrashed, BackendStartError, InvalidResult (the server answered with
    a bad id or a result that is oversized, a zip bomb or not a valid bundle), or TimeoutError.
    """
    handle = start_job(task, inputs, params, on_progress=on_progress, backend=backend, client=client,
                       out_dir=out_dir)
    try:
        return handle.wait(timeout)
    except TimeoutError:
        handle.cancel()
        raise
