"""HTTP client of the backend service (DESIGN section 4). Standard library + requests only.

Every call is a short blocking HTTP request (milliseconds on loopback) except ``upload``,
``download_bundle`` and ``wait``, which take as long as the transfer or the job. From a
``bpy.app.timers`` callback use :mod:`client.jobs` (``start_job``), which runs those in a
thread and offers a non-blocking ``poll()``. A Client may be shared between threads (each
call opens its own connection pool entry; requests.Session is not shared across threads).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import requests

from .errors import BackendCrashed, BackendUnavailable, InvalidResult, JobCancelled, JobFailed, RequestRejected
from .files import safe_upload_name

try:  # inside the add-on: client/ and backend/ are sibling subpackages
    from ..backend.bundle import BundleError, read_bundle, unzip_bundle
except ImportError:  # client imported as a top-level package (scripts, tests)
    from backend.bundle import BundleError, read_bundle, unzip_bundle

FINAL_STATES = ("done", "failed", "cancelled")
ProgressFn = Callable[[dict], None]
# Ids and task names go into URLs and folder names: plain names only, whatever a server says.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
MAX_DOWNLOAD_BYTES = 32 * 2**30  # one result zip; unzip_bundle bounds what it unpacks to


def check_name(value, what: str = "id", error: type = InvalidResult, who: str = "the backend sent") -> str:
    """``value`` if it is a plain name (letters, digits, '-', '_'; at most 64), else ``error``:
    a job id like ``x/../../victim`` must never become a path or a URL."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        text = repr(value) if isinstance(value, str) else type(value).__name__
        raise error(f"{who} an invalid {what} ({text[:80]}): expected 1 to 64 letters, digits, '-' or '_'")
    return value


class Client:
    """Talks to one backend at ``url`` with bearer ``token``.

    ``process``: the :class:`client.process.BackendProcess` behind ``url``, if local; when a
    request cannot connect and that process has exited, :class:`BackendCrashed` is raised
    (with its exit code and last log lines) instead of :class:`BackendUnavailable`.
    """

    def __init__(self, url: str, token: Optional[str], *, timeout: float = 30.0, process=None):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.process = process
        self._local = threading.local()

    # -- plumbing ----------------------------------------------------------------------

    @property
    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.trust_env = False  # a system proxy must never see loopback traffic or the token
            if self.token:
                s.headers["Authorization"] = f"Bearer {self.token}"
            self._local.session = s
        return s

    def _request(self, method: str, path: str, *, expect_json: bool = True, **kwargs):
        kwargs.setdefault("timeout", self.timeout)
        try:
            r = self._session.request(method, self.url + path, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as e:
            raise self._unreachable(e) from None
        if r.status_code >= 400:
            raise RequestRejected(r.status_code, _error_message(r))
        return r.json() if expect_json else r

    def _unreachable(self, e: Exception) -> Exception:
        proc = self.process
        if proc is not None:
            # The process may need a moment to be reaped after its socket closed.
            for _ in range(20):
                if not proc.is_alive():
                    break
                time.sleep(0.05)
            if not proc.is_alive():
                return BackendCrashed(f"the Parallax backend process stopped unexpectedly (exit code "
                                      f"{proc.exit_code}); the next job restarts it", proc.exit_code,
                                      proc.log_tail())
        kind = "timed out" if isinstance(e, requests.Timeout) else "connection failed"
        return BackendUnavailable(f"cannot reach the Parallax backend at {self.url} ({kind}: {e})")

    # -- endpoints ---------------------------------------------------------------------

    def health(self) -> dict:
        """``GET /v1/health``: version, device, memory, tasks (available + reason), engines, limits."""
        return self._request("GET", "/v1/health")

    def upload(self, path: os.PathLike | str, filename: Optional[str] = None) -> dict:
        """``POST /v1/uploads``: stream a file; returns {id, filename, kind, bytes, width, height,
        frames, fps, created, display_name}. The server validates it; a bad file raises
        RequestRejected.

        The file travels under a safe name (:func:`client.files.safe_upload_name`): the
        service refuses names such as ``take 10:30.mp4`` or ``.hidden.mp4``. The local name is
        the ``display_name`` (sent along as metadata, and used in error messages)."""
        path = Path(path)
        display = filename or path.name
        name = safe_upload_name(display)
        params = {"filename": name}
        if name != display:
            params["display_name"] = display
        try:
            size = path.stat().st_size
        except OSError as e:
            raise RequestRejected(400, f"cannot read {str(path)!r}: {e.strerror}") from None
        try:
            with open(path, "rb") as f:
                # A file object body is streamed with its Content-Length (not held in memory).
                info = self._request("POST", "/v1/uploads", params=params, data=f,
                                     headers={"Content-Type": "application/octet-stream",
                                              "Content-Length": str(size)},
                                     timeout=(self.timeout, None))
        except RequestRejected as e:
            if name == display:
                raise
            # The server names the file it got; the user knows it by its own name.
            raise RequestRejected(e.status, e.message.replace(repr(name), repr(display))) from None
        if not isinstance(info, dict):
            raise InvalidResult("the backend answered an upload with something other than a JSON object")
        check_name(info.get("id"), "upload id")
        info.setdefault("display_name", display)
        return info

    def submit(self, task: str, inputs: Sequence[str] = (), params: Optional[dict] = None) -> dict:
        """``POST /v1/jobs`` with upload ids; returns the job (``job["id"]``, ``job["state"]``...)."""
        job = self._request("POST", "/v1/jobs", json={"task": task, "inputs": list(inputs),
                                                      "params": dict(params or {})})
        if not isinstance(job, dict):
            raise InvalidResult("the backend answered a job request with something other than a JSON object")
        check_name(job.get("id"), "job id")
        return job

    def job(self, job_id: str) -> dict:
        """``GET /v1/jobs/{id}``: state, progress (0..1), stage, message, eta_s, bundle_url."""
        return self._request("GET", f"/v1/jobs/{check_name(job_id, 'job id')}")

    def cancel(self, job_id: str) -> dict:
        """``DELETE /v1/jobs/{id}``: cancel; a running job stops within a step."""
        return self._request("DELETE", f"/v1/jobs/{check_name(job_id, 'job id')}")

    def release(self) -> dict:
        """``POST /v1/release``: free loaded models and cached GPU memory."""
        return self._request("POST", "/v1/release")

    # -- models (hub catalogue, downloads into the backend's cache) ----------------------

    def models(self) -> dict:
        """``GET /v1/models``: the catalogue with installed, sizes, VRAM, fits, licence flags,
        and the running download."""
        return self._request("GET", "/v1/models")

    def download_model(self, model_id: str, accept_licence: bool = False) -> dict:
        """``POST /v1/models/{id}/download``: start a download job (progress, cancel, resume)."""
        job = self._request("POST", f"/v1/models/{_model_id(model_id)}/download",
                            json={"accept_licence": bool(accept_licence)})
        check_name(job.get("id") if isinstance(job, dict) else None, "download id")
        return job

    def model_download(self, job_id: str) -> dict:
        """``GET /v1/models/downloads/{id}``: state, progress, bytes_done, bytes_total, stage."""
        return self._request("GET", f"/v1/models/downloads/{check_name(job_id, 'download id')}")

    def cancel_model_download(self, job_id: str) -> dict:
        """``DELETE /v1/models/downloads/{id}``: cancel (the partial files stay, to resume)."""
        return self._request("DELETE", f"/v1/models/downloads/{check_name(job_id, 'download id')}")

    def remove_model(self, model_id: str) -> dict:
        """``DELETE /v1/models/{id}``: remove the model's files from the backend's cache."""
        return self._request("DELETE", f"/v1/models/{_model_id(model_id)}")

    def download_bundle(self, job_id: str, out_dir: os.PathLike | str,
                        max_bytes: int = MAX_DOWNLOAD_BYTES) -> Path:
        """``GET /v1/jobs/{id}/bundle``, unzipped into ``out_dir`` and validated.

        The server is not trusted: the download stops past ``max_bytes`` (or the free disk
        space), :func:`backend.bundle.unzip_bundle` refuses zip bombs and members outside the
        folder and replaces ``out_dir`` only if it is an earlier extraction, and the bundle is
        read back (every part's presence, shapes and values but the arrays' data) before
        it is returned. A refused result raises InvalidResult and leaves nothing behind.
        """
        check_name(job_id, "job id")
        out_dir = Path(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        r = self._request("GET", f"/v1/jobs/{job_id}/bundle", expect_json=False, stream=True,
                          timeout=(self.timeout, None))
        limit = min(max_bytes, shutil.disk_usage(out_dir.parent).free)
        fd, tmp = tempfile.mkstemp(prefix=".parallax-", suffix=".zip", dir=out_dir.parent)
        try:
            with os.fdopen(fd, "wb") as f, r:
                declared = r.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise InvalidResult(_too_large(job_id, int(declared), limit, max_bytes))
                got = 0
                for chunk in r.iter_content(1 << 20):
                    got += len(chunk)
                    if got > limit:
                        raise InvalidResult(_too_large(job_id, got, limit, max_bytes))
                    f.write(chunk)
            out = unzip_bundle(tmp, out_dir)
        except BundleError as e:
            raise InvalidResult(f"the result of job {job_id} is not a valid bundle zip: {e}") from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, ConnectionError) as e:
            raise self._unreachable(e) from None
        finally:
            os.unlink(tmp)
        try:
            read_bundle(out, load_points=False, load_depth=False)
        except BundleError as e:
            shutil.rmtree(out, ignore_errors=True)  # our extraction, of a result we refuse
            raise InvalidResult(f"the result of job {job_id} is not a valid bundle: {e}") from None
        return out

    def wait(self, job_id: str, on_progress: Optional[ProgressFn] = None, poll_s: float = 0.25,
             timeout: Optional[float] = None, should_cancel: Optional[Callable[[], bool]] = None, *,
             job: Optional[dict] = None) -> dict:
        """Block until the job ends; return its final state when done. The one poll loop of
        the client: :class:`client.jobs.JobHandle` runs it in its thread.

        Raises JobFailed / JobCancelled for those end states, BackendCrashed if the process
        died, TimeoutError after ``timeout`` seconds. ``on_progress(job_dict)`` is called after
        every poll; ``should_cancel()`` returning True sends a cancel (once). ``job``: the job
        as last seen (``submit``'s answer), which stands in for the first poll.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        cancel_sent = False
        if job is None:
            job = self.job(job_id)
        while True:
            if on_progress is not None:
                on_progress(job)
            if job["state"] == "done":
                return job
            if job["state"] == "failed":
                raise JobFailed(job_id, job.get("message") or "unknown error")
            if job["state"] == "cancelled":
                raise JobCancelled(job_id, job.get("message", ""))
            if should_cancel is not None and not cancel_sent and should_cancel():
                self.cancel(job_id)
                cancel_sent = True
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout:.0f} s")
            time.sleep(poll_s)
            job = self.job(job_id)


def _model_id(model_id) -> str:
    """A catalogue id goes into a URL: lower-case letters, digits, '.', '_', '-' only."""
    if not isinstance(model_id, str) or not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", model_id):
        raise RequestRejected(400, f"{model_id!r} is not a model id (lower-case letters, digits, '.', '_', '-')")
    return model_id


def _too_large(job_id: str, size: int, limit: int, max_bytes: int) -> str:
    why = "the client's limit" if limit == max_bytes else "the free disk space"
    return f"the result of job {job_id} is larger than {why} ({size / 1e6:.0f} MB > {limit / 1e6:.0f} MB)"


def _error_message(r: requests.Response) -> str:
    try:
        body = r.json()
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"]
    except ValueError:
        pass
    return (r.text or r.reason or "error").strip()[:500]
