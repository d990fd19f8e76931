"""The job queue: one worker thread runs jobs in submission order.

A job's life: ``queued`` -> ``running`` -> ``done`` | ``failed`` | ``cancelled`` (a queued
job can go straight to ``cancelled``). Its directory ``<data>/jobs/<id>/`` holds ``job.json``
(state, kept current for the retention sweep and for post-mortems), a scratch ``work/``
folder and, once done, ``bundle.zip``. Only ``done`` jobs have a bundle: the bundle is
written atomically (backend.bundle.write_bundle) and zipped atomically, and a job cancelled
or failed at any point has its partial outputs removed.

One worker keeps per-task caches between jobs, so a loaded model stays loaded; ``release()``
empties them (and the CUDA cache when torch is loaded) on request.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import queue
import shutil
import sys
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pydantic import ValidationError

from ..bundle import Bundle, read_bundle, write_bundle, zip_bundle
from . import memory, retention
from .config import ServerConfig
from .errors import ApiError, format_validation
from ..runtime import Cancelled, Progress
from .tasks import JobContext, TaskRegistry
from .uploads import META_NAME as UPLOAD_META, UploadStore, is_id, new_id

log = logging.getLogger("parallax.server")

STATES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = ("queued", "running")
JOB_META = "job.json"
BUNDLE_ZIP = "bundle.zip"


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
        self.root = config.jobs_dir
        self.root.mkdir(parents=True, exist_ok=True)
        self._jobs: "OrderedDict[str, Job]" = OrderedDict()
        self._removed: "OrderedDict[str, None]" = OrderedDict()  # ids swept away, for 410
        self._lock = threading.RLock()
        self._queue: "queue.Queue[Optional[str]]" = queue.Queue()
        self._caches: dict[str, dict] = {}
        self._release_pending = False
        self._current: Optional[Job] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.sweep()
        self._thread = threading.Thread(target=self._worker, name="parallax-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            for job in self._jobs.values():
                if job.state == "queued":
                    self._finish(job, "cancelled", "the server shut down before the job started")
                elif job.state == "running":
                    job.cancel_event.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

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
                raise ApiError(422, f"no upload with id {uid!r} on this server (upload the file with "
                                    "POST /v1/uploads first; uploads are removed after a while)")
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
            jid = new_id()
            job = Job(id=jid, task=task_name, inputs=list(input_ids), params=params_obj.model_dump(mode="json"),
                      dir=self.root / jid, created=time.time(), params_obj=params_obj)
            job.dir.mkdir(parents=True)
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
            return job.to_json()

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
        return path

    def release(self) -> dict:
        """Drop cached models (not the running job's: that happens when it ends)."""
        with self._lock:
            busy = self._current.task if self._current else None
            released = [name for name, cache in self._caches.items() if name != busy and cache]
            for name in released:
                self._caches[name].clear()
            self._release_pending = busy is not None
        _free_memory()
        return {"released": released, "deferred": [busy] if busy else []}

    def stats(self) -> dict:
        with self._lock:
            return {"queued": sum(1 for j in self._jobs.values() if j.state == "queued"),
                    "running": self._current.id if self._current else None,
                    "max_queue": self.limits.max_queue, "jobs_known": len(self._jobs)}

    def sweep(self) -> None:
        """Apply the retention policy to job and upload directories."""
        r = self.config.retention
        with self._lock:  # submissions wait: an upload cannot be claimed while it is swept
            active = [j for j in self._jobs.values() if j.state in ACTIVE]
            gone = retention.sweep(self.root, r.keep_jobs, r.max_age_s, {j.id for j in active}, JOB_META)
            gone_uploads = retention.sweep(self.uploads.root, r.keep_uploads, r.max_age_s,
                                           {u for j in active for u in j.inputs}, UPLOAD_META)
            for jid in gone:
                self._jobs.pop(jid, None)
                self._removed[jid] = None
            while len(self._removed) > 10_000:
                self._removed.popitem(last=False)
        for uid in gone_uploads:
            self.uploads.forget(uid)

    # -- the worker --------------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            jid = self._queue.get()
            if jid is None:
                return
            with self._lock:
                job = self._jobs.get(jid)
                if job is None or job.state != "queued":
                    continue
                job.state, job.stage, job.started = "running", "starting", time.time()
                self._current = job
                self._write_meta(job)
            try:
                self._run(job)
            except BaseException:  # never let the worker die: later jobs must still run
                log.exception("worker: unexpected error around job %s", jid)
                with self._lock:
                    if job.state == "running":
                        self._finish(job, "failed", "internal error in the job runner (see the server log)")
            finally:
                with self._lock:
                    self._current = None
                    if self._release_pending:
                        for cache in self._caches.values():
                            cache.clear()
                        self._release_pending = False
                        _free_memory()
                try:
                    self.sweep()
                except Exception:
                    log.exception("retention sweep failed")
                memory.trim()  # the job's freed memory back to the system (see memory.py)

    def _run(self, job: Job) -> None:
        task = self.registry.get(job.task)
        work = job.dir / "work"
        work.mkdir(exist_ok=True)
        bundle_dir = job.dir / "bundle"
        ctx = JobContext(job_id=job.id, inputs=[self.uploads.get(u) for u in job.inputs],
                         params=job.params_obj, work_dir=work,
                         progress=Progress(self._progress_fn(job), is_cancelled=job.cancel_event.is_set),
                         cache=self._caches.setdefault(job.task, {}), limits=self.limits,
                         cancel_event=job.cancel_event, device=self.config.device)
        final, message = "failed", ""
        try:
            if any(u is None or not u.path.is_file() for u in ctx.inputs):
                raise ValueError("an input upload of this job is gone from the server; upload it again")
            result = task.run(ctx)
            ctx.progress.check()  # cancelled as the pipeline returned: no bundle
            with self._lock:
                job.stage = "writing bundle"
            if isinstance(result, Bundle):
                write_bundle(result, bundle_dir)
            elif isinstance(result, (str, os.PathLike)):
                bundle_dir = Path(result)
                read_bundle(bundle_dir, load_points=False, load_depth=False)  # validates
            else:
                raise TypeError(f"task {job.task!r} returned {type(result).__name__}, "
                                "expected a Bundle or a bundle directory")
            zip_bundle(bundle_dir, job.dir / BUNDLE_ZIP)
            final = "done"
        except Cancelled:
            final, message = "cancelled", "cancelled by request"
        except ValueError as e:  # pipelines raise ValueError with a message for the user
            message = str(e) or type(e).__name__
        except MemoryError:
            message = "out of memory: try a shorter or smaller clip"
        except Exception as e:
            message = f"internal error: {type(e).__name__}: {e}"
            (job.dir / "error.log").write_text(traceback.format_exc())
            log.exception("job %s (%s) failed", job.id, job.task)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            if bundle_dir.parent == job.dir:
                shutil.rmtree(bundle_dir, ignore_errors=True)
        with self._lock:
            # Cancelled while zipping, or a pipeline that turned the Cancelled it saw into an
            # error of its own.
            if job.cancel_event.is_set():
                final, message = "cancelled", "cancelled by request"
            if final != "done":
                (job.dir / BUNDLE_ZIP).unlink(missing_ok=True)
            self._finish(job, final, message)

    def _progress_fn(self, job: Job):
        """The job's progress callback: records fraction and stage; False once cancelled."""
        def progress(fraction: float, stage: Optional[str] = None) -> bool:
            if job.cancel_event.is_set():
                return False
            try:
                f = float(fraction)
            except (TypeError, ValueError):
                f = job.progress
            with self._lock:
                if math.isfinite(f):
                    job.progress = min(max(f, 0.0), 1.0)
                if stage:
                    job.stage = str(stage)[:200]
            return True
        return progress

    def _finish(self, job: Job, state: str, message: str) -> None:
        job.state, job.message, job.finished = state, message, time.time()
        job.stage = state
        if state == "done":
            job.progress = 1.0
        self._write_meta(job)

    def _write_meta(self, job: Job) -> None:
        meta = {k: v for k, v in job.to_json().items() if k != "eta_s"}
        meta["pid"] = os.getpid()
        try:
            tmp = job.dir / f".{JOB_META}.tmp"
            tmp.write_text(json.dumps(meta))
            os.replace(tmp, job.dir / JOB_META)
        except OSError:  # the directory was swept (a cancelled queued job); nothing to keep
            pass


def _free_memory() -> None:
    gc.collect()
    memory.trim()
    torch = sys.modules.get("torch")  # only if a pipeline loaded it; never import it here
    if torch is not None:
        try:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass
