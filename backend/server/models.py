"""The service's model endpoints: list the catalogue with what this machine's cache holds,
download a model as a job with byte progress and cancel, remove a model.

A download is a job with the same states as a task's (queued -> running -> done | failed |
cancelled), the same JSON shape for progress, stage, message and ETA, and the same cancel
contract (``runtime.Cancelled``), but it runs in a thread of the server, not in the engine
worker: it is network and disk work (huggingface_hub, no torch, no native code that can abort),
and a multi-GB download must not hold the one GPU worker that runs generate and solve jobs.
One download runs at a time. A cancelled or failed download keeps its partial files in the
cache: the next download of the model resumes from them (``backend.hub.download``).

Routes (bearer token as every route):

- ``GET /v1/models``: every catalogue entry with ``installed``, ``size_on_disk``,
  ``partial_bytes``, ``fits`` (this GPU), licence flags; and the running download, if any;
- ``POST /v1/models/{id}/download`` ``{"accept_licence": bool}``: 201 and the job; 422 for a
  licence not accepted or offline mode, 507 for a disk too small (checked before the first
  byte), 409 while another download runs;
- ``GET /v1/models/downloads/{job}``: state, progress (0..1), ``bytes_done``/``bytes_total``;
- ``DELETE /v1/models/downloads/{job}``: cancel (stops within a chunk: 10 MB);
- ``DELETE /v1/models/{id}``: remove its files from the cache (409 while it downloads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Optional

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from .errors import ApiError
from .uploads import new_id

log = logging.getLogger("parallax.server")
KEEP_JOBS = 50


class DownloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    accept_licence: bool = Field(False, description="accept the model's gated or non-commercial licence")


class ModelJobOut(BaseModel):
    id: str
    task: str
    model: str
    state: str
    progress: float
    stage: str
    message: str
    eta_s: Optional[float]
    cancel_requested: bool
    bytes_done: int
    bytes_total: int
    created: float
    started: Optional[float]
    finished: Optional[float]


class ModelsOut(BaseModel):
    models: list[dict]
    download: Optional[ModelJobOut]
    gpu_memory: Optional[int]
    offline: bool
    cache_dir: str


class RemovedOut(BaseModel):
    model: str
    freed_bytes: int


@dataclass
class ModelJob:
    id: str
    model: str
    created: float
    state: str = "queued"
    progress: float = 0.0
    stage: str = "queued"
    message: str = ""
    bytes_done: int = 0
    bytes_total: int = 0
    started: Optional[float] = None
    finished: Optional[float] = None
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def to_json(self) -> dict:
        eta = None
        if self.state == "running" and self.started and self.progress >= 0.01:
            eta = round((time.time() - self.started) * (1 - self.progress) / self.progress, 1)
        return {"id": self.id, "task": "model-download", "model": self.model, "state": self.state,
                "progress": round(self.progress, 4), "stage": self.stage, "message": self.message, "eta_s": eta,
                "cancel_requested": self.cancel_event.is_set(), "bytes_done": self.bytes_done,
                "bytes_total": self.bytes_total, "created": self.created, "started": self.started,
                "finished": self.finished}


class ModelManager:
    """The catalogue as this server's cache holds it, and its download jobs.

    ``gpu_memory()``: the GPU's total bytes (None: none, or not probed yet). ``cache_dir`` and
    ``endpoint`` default to huggingface_hub's (``HF_HUB_CACHE``, ``HF_ENDPOINT``)."""

    def __init__(self, gpu_memory: Callable[[], Optional[int]] = lambda: None, cache_dir=None, endpoint=None):
        self.gpu_memory, self.cache_dir, self.endpoint = gpu_memory, cache_dir, endpoint
        self._jobs: "OrderedDict[str, ModelJob]" = OrderedDict()
        self._current: Optional[ModelJob] = None
        self._lock = threading.Lock()

    # -- requests ---------------------------------------------------------------------------
    def list(self) -> dict:
        from ..hub.cli import describe
        from ..hub.download import cache_root, model_state, offline

        gpu = self.gpu_memory()
        models = [describe(e, model_state(e, self.cache_dir), gpu) for e in self._catalogue().values()]
        with self._lock:
            current = self._current.to_json() if self._current else None
        return {"models": models, "download": current, "gpu_memory": gpu, "offline": offline(),
                "cache_dir": str(cache_root(self.cache_dir))}

    def start(self, model_id: str, accept_licence: bool) -> dict:
        from ..hub import download as dl

        entry = self._entry(model_id)
        if entry.is_local:
            raise ApiError(409, f"{model_id} is bundled with Parallax: there is nothing to download")
        # What can be refused before a job exists is refused now, with the status it deserves.
        if entry.needs_acceptance and not accept_licence:
            raise ApiError(422, f"{model_id} is under {entry.licence} ({', '.join(entry.licence_flags())}): read "
                                f"{entry.licence_url} and send accept_licence: true to accept it")
        if dl.offline() and dl.local_snapshot(entry, self.cache_dir) is None:
            raise ApiError(422, f"the server runs with HF_HUB_OFFLINE set: {model_id} cannot be downloaded")
        try:
            root, storage = dl.cache_root(self.cache_dir), dl.storage_folder(entry, self.cache_dir)
            dl.check_disk(root, max(entry.download_bytes - dl._bytes_in(storage / "blobs"), 0), entry)
        except dl.DownloadError as e:
            raise ApiError(507, str(e)) from None
        with self._lock:
            if self._current is not None:
                raise ApiError(409, f"{self._current.model} is downloading; cancel it or wait for it to end")
            job = ModelJob(id=new_id(), model=model_id, created=time.time())
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP_JOBS:
                self._jobs.popitem(last=False)
            self._current = job
        threading.Thread(target=self._run, args=(job, entry, accept_licence), name="parallax-model-download",
                         daemon=True).start()
        return job.to_json()

    def _job(self, job_id: str):
        """The download ``job_id`` (the caller holds the lock), or a 404."""
        job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no model download with id {job_id!r} on this server")
        return job

    def get(self, job_id: str) -> dict:
        with self._lock:
            return self._job(job_id).to_json()

    def cancel(self, job_id: str) -> dict:
        with self._lock:
            job = self._job(job_id)
            if job.state in ("done", "failed"):
                raise ApiError(409, f"the download of {job.model} has already ended ({job.state})")
            job.cancel_event.set()
            if job.state == "running":
                job.stage = "cancelling"
            return job.to_json()

    def remove(self, model_id: str) -> dict:
        from ..hub.download import DownloadError, remove_model

        entry = self._entry(model_id)
        if entry.is_local:
            raise ApiError(409, f"{model_id} is bundled with Parallax and cannot be removed")
        with self._lock:
            if self._current is not None and self._current.model == model_id:
                raise ApiError(409, f"{model_id} is downloading; cancel the download first")
            try:
                freed = remove_model(entry, self.cache_dir)
            except DownloadError as e:
                raise ApiError(409, str(e)) from None
        return {"model": model_id, "freed_bytes": int(freed)}

    def stop(self) -> None:
        with self._lock:
            if self._current is not None:
                self._current.cancel_event.set()

    # -- the download thread -------------------------------------------------------------------
    def _run(self, job: ModelJob, entry, accept_licence: bool) -> None:
        from ..hub.download import DownloadError, download_model
        from ..runtime import Cancelled

        job.state, job.started, job.stage = "running", time.time(), "starting"

        def progress(p) -> None:
            with self._lock:
                job.bytes_done, job.bytes_total = int(p.done), int(p.total)
                job.progress = p.fraction
                if not job.cancel_event.is_set():
                    job.stage = p.label()

        state, message = "done", ""
        try:
            if job.cancel_event.is_set():
                raise Cancelled("cancelled before it started")
            download_model(entry, progress=progress, accept_licence=accept_licence, cache_dir=self.cache_dir,
                           endpoint=self.endpoint, is_cancelled=job.cancel_event.is_set)
        except Cancelled:
            state, message = "cancelled", "cancelled by request; downloading again resumes where it stopped"
        except DownloadError as e:
            state, message = "failed", str(e)
        except Exception as e:  # a bug: the job still ends, visibly
            log.exception("model download %s (%s) failed", job.id, job.model)
            state, message = "failed", f"internal error: {type(e).__name__}: {e}"
        with self._lock:
            job.state, job.message, job.finished, job.stage = state, message, time.time(), state
            if state == "done":
                job.progress = 1.0
            self._current = None

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _catalogue() -> dict:
        from ..hub.catalogue import catalogue

        try:
            return catalogue()
        except ValueError as e:  # a malformed $PARALLAX_CATALOGUE: say so rather than 500
            raise ApiError(422, str(e)) from None

    def _entry(self, model_id: str):
        entry = self._catalogue().get(model_id)
        if entry is None:
            raise ApiError(404, f"no model {model_id!r} in the catalogue (GET /v1/models lists them)")
        return entry


def add_model_routes(app: FastAPI, manager: ModelManager, errors: Callable[..., dict]) -> None:
    """The routes above, on ``app``; ``errors(*codes)`` documents the error responses."""

    @app.get("/v1/models", response_model=ModelsOut, tags=["models"], responses=errors(422),
             summary="The model catalogue: installed, size, VRAM, fits this GPU, licence; the running download")
    def list_models():
        return manager.list()

    @app.post("/v1/models/{model_id}/download", status_code=201, response_model=ModelJobOut, tags=["models"],
              responses=errors(404, 409, 422, 507),
              summary="Download a model into the server's huggingface_hub cache (a job: progress, cancel, resume)")
    def download_model(model_id: str, body: Optional[DownloadRequest] = None):
        return manager.start(model_id, bool(body and body.accept_licence))

    @app.get("/v1/models/downloads/{job_id}", response_model=ModelJobOut, tags=["models"], responses=errors(404),
             summary="A model download's state, progress and bytes")
    def get_download(job_id: str):
        return manager.get(job_id)

    @app.delete("/v1/models/downloads/{job_id}", response_model=ModelJobOut, tags=["models"],
                responses=errors(404, 409), summary="Cancel a model download (its partial files are kept to resume)")
    def cancel_download(job_id: str):
        return manager.cancel(job_id)

    @app.delete("/v1/models/{model_id}", response_model=RemovedOut, tags=["models"], responses=errors(404, 409),
                summary="Remove a model's files from the server's cache (nothing else)")
    def remove_model(model_id: str):
        return manager.remove(model_id)
