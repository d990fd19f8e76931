"""A model download on the backend, followed from a background thread (no bpy, no torch).

Made for ``bpy.app.timers`` like :mod:`client.jobs`: ``poll()`` copies a snapshot under a lock
and never blocks, ``cancel()`` only sets a flag; the thread starts the local backend if needed,
asks it to download, polls the download's bytes, and sends the cancel.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Optional

from .errors import ParallaxError

END_PHASES = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class DownloadSnapshot:
    model: str
    phase: str = "starting_backend"  # starting_backend, queued, running, done, failed, cancelled
    progress: float = 0.0
    stage: str = ""
    bytes_done: int = 0
    bytes_total: int = 0
    message: str = ""
    job_id: Optional[str] = None

    @property
    def finished(self) -> bool:
        return self.phase in END_PHASES


class ModelDownload:
    """Downloads ``model`` on the backend (give ``backend`` or ``client``, as for a job)."""

    def __init__(self, model: str, accept_licence: bool = False, *, backend=None, client=None, poll_s: float = 0.25):
        if (backend is None) == (client is None):
            raise ValueError("give exactly one of backend (a local BackendProcess) or client (a remote Client)")
        self.model, self.accept_licence, self.backend, self._client, self.poll_s = \
            model, accept_licence, backend, client, poll_s
        self._lock = threading.Lock()
        self._snap = DownloadSnapshot(model, "starting_backend" if backend else "queued")
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"parallax-download-{model}", daemon=True)

    def start(self) -> "ModelDownload":
        self._thread.start()
        return self

    def poll(self) -> DownloadSnapshot:
        with self._lock:
            return self._snap

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: Optional[float] = None) -> DownloadSnapshot:
        self._thread.join(timeout)
        return self.poll()

    def _set(self, **changes) -> None:
        with self._lock:
            self._snap = dataclasses.replace(self._snap, **changes)

    def _run(self) -> None:
        try:
            client = self._client
            if self.backend is not None:
                self._set(stage="starting the backend")
                self.backend.ensure_running(wait=False)
                while not self.backend.poll_ready():
                    if self._cancel.is_set():
                        self._set(phase="cancelled", stage="cancelled", message="cancelled before it started")
                        return
                    time.sleep(0.05)
                client = self.backend.client()
            job = client.download_model(self.model, self.accept_licence)
            cancel_sent = False
            while True:
                self._set(phase=job["state"], progress=float(job["progress"]), stage=job["stage"],
                          bytes_done=int(job.get("bytes_done") or 0), bytes_total=int(job.get("bytes_total") or 0),
                          message=job.get("message", ""), job_id=job["id"])
                if job["state"] in END_PHASES:
                    return
                if self._cancel.is_set() and not cancel_sent:
                    client.cancel_model_download(job["id"])
                    cancel_sent = True
                time.sleep(self.poll_s)
                job = client.model_download(job["id"])
        except ParallaxError as e:
            self._set(phase="failed", stage="failed", message=str(e))
        except Exception as e:  # a bug or an OS error: still end visibly
            self._set(phase="failed", stage="failed", message=f"unexpected client error: {type(e).__name__}: {e}")
