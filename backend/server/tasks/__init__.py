"""What a job can run: the typed task registry and the job context.

A :class:`Task` is a name, the pydantic model its parameters must satisfy, the inputs it takes,
a health check and a run function ``run(ctx: JobContext) -> Bundle | Path`` (a Bundle in
memory, which the server writes atomically, or the path of a bundle directory the pipeline
already wrote). Each task's adapter lives in a module of its own in this package and imports
its pipeline only when a job runs, so ``/v1/health`` stays cheap. A task is registered here
only when its pipeline exists: the CLI, the service and the panels show exactly these.

Progress and cancel: ``ctx.progress`` is a :class:`backend.runtime.Progress`; the pipeline
reports through it and, once the job is cancelled, the next report raises
:class:`backend.runtime.Cancelled`, the one exception the server maps to ``cancelled``.

Jobs run in the server's engine worker process (``server/worker.py``), not in the server: the
task's ``run`` and its params model travel there by reference, so both must be importable
module-level names (a lambda or closure fails its job with a message saying so). ``ctx.cache``
lives in that process and survives between jobs until it crashes or ``/v1/release`` ends it;
``ctx.cancel_event`` there is set by the server's cancel message.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from pydantic import BaseModel, ConfigDict

from ...runtime import Progress
from ..config import Limits


@dataclass
class JobContext:
    job_id: str
    inputs: list  # list[UploadInfo], in the order the job named them
    params: Any  # the task's validated params model instance
    work_dir: Path  # scratch space, removed when the job ends
    progress: Progress
    cache: dict  # per task, kept between jobs (loaded models) in the engine worker; /v1/release ends it
    limits: Limits
    cancel_event: threading.Event = field(default_factory=threading.Event)  # worker.CancelFlag in a job
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
    run: Callable[[JobContext], Any]
    params_model: type = NoParams
    input_kinds: tuple = ("video", "image")
    min_inputs: int = 1
    max_inputs: int = 1
    # Why the task cannot run in this environment (missing modules, weights), or None.
    check: Optional[Callable[[], Optional[str]]] = None
    video_alone: bool = True  # a video input must be the job's only input
    _reason: Any = field(default=False, repr=False)  # False: not checked yet

    def unavailable_reason(self) -> Optional[str]:
        """None when the task can run here; checked once per process, then cached."""
        if self._reason is False:
            try:
                self._reason = self.check() if self.check else None
            except Exception as e:  # a broken check must not hide the others
                self._reason = f"{type(e).__name__}: {e}"
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


def missing_for_model(requires: tuple, weights: Path) -> Optional[str]:
    """Why a task on the unified model cannot run here (missing modules or weights), or None."""
    import importlib.util

    missing = [m for m in requires if importlib.util.find_spec(m) is None]
    if missing:
        return f"missing Python module(s): {', '.join(missing)} (install backend/requirements.txt)"
    if not (weights / "config.json").is_file():
        return f"the model weights are missing: {weights}"
    return None


def load_once(ctx: JobContext, key, build: Callable[[], Any]):
    """What ``build`` makes (a loaded model), made on the worker's first job and kept in
    ``ctx.cache`` between jobs, even when this one is cancelled: the next needs no load."""
    obj = ctx.cache.get(key)
    if obj is None:
        ctx.progress(0.0, "loading model")  # loading cannot stop halfway; a cancel is seen after it
        obj = ctx.cache[key] = build()
    return obj


def default_registry() -> TaskRegistry:
    """The tasks whose pipelines exist in this build (DESIGN section 1)."""
    from . import generate, pair_pose, reconstruct, solve

    return TaskRegistry((solve.TASK, generate.TASK, pair_pose.TASK, reconstruct.TASK))
