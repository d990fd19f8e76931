"""What the backend offers: the last ``GET /v1/health`` answer, fetched off the UI thread.

The backend lists only the tasks whose pipeline is in its build, so "listed" decides whether
a task's panel shows at all, and "available" (with its reason) what the panel says.
"""

from __future__ import annotations

import threading
from typing import Optional

from .. import client
from .connection import client_for, target


class Health:
    data: Optional[dict] = None  # last /v1/health answer
    error: str = ""  # why the last check failed
    checking: bool = False


def refresh_health(context=None, wait: bool = False) -> None:
    """Fetch /v1/health (starting a local backend if needed) in a thread, or now if ``wait``."""
    try:
        kw = target(context)
    except client.ParallaxError as e:
        Health.data, Health.error = None, str(e)
        return

    def work():
        try:
            Health.data, Health.error = client_for(kw).health(), ""
        except client.ParallaxError as e:
            Health.data, Health.error = None, str(e)
        finally:
            Health.checking = False

    Health.checking = True
    if wait:
        work()
    else:
        threading.Thread(target=work, name="parallax-health", daemon=True).start()


def lists_task(task: str) -> Optional[bool]:
    """Whether the last health answer lists ``task``; None before any answer (not asked yet,
    or the backend could not be reached)."""
    if Health.data is None:
        return None
    return task in Health.data.get("tasks", {})


def task_status(task: str) -> tuple[Optional[bool], str]:
    """(True, "") available; (False, reason) not offered; (None, error) not checked yet."""
    if Health.data is None:
        return None, Health.error
    t = Health.data.get("tasks", {}).get(task)
    if t is None:
        return False, f"this backend has no '{task}' task"
    return bool(t.get("available")), t.get("reason") or ""
