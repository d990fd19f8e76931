"""A whole job (start backend -> upload -> submit -> poll -> download) in a background thread.

Made for ``bpy.app.timers``: the timer calls ``handle.poll()``, which only copies a snapshot
under a lock (no I/O, never blocks), and ``handle.cancel()``, which only sets a flag. In
background mode (``bpy.app.background``, where timers do not run) call ``handle.wait()``.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from .api import check_name
from .errors import JobCancelled, ParallaxError

PHASES = ("starting_backend", "uploading", "queued", "running", "downloading", "done", "failed", "cancelled")
END_PHASES = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class JobSnapshot:
    phase: str  # one of PHASES
    progress: float = 0.0  # 0..1, the server's progress while queued/running; 1 when done
    stage: str = ""  # short human label ("uploading clip.mp4 (1/1)", "matching", ...)
    message: str = ""  # why it failed / was cancelled (same text as str(error))
    eta_s: Optional[float] = None  # server's estimate while running
    job_id: Optional[str] = None
    bundle_dir: Optional[Path] = None  # set when done
    error: Optional[BaseException] = None  # set when failed/cancelled

    @property
    def finished(self) -> bool:
        return self.phase in END_PHASES


def default_out_dir() -> Path:
    """A results folder only this user can use: ``$TMPDIR/parallax-bundles-<uid>``, mode 0700.

    A shared name in a shared temporary folder could be a symlink another user planted, and
    results written through it would land where that user chose. So the folder must be a real
    directory owned by us; anything else at that name is moved aside (never deleted: it is not
    ours) and a fresh folder made."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = Path(tempfile.gettempdir()) / f"parallax-bundles-{uid}"
    for _ in range(3):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode) and (not hasattr(os, "getuid") or st.st_uid == uid):
            if st.st_mode & 0o077:
                os.chmod(path, 0o700)
            return path
        os.rename(path, path.with_name(f"{path.name}.not-ours-{os.getpid()}-{int(time.time())}"))
    raise OSError(f"cannot make a private results folder at {path}")


class JobHandle:
    """Runs one job in a daemon thread. Build it with :func:`start_job`."""

    def __init__(self, task: str, inputs: Sequence[os.PathLike | str], params: Optional[dict] = None, *,
                 backend=None, client=None, out_dir: Optional[os.PathLike] = None,
                 on_progress: Optional[Callable[[JobSnapshot], None]] = None, poll_s: float = 0.25):
        if (backend is None) == (client is None):
            raise ValueError("give exactly one of backend (a local BackendProcess) or client (a remote Client)")
        check_name(task, "task name", ValueError, "got")  # it names the result folder
        self.task, self.inputs, self.params = task, [Path(p) for p in inputs], dict(params or {})
        self.backend, self._client = backend, client
        self.out_dir = Path(out_dir) if out_dir else default_out_dir()
        self.on_progress, self.poll_s = on_progress, poll_s
        self._lock = threading.Lock()
        self._snap = JobSnapshot("starting_backend" if backend else "uploading")
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"parallax-job-{task}", daemon=True)

    # -- for the UI (non-blocking) -------------------------------------------------------

    def poll(self) -> JobSnapshot:
        with self._lock:
            return self._snap

    @property
    def done(self) -> bool:
        return self.poll().finished

    def cancel(self) -> None:
        """Ask for cancellation; the job thread sends it (before upload, during, or to the server)."""
        self._cancel.set()

    # -- blocking ------------------------------------------------------------------------

    def wait(self, timeout: Optional[float] = None) -> Path:
        """Block until the job ends; return the bundle directory or raise its error."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"{self.task} job still {self.poll().phase} after {timeout} s")
        return self.result()

    def result(self) -> Path:
        snap = self.poll()
        if not snap.finished:
            raise RuntimeError(f"the job is still {snap.phase}")
        if snap.error is not None:
            raise snap.error
        return snap.bundle_dir

    # -- the thread ----------------------------------------------------------------------

    def _set(self, **changes) -> None:
        with self._lock:
            self._snap = dataclasses.replace(self._snap, **changes)
            snap = self._snap
        if self.on_progress is not None:
            try:
                self.on_progress(snap)
            except Exception:  # a UI callback must not kill the job
                pass

    def _check_cancel(self, job_id: Optional[str] = None) -> None:
        if self._cancel.is_set():
            raise JobCancelled(job_id or "(not submitted)", "cancelled before it reached the server")

    def _run(self) -> None:
        try:
            client = self._client
            if self.backend is not None:
                self._set(phase="starting_backend", stage="starting the backend")
                self.backend.ensure_running(wait=False)
                while not self.backend.poll_ready():
                    self._check_cancel()
                    time.sleep(0.05)
                client = self.backend.client()
            ids = []
            for i, path in enumerate(self.inputs):
                self._check_cancel()
                self._set(phase="uploading", stage=f"uploading {path.name} ({i + 1}/{len(self.inputs)})")
                ids.append(client.upload(path)["id"])
            self._check_cancel()
            job = client.submit(self.task, ids, self.params)
            job_id = job["id"]

            def progress(state: dict) -> None:
                phase = state["state"] if state["state"] in ("queued", "running") else self._snap.phase
                self._set(phase=phase, progress=float(state["progress"]), stage=state["stage"],
                          eta_s=state.get("eta_s"), job_id=job_id, message=state.get("message", ""))

            client.wait(job_id, on_progress=progress, poll_s=self.poll_s, should_cancel=self._cancel.is_set, job=job)
            self._set(phase="downloading", stage="downloading the result")
            # Both names are checked plain names (submit checks the server's id), so the
            # result folder is a child of out_dir whatever the server answers.
            bundle_dir = client.download_bundle(job_id, self.out_dir / f"{self.task}-{job_id}")
            self._set(phase="done", progress=1.0, stage="done", eta_s=None, bundle_dir=bundle_dir)
        except JobCancelled as e:
            self._set(phase="cancelled", stage="cancelled", message=str(e), error=e, eta_s=None)
        except ParallaxError as e:
            self._set(phase="failed", stage="failed", message=str(e), error=e, eta_s=None)
        except Exception as e:  # a bug or an OS error: still end the job visibly
            err = ParallaxError(f"unexpected client error: {type(e).__name__}: {e}")
            err.__cause__ = e
            self._set(phase="failed", stage="failed", message=str(err), error=err, eta_s=None)


def start_job(task: str, inputs: Sequence[os.PathLike | str], params: Optional[dict] = None, *,
              backend=None, client=None, out_dir: Optional[os.PathLike] = None,
              on_progress: Optional[Callable[[JobSnapshot], None]] = None, poll_s: float = 0.25) -> JobHandle:
    """Start a job in a background thread and return its handle at once."""
    handle = JobHandle(task, inputs, params, backend=backend, client=client, out_dir=out_dir,
                       on_progress=on_progress, poll_s=poll_s)
    handle._thread.start()
    return handle
