"""The one error type of the service: an HTTP status and a message meant for a person.

Every error response has the body ``{"error": "<message>"}``; the add-on shows the message
as is, so it must say what was wrong and, where possible, what to do.
"""

from __future__ import annotations

from typing import Optional


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: Optional[dict] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def format_validation(errors: list, prefix: str = "") -> str:
    """One line from pydantic's error list: ``params.stride: Input should be ...; ...``."""
    parts = []
    for err in errors[:6]:
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
        where = (prefix + ".".join(loc)) if loc else ""  # a model-level check names its fields itself
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    if len(errors) > 6:
        parts.append(f"... and {len(errors) - 6} more")
    return "; ".join(parts) or "invalid request"
