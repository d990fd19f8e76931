"""The job queue: one worker thread hands jobs, in submission order, to the engine worker
process (``worker.py``), which runs them.

A job's life: ``queued`` -> ``running`` -> ``done`` | ``failed`` | ``cancelled`` (a queued
job can go straight to ``cancelled``). Its directory ``<data>/jobs/<id>/`` holds ``job.json``
(state, kept current for the retention sweep, for post-mortems and for the next server
process), a scratch ``work/`` folder and, once done, ``bundle.zip``. Only ``done`` jobs have a
bundle: the bundle is written atomically (backend.bundle.write_bundle) and zipped atomically,
and a job cancelled, failed or crashed at any point has its partial outputs removed.

The engine worker keeps per-task caches between jobs, so a loaded model stays loaded;
``release()`` ends the worker (between jobs) to give everything back.

A server that died (a crash, kill -9, a power cut) left its jobs ``queued`` or ``running`` in
their job.json forever, and the next server answered 404 for them (issue 12, item 2). On
start-up the queue reads every job folder: finished jobs are served again, and interrupted
ones are marked failed with "the backend stopped while this job ran"; their uploads stay (the
upload store reloads them too), claimed for a new window, so the job can be submitted again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pydantic import ValidationError

from . import memory, retention, storage
from .config import ServerConfig
from .errors import ApiError, format_validation
from .tasks import TaskRegistry
from .uploads import META_NAME as UPLOAD_META, UploadStore, is_id, new_id
from .worker import BUNDLE_ZIP, EngineWorker, clean_job_dir

log = logging.getLogger("parallax.server")

STATES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = ("queued", "running")
JOB_META = "job.json"
INTERRUPTED = "the backend stopped while this job ran"
_STARTED = retention.process_started()  # with the pid, tells this server from a later one with its pid


@dataclass
class Job:
    id: str
    task: str
    inputs: list
    params: dict
    dir: Path
    created: float
    params_obj: Any = None
    state: str = "queued"
    progress: float = 0.0
    stage: str = "queued"
    message: str = ""
    started: Optional[float] = None
    finished: Optional[float] = None
    downloaded: bool = False  # its bundle was fetched at least once (see Retention.claim_s)
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def eta_s(self, now: float) -> Optional[float]:
        """Remaining seconds from the average pace so far (None until there is a pace)."""
        if self.state != "running" or self.started is None or self.progress < 0.01:
            return None
        elapsed = max(now - self.started, 0.0)
        return round(elapsed * (1.0 - self.progress) / self.progress, 1)

    def to_json(self, now: Optional[float] = None) -> dict:
        now = time.time() if now is None else now
        return {
            "id": self.id, "task": self.task, "state": self.state,
            "progress": round(self.progress, 4), "stage": self.stage, "message": self.message,
            "eta_s": self.eta_s(now), "cancel_requested": self.cancel_event.is_set(),
            "created": self.created, "started": self.started, "finished": self.finished,
            "inputs": list(self.inputs), "params": self.params,
            "bundle_url": f"/v1/jobs/{self.id}/bundle" if self.state == "done" else None,
        }


class JobQueue:
    def __init__(self, config: ServerConfig, registry: TaskRegistry, uploads: UploadStore):
        self.config = config
        self.limits = config.limits
        self.registry = registry
        self.uploads = uploads
        self.root = storage.private_dir(config.jobs_dir)
        self._jobs: "OrderedDict[str, Job]" = OrderedDict()
        self._removed: "OrderedDict[str, None]" = OrderedDict()  # ids swept away, for 410
        self._claims: dict[str, float] = {}  # upload id -> kept until (uploads of interrupted jobs)
        self._lock = threading.RLock()
        self._queue: "queue.Queue[Optional[str]]" = queue.Queue()
        self._release_pending = False
        self._current: Optional[Job] = None
        self._thread: Optional[threading.Thread] = None
        self.engine = EngineWorker(config.cancel_grace_s)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._recover()
        self.sweep()
        self._thread = threading.Thread(target=self._worker, name="parallax-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Cancel what is queued and running, then end the engine worker. A running job gets
        ``timeout`` s to stop by itself (the add-on's client kills the server 5 s after asking
        it to stop), then its process is ended."""
        with self._lock:
            for job in self._jobs.values():
                if job.state == "queued":
                    self._finish(job, "cancelled", "the server shut down before the job started")
                elif job.state == "running":
                    job.cancel_event.set()
                    self.engine.cancel(job.id)
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.engine.kill()
                self._thread.join(5.0)
        self.engine.close(timeout=1.0)

    def _recover(self) -> None:
        """Load the jobs a previous server process left; fail the ones it did not finish."""
        now = time.time()
        found = []
        for d in self.root.iterdir():
            if not is_id(d.name) or d.is_symlink() or not d.is_dir():
                continue
            try:
                meta = json.loads((d / JOB_META).read_text())
                job = Job(id=d.name, task=str(meta["task"]), inputs=[str(u) for u in meta.get("inputs", [])],
                          params=dict(meta.get("params") or {}), dir=d, created=float(meta["created"]),
                          state=str(meta["state"]), progress=float(meta.get("progress") or 0.0),
                          stage=str(meta.get("stage") or ""), message=str(meta.get("message") or ""),
                          started=meta.get("started"), finished=meta.get("finished"),
                          downloaded=bool(meta.get("downloaded")))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not a job of ours: left for the retention sweep
            if job.state not in STATES:
                continue
            if job.state in ACTIVE:
                if retention.is_active_elsewhere(d, JOB_META):
                    continue  # another live server shares this data folder and runs it
                was = job.state
                clean_job_dir(d)
                self._finish(job, "failed", f"{INTERRUPTED}" + (" (it was still queued)" if was == "queued" else "")
                             + "; its uploads are kept: submit it again")
                log.warning("job %s was %s when the previous server stopped: marked failed", job.id, was)
                for uid in job.inputs:
                    self._claims[uid] = now + self.config.retention.claim_s
            found.append(job)
        for job in sorted(found, key=lambda j: j.created):
            self._jobs[job.id] = job

    # -- requests ----------------------------------------------------------------------

    def submit(self, task_name: str, input_ids: list, params: dict) -> Job:
        task = self.registry.get(task_name)
        if task is None:
            raise ApiError(422, f"unknown task {task_name!r}; this server runs: "
                                f"{', '.join(self.registry.names())}")
        reason = task.unavailable_reason()
        if reason:
            raise ApiError(422, f"task {task_name!r} is not available on this server: {reason}")
        n = len(input_ids)
        if not task.min_inputs <= n <= task.max_inputs or n > self.limits.max_inputs:
            most = min(task.max_inputs, self.limits.max_inputs)
            raise ApiError(422, f"task {task_name!r} takes {task.min_inputs} to {most} input(s), got {n}")
        ups = []
        for uid in input_ids:
            up = self.uploads.get(uid) if isinstance(uid, str) and is_id(uid) else None
            if up is None:
                raise ApiError(422, _no_upload(uid))
            if up.kind not in task.input_kinds:
                raise ApiError(422, f"task {task_name!r} takes {' or '.join(task.input_kinds)} inputs; "
                                    f"{up.filename!r} is a {up.kind}")
            ups.append(up)
        if task.video_alone and n > 1 and any(u.kind == "video" for u in ups):
            raise ApiError(422, f"task {task_name!r} takes one video, or a sequence of images, not both")
        if sum(u.frames for u in ups) > self.limits.max_frames:
            raise ApiError(422, f"the job has {sum(u.frames for u in ups)} frames; this server accepts "
                                f"at most {self.limits.max_frames}")
        try:
            params_obj = task.params_model.model_validate(params)
        except ValidationError as e:
            raise ApiError(422, "bad params: " + format_validation(e.errors(), "params.")) from None
        with self._lock:
            self.check_capacity()
            for uid in input_ids:  # the sweep holds this lock: an upload known now stays until the job ends
                if self.uploads.get(uid) is None:
                    raise ApiError(422, _no_upload(uid))
            jid = new_id()
            job = Job(id=jid, task=task_name, inputs=list(input_ids), params=params_obj.model_dump(mode="json"),
                      dir=self.root / jid, created=time.time(), params_obj=params_obj)
            try:
                job.dir.mkdir(mode=storage.DIR_MODE)
            except OSError as e:
                problem = storage.disk_problem(e)
                if problem is None:
                    raise
                raise ApiError(507, storage.disk_message(problem, "the job could not be created")) from None
            self._jobs[jid] = job
            self._write_meta(job)
        self._queue.put(jid)
        return job

    def check_capacity(self) -> None:
        """429 while max_queue jobs wait (uploads are refused too: they would only wait)."""
        with self._lock:
            waiting = sum(1 for j in self._jobs.values() if j.state == "queued")
        if waiting >= self.limits.max_queue:
            raise ApiError(429, f"the job queue is full ({waiting} jobs waiting); try again when a "
                                "job has finished", headers={"Retry-After": "5"})

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                if job_id in self._removed:
                    raise ApiError(410, f"job {job_id!r} finished long ago and was removed by the "
                                        "retention policy")
                raise ApiError(404, f"no job with id {job_id!r} on this server")
            return job

    def snapshot(self, job_id: str) -> dict:
        with self._lock:
            return self.get(job_id).to_json()

    def cancel(self, job_id: str) -> dict:
        with self._lock:
            job = self.get(job_id)
            if job.state == "queued":
                self._finish(job, "cancelled", "cancelled before it started")
            elif job.state == "running":
                job.cancel_event.set()
                job.stage = "cancelling"
            elif job.state in ("done", "failed"):
                raise ApiError(409, f"job {job_id!r} has already ended ({job.state}); nothing to cancel")
            snap = job.to_json()
        if snap["state"] == "running":
            self.engine.cancel(job_id)  # at once: the worker's next progress report raises Cancelled
        return snap

    def bundle_path(self, job_id: str) -> Path:
        with self._lock:
            job = self.get(job_id)
            if job.state in ACTIVE:
                raise ApiError(409, f"job {job_id!r} is {job.state}; its bundle exists once it is done")
            if job.state != "done":
                raise ApiError(409, f"job {job_id!r} ended {job.state} ({job.message}); it has no bundle")
            path = job.dir / BUNDLE_ZIP
            if not path.is_file():
                raise ApiError(410, f"the bundle of job {job_id!r} was removed by the retention policy")
            if not job.downloaded:
                job.downloaded = True  # from now on the retention counts apply to it
                self._write_meta(job)
        return path

    def release(self) -> dict:
        """Give back what the engine worker holds (loaded models, CUDA memory) by ending it; a
        running job's worker ends after the job."""
        with self._lock:  # no job can start while the worker is taken away
            if self._current is not None:
                self._release_pending = True
                return {"released": [], "deferred": sorted(set(self.engine.cached) | {self._current.task})}
            detached = self.engine.detach()
        return {"released": sorted(self.engine.end(detached)), "deferred": []}

    def stats(self) -> dict:
        with self._lock:
            return {"queued": sum(1 for j in self._jobs.values() if j.state == "queued"),
                    "running": self._current.id if self._current else None,
                    "max_queue": self.limits.max_queue, "jobs_known": len(self._jobs),
                    "engine_worker": self.engine.status()}

    def sweep(self) -> None:
        """Apply the retention policy to job and upload directories."""
        r = self.config.retention
        now = time.time()
        with self._lock:  # submissions wait: an upload cannot be claimed while it is swept
            active = [j for j in self._jobs.values() if j.state in ACTIVE]
            unfetched = [j.id for j in self._jobs.values() if j.state == "done" and not j.downloaded
                         and now - (j.finished or now) < r.claim_s]
            gone = retention.sweep(self.root, r.keep_jobs, r.max_age_s, {j.id for j in active} | set(unfetched),
                                   JOB_META, now=now)
            self._claims = {u: t for u, t in self._claims.items() if t > now}
            gone_uploads = retention.sweep(self.uploads.root, r.keep_uploads, r.max_age_s,
                                           {u for j in active for u in j.inputs} | set(self._claims),
                                           UPLOAD_META, now=now, min_age_s=r.claim_s)
            for jid in gone:
                self._jobs.pop(jid, None)
                self._removed[jid] = None
            while len(self._removed) > 10_000:
                self._removed.popitem(last=False)
            for uid in gone_uploads:  # under the lock: submit() re-checks its uploads under it
                self.uploads.forget(uid)

    # -- the worker thread -------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            jid = self._queue.get()
            if jid is None:
                return
            with self._lock:
                job = self._jobs.get(jid)
                if job is None or job.state != "queued":
                    continue
                job.state, job.started = "running", time.time()
                job.stage = "starting" if self.engine.pid else "starting the engine process"
                self._current = job
                self._write_meta(job)
            try:
                self._run(job)
            except BaseException:  # never let the worker die: later jobs must still run
                log.exception("worker: unexpected error around job %s", jid)
                with self._lock:
                    if job.state == "running":
                        clean_job_dir(job.dir)
                        self._finish(job, "failed", "internal error in the job runner (see the server log)")
            finally:
                with self._lock:
                    self._current = None
                    release, self._release_pending = self._release_pending, False
                if release:
                    self.engine.close()
                try:
                    self.sweep()
                except Exception:
                    log.exception("retention sweep failed")
                memory.trim()

    def _run(self, job: Job) -> None:
        task = self.registry.get(job.task)
        inputs = [self.uploads.get(u) for u in job.inputs]
        if any(u is None for u in inputs):
            state, message = "failed", "an input upload of this job is gone from the server; upload it again"
        else:
            try:
                payload = pickle.dumps({"task": job.task, "run": task.run, "params": job.params_obj,
                                        "inputs": inputs, "job_dir": str(job.dir), "limits": self.limits,
                                        "device": self.config.device})
            except Exception as e:  # a lambda or closure as run: the worker process cannot import it
                log.exception("job %s: task %r cannot be sent to the engine worker", job.id, job.task)
                state, message = "failed", (f"internal error: task {job.task!r} cannot run in the engine "
                                            f"process ({type(e).__name__}: {e})")
            else:
                state, message = self.engine.run(job.id, payload, self._progress_fn(job),
                                                 job.cancel_event.is_set)
        with self._lock:
            if job.cancel_event.is_set() and state != "cancelled":
                # Cancelled while zipping, or a pipeline that turned the Cancelled it saw into an
                # error of its own (or died of it).
                state, message = "cancelled", "cancelled by request"
            clean_job_dir(job.dir, keep=("job.json", "error.log") + ((BUNDLE_ZIP,) if state == "done" else ()))
            self._finish(job, state, self._scrub(message, job, inputs))

    def _scrub(self, message: str, job: Job, inputs: list) -> str:
        """Messages name the user's files, never the server's folders."""
        paths = {str(job.dir): "the job's folder", str(self.uploads.root): "the upload folder",
                 str(self.config.data_dir): "the server's data folder"}
        for up in inputs:
            if up is not None:  # as the user named it (an OSError quotes its path itself)
                paths[str(up.path)] = up.filename
                paths[str(up.path.parent)] = "the upload folder"
        return storage.scrub(message, paths)

    def _progress_fn(self, job: Job):
        """Records the worker's reports: fraction (None: unchanged) and stage."""
        def progress(fraction: Optional[float], stage: Optional[str] = None) -> None:
            if job.cancel_event.is_set():  # "cancelling" stays until the job ends
                return
            try:
                f = float(fraction) if fraction is not None else job.progress
            except (TypeError, ValueError):
                f = job.progress
            with self._lock:
                if math.isfinite(f):
                    job.progress = min(max(f, 0.0), 1.0)
                if stage:
                    job.stage = str(stage)[:200]
        return progress

    def _finish(self, job: Job, state: str, message: str) -> None:
        job.state, job.message, job.finished = state, message, time.time()
        job.stage = state
        if state == "done":
            job.progress = 1.0
        self._write_meta(job)

    def _write_meta(self, job: Job) -> None:
        meta = {k: v for k, v in job.to_json().items() if k != "eta_s"}
        meta.update(pid=os.getpid(), pid_started=_STARTED, downloaded=job.downloaded)
        try:
            storage.write_private(job.dir / JOB_META, json.dumps(meta))
        except OSError:  # the directory was swept (a cancelled queued job), or the disk is full
            pass


def _no_upload(uid) -> str:
    return (f"no upload with id {uid!r} on this server (upload the file with POST /v1/uploads first; "
            "uploads are removed after a while)")
