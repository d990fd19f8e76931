"""Exceptions of the Parallax client. Every message is meant to be shown to the user as is."""

from __future__ import annotations

from typing import Optional


class ParallaxError(Exception):
    """Base class of every client error."""


class _WithBackendLog:
    """An error about the local backend process: its exit code, and the last lines of its log
    appended to the message so the user sees why."""

    def __init__(self, message: str, exit_code: Optional[int] = None, log_tail: str = ""):
        super().__init__(message + (f"\n--- backend log (last lines) ---\n{log_tail}" if log_tail else ""))
        self.exit_code = exit_code
        self.log_tail = log_tail


class BackendStartError(_WithBackendLog, ParallaxError):
    """The backend process could not be started, or exited / stayed silent while starting."""


class BackendUnavailable(ParallaxError):
    """The backend could not be reached (not started, wrong URL, network down)."""


class BackendCrashed(_WithBackendLog, BackendUnavailable):
    """The local backend process ended on its own (crash, killed, out of memory)."""


class RequestRejected(ParallaxError):
    """The backend answered 4xx/5xx; ``message`` is its human explanation."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.message = message


class JobFailed(ParallaxError):
    """The job ended in state 'failed'; the message says why."""

    def __init__(self, job_id: str, message: str):
        super().__init__(f"job {job_id} failed: {message}")
        self.job_id = job_id
        self.message = message


class JobCancelled(ParallaxError):
    """The job was cancelled (by the user, or the server shut down)."""

    def __init__(self, job_id: str, message: str = "cancelled"):
        super().__init__(f"job {job_id} was cancelled" + (f": {message}" if message else ""))
        self.job_id = job_id


class InvalidResult(ParallaxError):
    """The backend answered with something the client refuses to use: an id that is not a
    plain name, or a result that is too large, a zip bomb, or not a valid bundle. A remote
    backend is not trusted to decide where files go or how much disk they take."""
