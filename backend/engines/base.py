"""The errors all engines share. Progress and cancel are the runtime's (``backend.runtime``)."""

from __future__ import annotations


class EngineError(RuntimeError):
    """An engine could not produce a result; the message is meant for the user."""


class TooFewFrames(EngineError):
    pass


class NothingRegistered(EngineError):
    pass
