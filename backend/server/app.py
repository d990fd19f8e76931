"""The FastAPI application: routes of DESIGN section 4, bearer-token auth, JSON errors.

Every error is ``{"error": "<message for a person>"}`` with a 4xx status, 507 when the server's
disk is full or read-only, and 500 only for a bug in the server itself (its message names the
exception type; the details, which may hold server paths, go to the server log). The schema is
served at ``/openapi.json`` without a token (it holds no data); everything else needs
``Authorization: Bearer <PARALLAX_TOKEN>``.
"""

from __future__ import annotations

import hmac
import logging
import os
import sys
import threading
import time
from contextlib import asynccontextmanager
from typing import Any, Literal, Optional

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from . import storage
from .config import ServerConfig
from .errors import ApiError, format_validation
from .jobs import JobQueue
from .models import ModelManager, add_model_routes
from .tasks import TaskRegistry
from .tasks.solve import engines_status
from .uploads import IMAGE_EXTS, VIDEO_EXTS, UploadStore

API_VERSION = 1
PUBLIC_PATHS = ("/openapi.json",)
log = logging.getLogger("parallax.server")


# -- schema models ----------------------------------------------------------------------

class ErrorOut(BaseModel):
    error: str = Field(..., description="what went wrong, for a person")


class UploadOut(BaseModel):
    id: str
    filename: str
    kind: Literal["video", "image"]
    bytes: int
    width: int
    height: int
    frames: int
    fps: Optional[float]
    created: float = Field(..., description="seconds since the epoch")
    display_name: Optional[str] = Field(None, description="the user's own name for the file, as given")


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str = Field(..., min_length=1, max_length=64, description="a task name from /v1/health")
    inputs: list[str] = Field(default_factory=list, max_length=100_000, description="upload ids, in order")
    params: dict[str, Any] = Field(default_factory=dict, description="the task's params (see params_schema in /v1/health)")


class JobOut(BaseModel):
    id: str
    task: str
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    progress: float = Field(..., ge=0, le=1)
    stage: str
    message: str = Field(..., description="why it failed or was cancelled; empty otherwise")
    eta_s: Optional[float] = Field(None, description="estimated seconds left while running")
    cancel_requested: bool
    created: float
    started: Optional[float]
    finished: Optional[float]
    inputs: list[str]
    params: dict[str, Any]
    bundle_url: Optional[str]


class HealthOut(BaseModel):
    version: str
    api: int
    pid: int
    device: dict[str, Any]
    memory: dict[str, Any]
    tasks: dict[str, Any]
    engines: dict[str, Any]
    queue: dict[str, Any]
    limits: dict[str, Any]
    retention: dict[str, Any]


class ReleaseOut(BaseModel):
    released: list[str]
    deferred: list[str]


def _errors(*codes: int) -> dict:
    return {c: {"model": ErrorOut} for c in (401,) + codes}


_BINARY_BODY = {"requestBody": {"required": True, "content": {"application/octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}}}


# -- auth ------------------------------------------------------------------------------

class TokenAuth:
    """Pure ASGI gate: runs before routing and body parsing, so a bad token always gets 401."""

    def __init__(self, app, token: Optional[str]):
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.token is None or scope["path"] in PUBLIC_PATHS:
            return await self.app(scope, receive, send)
        auth = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, credentials = auth.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.token):
            return await self.app(scope, receive, send)
        message = ("missing bearer token" if not auth else "wrong token") + \
            ": send 'Authorization: Bearer <the PARALLAX_TOKEN the server was started with>'"
        response = JSONResponse({"error": message}, 401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


# Declares the scheme in the OpenAPI schema; the check itself is TokenAuth's.
_bearer = HTTPBearer(auto_error=False, description="the PARALLAX_TOKEN the server was started with")


def _documented_auth(_: Optional[HTTPAuthorizationCredentials] = Depends(_bearer)) -> None:
    return None


# -- device and memory facts -------------------------------------------------------------

class DeviceProbe:
    """Torch is heavy: it is probed once, in the background, unless the device is 'cpu'.
    ``engine_facts`` returns what the engine worker last reported (jobs allocate there)."""

    def __init__(self, requested: str, engine_facts=dict):
        self.requested = requested
        self.engine_facts = engine_facts
        self.facts: dict = {"requested": requested, "status": "probing"}
        if requested == "cpu":
            self.facts = {"requested": "cpu", "status": "ready", "name": "cpu", "gpu": None}
        else:
            threading.Thread(target=self._probe, name="parallax-device-probe", daemon=True).start()

    def _probe(self) -> None:
        try:
            import torch

            from ..runtime import pick_device

            facts = {"requested": self.requested, "status": "ready", "torch": torch.__version__, "gpu": None}
            dev = pick_device(self.requested)  # the device the pipelines will pick
            if dev.type == "cuda":
                index = dev.index or 0
                props = torch.cuda.get_device_properties(index)
                facts.update(name=f"cuda:{index}", gpu={"name": props.name, "memory_total": props.total_memory})
            else:
                facts["name"] = "cpu"
            self.facts = facts
        except Exception as e:
            self.facts = {"requested": self.requested, "status": "ready", "name": "cpu", "gpu": None,
                          "note": f"torch unavailable: {type(e).__name__}: {e}"}

    def snapshot(self) -> dict:
        facts = dict(self.facts)
        torch = sys.modules.get("torch")
        if facts.get("gpu") and torch is not None:
            try:
                free, total = torch.cuda.mem_get_info()
                facts["gpu"] = dict(facts["gpu"], memory_free=free,
                                    memory_allocated=self.engine_facts().get("cuda_allocated", 0))
            except Exception:
                pass
        return facts


def memory_facts(engine_pid: Optional[int] = None) -> dict:
    """The machine's memory, the server's resident memory and the engine worker's (where the
    models live)."""
    try:
        import psutil

        vm = psutil.virtual_memory()
        facts = {"total": vm.total, "available": vm.available, "process_rss": psutil.Process().memory_info().rss,
                 "engine_rss": None}
        if engine_pid:
            try:
                facts["engine_rss"] = psutil.Process(engine_pid).memory_info().rss
            except psutil.Error:
                pass
        return facts
    except ImportError:
        return {}


# -- the app ---------------------------------------------------------------------------

def create_app(config: ServerConfig, registry: TaskRegistry) -> FastAPI:
    storage.prepare_data_dir(config.data_dir)  # private, ours (storage.DataDirError if not)
    uploads = UploadStore(config.uploads_dir, config.limits)
    jobs = JobQueue(config, registry, uploads)
    device = DeviceProbe(config.device, lambda: jobs.engine.facts)
    models = ModelManager(lambda: (device.snapshot().get("gpu") or {}).get("memory_total"))

    @asynccontextmanager
    async def lifespan(_app):
        jobs.start()
        yield
        models.stop()
        jobs.stop()

    app = FastAPI(
        title="Parallax backend", version=__version__, lifespan=lifespan,
        docs_url=None, redoc_url=None,  # offline tool: no CDN-hosted docs pages
        description="Uploads, jobs and result bundles for the Parallax Blender add-on. "
                    "Every route needs 'Authorization: Bearer <PARALLAX_TOKEN>'. "
                    "Errors are JSON: {\"error\": \"...\"}.",
        dependencies=[Depends(_documented_auth)],
    )
    app.state.jobs, app.state.uploads, app.state.models = jobs, uploads, models
    app.add_middleware(TokenAuth, token=config.token)
    _add_error_handlers(app)
    _document_task_params(app, registry)

    @app.post("/v1/uploads", status_code=201, response_model=UploadOut, tags=["uploads"],
              responses=_errors(400, 413, 415, 422, 429, 507), openapi_extra=_BINARY_BODY,
              summary="Upload one input file (the raw bytes are the request body)")
    async def create_upload(request: Request, filename: str = Query(
            ..., min_length=1, max_length=255,
            description=f"plain file name; its extension says the kind: video {VIDEO_EXTS}, image {IMAGE_EXTS}"),
            display_name: Optional[str] = Query(
                None, max_length=255, description="the user's own name for the file (shown in messages, never "
                                                  "used as a path)")):
        jobs.check_capacity()
        length = request.headers.get("content-length", "")
        declared = int(length) if length.isdigit() else None
        info = await uploads.receive(filename, request.stream(), declared, display_name)
        return info.to_json()

    @app.post("/v1/jobs", status_code=201, response_model=JobOut, tags=["jobs"],
              responses=_errors(422, 429, 507), summary="Queue a job")
    def create_job(body: JobRequest):
        job = jobs.submit(body.task, body.inputs, body.params)
        return jobs.snapshot(job.id)

    @app.get("/v1/jobs/{job_id}", response_model=JobOut, tags=["jobs"], responses=_errors(404, 410),
             summary="A job's state, progress, stage, message and ETA")
    def get_job(job_id: str):
        return jobs.snapshot(job_id)

    @app.delete("/v1/jobs/{job_id}", response_model=JobOut, tags=["jobs"], responses=_errors(404, 409, 410),
                summary="Cancel a job (a running one stops within a step)")
    def cancel_job(job_id: str):
        return jobs.cancel(job_id)

    @app.get("/v1/jobs/{job_id}/bundle", tags=["jobs"], responses={
        200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
              "description": "the result bundle, zipped"}, **_errors(404, 409, 410)},
        response_class=FileResponse, summary="Download a done job's result bundle (zip)")
    def get_bundle(job_id: str):
        path = jobs.bundle_path(job_id)
        task = jobs.get(job_id).task
        return FileResponse(path, media_type="application/zip", filename=f"parallax-{task}-{job_id}.zip")

    @app.get("/v1/health", response_model=HealthOut, tags=["service"], responses=_errors(),
             summary="Version, device, memory, tasks and engines available, queue, limits")
    def health():
        return {
            "version": __version__, "api": API_VERSION, "pid": os.getpid(),
            "device": device.snapshot(), "memory": memory_facts(jobs.engine.pid),
            "tasks": registry.describe(), "engines": engines_status(),
            "queue": jobs.stats(), "limits": config.limits.to_json(),
            "retention": config.retention.to_json(),
        }

    @app.post("/v1/release", response_model=ReleaseOut, tags=["service"], responses=_errors(),
              summary="Release loaded models and GPU memory: ends the engine worker process (after "
                      "the running job, if any)")
    def release():
        return jobs.release()

    add_model_routes(app, models, _errors)
    return app


def _document_task_params(app: FastAPI, registry: TaskRegistry) -> None:
    """``JobRequest.params`` is checked against the named task's params model in
    ``JobQueue.submit`` (so the error can name the task); the served schema lists every task's
    params model (and, through solve's, every engine's options) as its variants."""
    default_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = default_openapi()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            variants = []
            for name in registry.names():
                params = registry.get(name).params_model.model_json_schema(
                    ref_template="#/components/schemas/{model}")
                components.update(params.pop("$defs", {}))
                components[f"params_{name}"] = dict(params, title=f"params of task {name}")
                variants.append({"$ref": f"#/components/schemas/params_{name}"})
            components["JobRequest"]["properties"]["params"]["anyOf"] = variants
        return app.openapi_schema

    app.openapi = openapi


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request, exc: ApiError):
        return JSONResponse({"error": exc.message}, exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request, exc: RequestValidationError):
        errors = exc.errors()
        bad_json = [e for e in errors if e.get("type") == "json_invalid"]
        if bad_json:
            ctx = bad_json[0].get("ctx") or {}
            message = f"the request body is not valid JSON ({ctx.get('error', 'parse error')})"
        elif any(tuple(e.get("loc", ())) == ("body",) for e in errors):
            message = ('the request body must be a JSON object such as {"task": "solve", '
                       '"inputs": ["<upload id>"], "params": {}} sent as application/json')
        else:
            message = "bad request: " + format_validation(errors)
        return JSONResponse({"error": message}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        # FastAPI's own 400 for a JSON body it cannot even decode (any route with a body)
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            return JSONResponse({"error": "the request body is not valid JSON (it could not be parsed; "
                                          "send UTF-8 JSON as application/json)"}, 422)
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return JSONResponse({"error": message}, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request, exc: Exception):
        problem = storage.disk_problem(exc)
        if problem is not None:
            return JSONResponse({"error": storage.disk_message(problem, "the request could not be stored")}, 507)
        # The exception's text may hold server paths (an OSError names its file): the log has it.
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": f"internal server error ({type(exc).__name__}); see the server log"}, 500)
