"""The ``solve`` task: cameras (and sparse points) of a clip or an image sequence with a
registered engine (``backend.engines``). Engine options are validated against the engine's
typed options model before the job is queued, so a bad one is a 422 naming it; ``/v1/health``
serves each engine's options schema (types, ranges, defaults) beside its availability."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ... import engines
from . import JobContext, Task


def engines_status() -> dict:
    """{name: {"available", "reason", "description", "options_schema"}} for /v1/health."""
    return {name: {"available": (reason := spec.unavailable_reason()) is None, "reason": reason,
                   "description": spec.description, "options_schema": spec.options.model_json_schema()}
            for name, spec in engines.ENGINES.items()}


def _document_options(schema: dict) -> None:
    """The options' schema: one variant per engine (types, ranges, defaults), so the served
    schemas (/v1/health, /openapi.json) say what each engine takes. The check itself is
    ``SolveParams._typed_options``, against the engine the job names."""
    variants = []
    for name, spec in engines.ENGINES.items():
        option_schema = spec.options.model_json_schema()
        if "$defs" in option_schema:  # nested models would need their refs moved: not inlined
            continue
        variants.append(dict(option_schema, title=f"{name} options"))
    if variants:
        schema["anyOf"] = variants


class SolveParams(BaseModel):
    # strict: JSON true is not the integer 1, nor "5" the integer 5 (lax pydantic took both)
    model_config = ConfigDict(extra="forbid", strict=True)
    engine: str = Field("colmap", description="engine name, one of /v1/health 'engines'")
    start: int = Field(0, ge=0, le=1_000_000, description="first frame used")
    stride: int = Field(1, ge=1, le=100, description="use every n-th frame")
    max_frames: Optional[int] = Field(None, ge=2, le=100_000, description="cap on frames used")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="engine-specific options, checked against the engine's "
                                                "typed options (see backend/engines/options.py)",
                                    json_schema_extra=lambda schema: _document_options(schema))

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, v: str) -> str:
        if v not in engines.ENGINES:
            raise ValueError(f"unknown engine {v!r}; this build has: {', '.join(engines.ENGINES)}")
        reason = engines.ENGINES[v].unavailable_reason()
        if reason:
            raise ValueError(f"engine {v!r} is not available here: {reason}")
        return v

    @model_validator(mode="after")
    def _typed_options(self):
        try:
            typed = engines.ENGINES[self.engine].options.model_validate(self.options)
        except ValidationError as e:
            problems = "; ".join(_option_problem(err) for err in e.errors()[:6])
            raise ValueError(f"{problems} (engine {self.engine!r})") from None
        self.options = typed.model_dump(exclude_unset=True)
        return self


def _option_problem(err: dict) -> str:
    """``option overlap: Input should be ...``; a check across options names them itself."""
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    loc = ".".join(str(x) for x in err.get("loc", ()))
    return f"option {loc}: {msg}" if loc else f"options: {msg}"


def _check() -> Optional[str]:
    status = engines_status()
    if not any(s["available"] for s in status.values()):
        return "no engine available: " + "; ".join(f"{k}: {s['reason']}" for k, s in status.items())
    return None


def run(ctx: JobContext):
    p: SolveParams = ctx.params
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
    except engines.EngineError as e:  # a message for the user, not a bug
        raise ValueError(str(e)) from None


TASK = Task("solve", "cameras and sparse points of a clip (one video, or 2+ images in order)",
            run, SolveParams, ("video", "image"), 1, 100_000, check=_check)
