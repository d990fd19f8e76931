"""Small helpers every evaluation shares: errors, devices, engine options, JSON, hardware line."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path


class EvalError(ValueError):
    """Bad arguments or missing data; the message is meant for the user (exit status 2)."""


def resolve_device(name: str | None) -> str:
    """``None`` -> "cuda" when available, else "cpu" (``backend.runtime.pick_device``); a device
    that is not here is an EvalError."""
    from ..runtime import pick_device

    try:
        return str(pick_device(name))
    except ValueError as e:
        raise EvalError(f"--{e}") from None


def _parse_value(value: str):
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def parse_options(items: list[str]) -> dict:
    """``key=value`` pairs -> dict; values parsed as bool (true/false), None, int, float or str."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EvalError(f"engine option {item!r} is not KEY=VALUE")
        out[key] = _parse_value(value)
    return out


def engine_options(items: list[str], engines: list[str]) -> dict:
    """``ENGINE:key=value`` (one engine) or ``key=value`` (every engine) -> {engine: {key: value}}."""
    out = {name: {} for name in engines}
    for item in items:
        target, sep, rest = item.partition(":")
        if sep and "=" not in target:
            if target not in out:
                raise EvalError(f"--option {item!r}: engine {target!r} is not among --engines {','.join(engines)}")
            out[target].update(parse_options([rest]))
        else:
            for name in engines:
                out[name].update(parse_options([item]))
    return out


def hardware() -> str:
    """CPU model, cores available and OS, plus the GPU when torch sees one."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    text = f"{cpu}, {cores} cores available, {platform.system()} {platform.release()}"
    try:
        import torch

        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name()} (torch {torch.__version__})"
        else:
            text += f", no GPU (torch {torch.__version__}, {torch.get_num_threads()} threads)"
    except ImportError:
        pass
    return text


def _clean(x):
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        return _clean(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def write_json(path, payload: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(payload), indent=1) + "\n")
    print(f"wrote {path}", flush=True)
    return path


def fmt(x, digits: int = 2, pct: bool = False) -> str:
    """A table cell: NaN/None -> 'n/a'; fractions as percentages when ``pct``."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{100 * x:.{digits}f}%" if pct else f"{x:.{digits}f}"


# ----------------------------------------------------------------------------------------
# One loaded unified model (and caption encoder) per process: the commands share it, and so do
# several commands run in one process (tests), as the service keeps its model between jobs.

_LOADED: dict = {}


def unified_model(model_path=None, device: str = "cpu"):
    """The unified model from ``model_path`` (default: the shipped weights) on ``device``."""
    key = ("model", str(model_path or ""), str(device))
    if key not in _LOADED:
        from ..models import load_model

        _LOADED.clear()  # one model at a time
        _LOADED[key] = load_model(model_path, device=device)
    return _LOADED[key]


def caption_encoder(model, device: str = "cpu"):
    """The frozen caption encoder of the model's checkpoint (as the T2V pipeline builds it)."""
    from ..models.components import components_of

    cfg = model.config
    key = ("text", components_of(cfg).text_encoder, int(cfg.model_max_length), str(device))
    if key not in _LOADED:
        from ..models.text import TextEncoder

        _LOADED[key] = TextEncoder(components_of(cfg).text_encoder, max_length=cfg.model_max_length, device=device)
    return _LOADED[key]
