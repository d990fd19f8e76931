"""The execution contract every layer of the backend shares: one ``Cancelled``, one ``Progress``
and one device choice.

Engines, pipelines, geometry optimisers, eval, the CLI and the server all report through a
:class:`Progress` and stop by raising :class:`Cancelled`; nothing translates one layer's cancel
into another's, and the server turns exactly this exception into a job's ``cancelled`` state.

A ``Progress`` wraps the caller's ``callback(fraction, label)`` (returning ``False`` asks to
stop, as the service's job callback does) and an optional ``is_cancelled()`` check. Work that
has parts hands each part a :meth:`Progress.span`, a child that maps its own 0..1 into a slice
of the parent's, so an optimiser reports ``step(it, n)`` without knowing it is the third stage
of the second window of a job. Every child shares its root's timings and cancel state.

This module imports no torch at import time (the server and the CLI import it to say what
exists); :func:`pick_device` imports it when asked.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Optional, Union

Callback = Callable[[float, str], Optional[bool]]


class Cancelled(Exception):
    """The user (or the job's owner) asked the work to stop; no partial result is returned."""


class _Root:
    """What a tree of Progress spans shares: the callback, the cancel state and the timings."""

    def __init__(self, callback: Optional[Callback], is_cancelled: Optional[Callable[[], bool]], device):
        self.callback, self.is_cancelled = callback, is_cancelled
        self.cancelled = False
        self.last_label = ""  # named in the Cancelled message: where the work stopped
        self.timings: dict[str, float] = {}
        self.cuda = device is not None and str(device).startswith("cuda")


class Progress:
    """Fractions, stage labels, timings and a cancel check for one piece of work.

    ``Progress(callback)`` reports ``callback(fraction, label)`` with the fraction of the whole
    work in [0, 1]. ``stages`` (name -> relative weight) divides the range for :meth:`stage`.
    ``device``: when CUDA, :meth:`timed` synchronises so GPU work is counted in its stage.
    """

    def __init__(self, callback: Optional[Callback] = None, stages: Optional[dict] = None, *,
                 is_cancelled: Optional[Callable[[], bool]] = None, device=None,
                 _root: Optional[_Root] = None, _lo: float = 0.0, _hi: float = 1.0, _prefix: str = ""):
        self._root = _root or _Root(callback, is_cancelled, device)
        self._lo, self._hi, self._prefix = _lo, _hi, _prefix
        self._stages: dict[str, tuple[float, float]] = {}
        if stages:
            total, acc = float(sum(stages.values())), 0.0
            for name, weight in stages.items():
                self._stages[name] = (acc / total, (acc + weight) / total)
                acc += weight
        self._stage: Optional[str] = None
        self._stage_t0 = 0.0

    @classmethod
    def of(cls, progress: Union["Progress", Callback, None], **kw) -> "Progress":
        """A Progress from what a caller passed: a Progress (returned as is), a plain
        ``callback(fraction, label)`` or None (reports nowhere, never cancels)."""
        if isinstance(progress, Progress):
            device = kw.get("device")
            if device is not None and str(device).startswith("cuda"):
                progress._root.cuda = True  # time GPU work in the caller's progress too
            return progress
        return cls(progress, **kw)

    # -- reporting -------------------------------------------------------------------------------
    def __call__(self, fraction: float, label: str = "", *, _sep: str = ": ") -> None:
        """Report ``fraction`` (0..1) of this span, labelled; raise :class:`Cancelled` if asked."""
        f = min(max(float(fraction), 0.0), 1.0)
        text = f"{self._prefix}{_sep}{label}" if self._prefix and label else (label or self._prefix)
        root = self._root
        root.last_label = text or root.last_label
        if root.callback is not None and root.callback(self._lo + (self._hi - self._lo) * f, text) is False:
            root.cancelled = True
        self.check()

    def check(self) -> None:
        """Raise :class:`Cancelled` once the work was asked to stop (cheap: call it in loops)."""
        root = self._root
        if not root.cancelled and root.is_cancelled is not None and root.is_cancelled():
            root.cancelled = True
        if root.cancelled:
            raise Cancelled(f"cancelled during {root.last_label}" if root.last_label else "cancelled")

    def step(self, i: int, n: int, label: str = "", every: int = 1) -> None:
        """Iteration ``i`` (0-based) of ``n`` finished. Reports at the first, every ``every``-th
        after it and the last (a report may cost a host sync in GPU loops), so a cancel lands
        within ``every`` iterations; checks the cancel flag at each."""
        if i % every == 0 or i + 1 >= n:  # "window 2/3: alignment 26/300"
            self((i + 1) / max(n, 1), f"{label} {i + 1}/{n}".strip(), _sep=": " if label else " ")
        else:
            self.check()

    @property
    def cancelled(self) -> bool:
        return self._root.cancelled

    # -- structure -------------------------------------------------------------------------------
    def span(self, lo: float, hi: float, label: str = "") -> "Progress":
        """A child that reports its own 0..1 as ``lo..hi`` of this span (labels prefixed)."""
        a, b = self._lo + (self._hi - self._lo) * lo, self._lo + (self._hi - self._lo) * hi
        prefix = f"{self._prefix}: {label}" if self._prefix and label else (label or self._prefix)
        return Progress(_root=self._root, _lo=a, _hi=b, _prefix=prefix)

    def staged(self, stages: dict) -> "Progress":
        """This span again, divided into ``stages`` (name -> relative weight) for :meth:`stage`:
        how an engine with stages of its own runs inside whatever span its caller gave it."""
        child = self.span(0.0, 1.0)
        child._stages = Progress(stages=stages)._stages
        return child

    def stage(self, name: str) -> "Progress":
        """Start stage ``name`` of ``stages`` (closing and timing the previous one); returns the
        stage's span for the work inside it."""
        self._close_stage()
        lo, hi = self._stages[name]
        self._stage, self._stage_t0 = name, time.perf_counter()
        child = self.span(lo, hi)
        child._prefix = name if not self._prefix else f"{self._prefix}: {name}"
        child(0.0)
        return child

    def done(self) -> None:
        self._close_stage()
        self(1.0, "done")

    # -- timings ---------------------------------------------------------------------------------
    @property
    def timings(self) -> dict[str, float]:
        """Seconds per stage / timed block, shared by every span of this work."""
        return self._root.timings

    @contextmanager
    def timed(self, name: str):
        """Add the block's wall time to ``timings[name]`` (CUDA synchronised on a GPU)."""
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self._root.timings[name] = self._root.timings.get(name, 0.0) + time.perf_counter() - t0

    def _close_stage(self) -> None:
        if self._stage is not None:
            self._root.timings[self._stage] = round(time.perf_counter() - self._stage_t0, 3)
            self._stage = None

    def _sync(self) -> None:
        if self._root.cuda:
            import torch

            torch.cuda.synchronize()


def pick_device(device=None):
    """The one device choice: ``None``/``"auto"``/``""`` is CUDA when there is one, else the CPU;
    ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a torch.device are taken as given once checked to
    exist here (a ValueError with a message for the user says why not)."""
    import torch

    if device is None or (isinstance(device, str) and device in ("", "auto")):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"device {device!r} is not a torch device (auto, cpu, cuda, cuda:1, ...)") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device}: only cpu and cuda are supported")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device}: CUDA is not available in this environment (torch {torch.__version__})")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return dev
