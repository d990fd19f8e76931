"""What all engines share: their errors and the progress/cancel protocol."""

from __future__ import annotations

import time
from typing import Callable, Optional


class EngineError(RuntimeError):
    """An engine could not produce a result; the message is meant for the user."""


class TooFewFrames(EngineError):
    pass


class NothingRegistered(EngineError):
    pass


class Cancelled(EngineError):
    """The progress callback asked to stop."""


class Progress:
    """Reports ``(fraction, stage)`` through stages of known weights and records their timings.

    ``stages`` maps stage name -> relative weight (expected share of the run time). A callback
    that returns ``False`` cancels: :meth:`check` (called at every report) raises Cancelled.
    """

    def __init__(self, callback: Optional[Callable[[float, str], Optional[bool]]], stages: dict[str, float]):
        self.callback = callback
        total = float(sum(stages.values()))
        self.start_of, acc = {}, 0.0
        for name, weight in stages.items():
            self.start_of[name] = (acc / total, weight / total)
            acc += weight
        self.timings: dict[str, float] = {}
        self._stage, self._t0 = None, None
        self.cancelled = False

    def stage(self, name: str) -> None:
        """Close the running stage (recording its seconds) and start ``name``."""
        self._close()
        self._stage, self._t0 = name, time.perf_counter()
        self.report(0.0)

    def report(self, within: float = 0.0) -> None:
        """Report progress ``within`` (0..1) the current stage; raise Cancelled if asked to stop."""
        start, share = self.start_of[self._stage]
        self._emit(start + share * min(max(within, 0.0), 1.0), self._stage)

    def done(self) -> None:
        self._close()
        self._emit(1.0, "done")

    def _emit(self, fraction: float, stage: str) -> None:
        if self.callback is not None and self.callback(fraction, stage) is False:
            self.cancelled = True
        if self.cancelled:
            raise Cancelled(f"cancelled during {stage}")

    def _close(self) -> None:
        if self._stage is not None:
            self.timings[self._stage] = round(time.perf_counter() - self._t0, 3)
            self._stage = None
