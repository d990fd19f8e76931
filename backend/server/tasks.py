"""What a job can run: the task registry, the job context and the ``solve`` task.

A :class:`Task` names a pipeline entry point ``run(ctx: JobContext) -> Bundle | Path`` (a
Bundle in memory, which the server writes atomically, or the path of a bundle directory the
pipeline already wrote), the pydantic model its parameters must satisfy, and the inputs it
takes. The entry may be given as ``"module:attr"`` and is imported only when first used, so a
task whose pipeline is not in this build is reported unavailable (with the reason) by
``/v1/health`` and refused by ``POST /v1/jobs`` -- never faked.

Progress: the pipeline calls ``ctx.progress(fraction, stage)`` (fraction of the whole job in
[0, 1]; stage a short human label) once per denoising step / alignment iteration / window.
It returns False once the job is cancelled; the pipeline must then stop. A pipeline that
keeps calling after that gets :class:`JobCancelled` raised from the call.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .config import Limits
from .uploads import UploadInfo

# This package's parent: "backend" when run as ``python -m backend``, "<addon>.backend" when
# imported as part of the Blender add-on.
_BACKEND_PKG = __package__.rsplit(".", 1)[0]


class JobCancelled(Exception):
    """Raised from ``ctx.progress`` when a cancelled job's pipeline keeps going."""


@dataclass
class JobContext:
    job_id: str
    inputs: list  # list[UploadInfo], in the order the job named them
    params: Any  # the task's validated params model instance
    work_dir: Path  # scratch space, removed when the job ends
    progress: Callable[[float, str], bool]
    cache: dict  # per task, kept between jobs (loaded models); emptied by /v1/release
    limits: Limits
    cancel_event: threading.Event = field(default_factory=threading.Event)
    device: str = "auto"  # the server's --device: auto | cpu | cuda[:n]

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class Task:
    name: str
    description: str
    run: Union[str, Callable[[JobContext], Any]]  # callable or "module:attr"
    params_model: type = NoParams
    input_kinds: tuple = ("video", "image")
    min_inputs: int = 1
    max_inputs: int = 1
    # Extra availability check (returns the reason it is unavailable, or None).
    check: Optional[Callable[[], Optional[str]]] = None
    video_alone: bool = True  # a video input must be the job's only input
    _resolved: Any = field(default=None, repr=False)
    _reason: Any = field(default=False, repr=False)  # False: not checked yet

    def resolve(self) -> Callable[[JobContext], Any]:
        if self._resolved is None:
            self._resolved = self.run if callable(self.run) else import_entry(self.run)
        return self._resolved

    def unavailable_reason(self) -> Optional[str]:
        """None when the task can run here; checked once per process, then cached."""
        if self._reason is False:
            try:
                reason = self.check() if self.check else None
                if reason is None:
                    self.resolve()
            except Exception as e:  # ImportError of the pipeline or its dependencies
                reason = f"{type(e).__name__}: {e}"
            self._reason = reason
        return self._reason

    def describe(self) -> dict:
        reason = self.unavailable_reason()
        return {
            "available": reason is None,
            "reason": reason,
            "description": self.description,
            "inputs": {"kinds": list(self.input_kinds), "min": self.min_inputs, "max": self.max_inputs},
            "params_schema": self.params_model.model_json_schema(),
        }


def import_entry(spec: str) -> Any:
    """Import ``"package.module:attr"``; a leading ``backend.`` follows this package's name."""
    module_name, _, attr = spec.partition(":")
    if module_name == "backend" or module_name.startswith("backend."):
        module_name = _BACKEND_PKG + module_name[len("backend"):]
    module = importlib.import_module(module_name)
    if not attr:
        return module
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"{module_name} has no {attr!r} (pipeline not in this build)") from None


class TaskRegistry:
    def __init__(self, tasks: tuple = ()):
        self._tasks: dict[str, Task] = {}
        for t in tasks:
            self.register(t)

    def register(self, task: Task) -> None:
        self._tasks[task.name] = task

    def get(self, name: str) -> Optional[Task]:
        return self._tasks.get(name)

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def describe(self) -> dict:
        return {name: self._tasks[name].describe() for name in self.names()}


# ----------------------------------------------------------------------------------------
# solve: cameras (and sparse points) of a clip or an image sequence with a registered engine.
#
# Engine contract (backend/engines/__init__.py): ``ENGINES = {"name": "module:Class"}`` (module
# relative to backend.engines), ``get_engine(name)`` builds one, and
#     engine.solve(source, progress=progress, start=.., stride=.., max_frames=.., **options) -> Bundle
# where source is a video path or a list of image paths (the engine reads them with
# backend.io_video), progress returning False makes it raise engines.Cancelled, and
# engines.EngineError / io_video.VideoError (a ValueError) carry messages for the user.
# An engine class may list the modules it needs in ``requires`` (checked for /v1/health).

# Engine solve() arguments the service sets itself (never user options).
_RESERVED = {"self", "frames", "progress", "start", "stride", "max_frames", "workdir", "verbose"}


def _engines():
    return import_entry("backend.engines")


def engine_specs() -> dict:
    return dict(_engines().ENGINES)


def engine_class(name: str):
    spec = engine_specs()[name]
    module_name, _, class_name = spec.partition(":")
    module = importlib.import_module(module_name, _engines().__name__)
    return getattr(module, class_name)


def engines_status() -> dict:
    """{name: {"available": bool, "reason": str|None}} for /v1/health, never faked."""
    try:
        names = list(engine_specs())
    except Exception:  # no engine registry in this build: tasks.solve says why
        return {}
    return {name: _engine_status(name) for name in names}


_ENGINE_STATUS: dict = {}


def _engine_status(name: str) -> dict:
    if name not in _ENGINE_STATUS:
        try:
            cls = engine_class(name)
            missing = [m for m in getattr(cls, "requires", ()) if importlib.util.find_spec(m) is None]
            reason = f"missing Python module(s): {', '.join(missing)}" if missing else None
        except Exception as e:
            reason = f"{type(e).__name__}: {e}"
        _ENGINE_STATUS[name] = {"available": reason is None, "reason": reason}
    return _ENGINE_STATUS[name]


class SolveParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    engine: str = Field("colmap", description="engine name, one of /v1/health 'engines'")
    start: int = Field(0, ge=0, le=1_000_000, description="first frame used")
    stride: int = Field(1, ge=1, le=100, description="use every n-th frame")
    max_frames: Optional[int] = Field(None, ge=2, le=100_000, description="cap on frames used")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="engine-specific options: keyword arguments of its solve()")

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, v: str) -> str:
        try:
            status = engines_status()
        except Exception:
            status = {}
        if v not in status:
            raise ValueError(f"unknown engine {v!r}; this build has: {', '.join(status) or 'none'}")
        if not status[v]["available"]:
            raise ValueError(f"engine {v!r} is not available here: {status[v]['reason']}")
        return v

    @model_validator(mode="after")
    def _known_options(self):
        if self.options:
            import inspect

            params = inspect.signature(engine_class(self.engine).solve).parameters
            allowed = sorted(set(params) - _RESERVED)
            unknown = sorted(set(self.options) - set(allowed))
            if unknown:
                raise ValueError(f"unknown option(s) {', '.join(unknown)} for engine {self.engine!r}; "
                                 f"it takes: {', '.join(allowed)}")
        return self


def _check_solve() -> Optional[str]:
    status = engines_status()
    if not status:
        _engines()  # raises (and so reports) when the registry itself is missing
        return "no engine registered in backend.engines.ENGINES"
    if not any(s["available"] for s in status.values()):
        return "no engine available: " + "; ".join(f"{k}: {s['reason']}" for k, s in status.items())
    return None


def run_solve(ctx: JobContext):
    p: SolveParams = ctx.params
    engines = _engines()
    key = ("engine", p.engine)
    engine = ctx.cache.get(key)
    if engine is None:  # built once per server process: a loaded model stays loaded
        ctx.progress(0.0, f"loading engine {p.engine}")
        engine = ctx.cache[key] = engines.get_engine(p.engine)
    first = ctx.inputs[0]
    source = str(first.path) if first.kind == "video" else [str(u.path) for u in ctx.inputs]
    try:
        return engine.solve(source, progress=ctx.progress, start=p.start, stride=p.stride,
                            max_frames=p.max_frames, **p.options)
    except getattr(engines, "EngineError", ()) as e:  # a message for the user, not a bug
        if ctx.cancelled:
            raise JobCancelled() from None
        raise ValueError(str(e)) from None


def _pipeline_check(module: str, what: str) -> Callable[[], Optional[str]]:
    """A task whose pipeline module may not be in this build: say so plainly for /v1/health."""
    def check() -> Optional[str]:
        if importlib.util.find_spec(_BACKEND_PKG + module[len("backend"):]) is None:
            return f"{what} is not in this build yet: there is no {module} pipeline"
        return None
    return check


def _generate_params() -> type:
    try:  # light: pydantic only (torch is imported by the job, not here)
        return import_entry("backend.pipelines.generate:GenerateParams")
    except ImportError:  # not in this build: _generate_check reports it
        return NoParams


def _generate_check() -> Optional[str]:
    return import_entry("backend.pipelines.generate:check")()


# Tasks of DESIGN section 1 beyond solve: their pipelines serve through a ``serve(ctx)``
# function of the named module; until it exists, /v1/health says so.
def default_registry() -> TaskRegistry:
    return TaskRegistry((
        Task("solve", "cameras and sparse points of a clip (one video, or 2+ images in order)",
             run_solve, SolveParams, ("video", "image"), 1, 100_000, check=_check_solve),
        Task("generate", "a shot and its camera from a prompt (T2V+C); optional keyframe images: "
                         "one is the first frame, two the first and last",
             "backend.pipelines.generate:serve", _generate_params(),
             min_inputs=0, max_inputs=2, input_kinds=("image",), check=_generate_check, video_alone=False),
        Task("reconstruct", "dynamic 4D reconstruction of a clip", "backend.pipelines.reconstruct:serve",
             input_kinds=("video",),
             check=_pipeline_check("backend.pipelines.reconstruct", "dynamic 4D reconstruction (Geo4D)")),
        Task("pair_pose", "relative pose of two images", "backend.pipelines.pair_pose:serve",
             min_inputs=2, max_inputs=2, input_kinds=("image",),
             check=_pipeline_check("backend.pipelines.pair_pose", "pose from an image pair (InterPose)")),
    ))
